"""The autotest's verdicts with the relative tolerances and the sign check, against the absolute
tolerances alone, on calculators whose errors are known: each shipped labeller judged as the
"model" of another (EMT against the published EAM files, both ways; docs/methods.md, Labellers).

    python benchmarks/autotest_tolerances.py                 # markdown tables, one per case
    python benchmarks/autotest_tolerances.py --json out.json # and every row as JSON

EMT puts hcp below fcc for Cu, Ni and Al; the EAM files put it above, as DFT does. A potential that
reproduced EMT is therefore a potential with the wrong sign of hcp - fcc and of the intrinsic
stacking-fault energy, judged against a reference with the right one. Default autotest settings,
lattices fcc, hcp and bcc (those of the example campaigns).
"""

from __future__ import annotations

import argparse
import json
import time

from al_flows.labelling.ase import calculator_factory
from al_flows.validation.autotest import AutotestSettings, autotest

EAM = {"Cu": "Cu_mishin1.eam.alloy", "Ni": "CuNi.eam.alloy", "Al": "Al_zhou.eam.alloy"}


def cases(elements: list[str]) -> list[tuple[str, str, str, dict, str, dict]]:
    """(element, reference label, reference calculator, kwargs, model calculator, kwargs), both ways."""
    out = []
    for el in elements:
        eam = {"potential": EAM[el]}
        out.append((el, f"{EAM[el]} reference, EMT model", "eam", eam, "emt", {}))
        out.append((el, f"EMT reference, {EAM[el]} model", "emt", {}, "eam", eam))
    return out


def old_verdict(row: dict, settings: AutotestSettings) -> bool:
    """The verdict of the absolute tolerance alone, without the sign check (the earlier autotest)."""
    abs_tol = settings.limits(row["property"])[0]
    return abs_tol is None or row["abs_error"] <= abs_tol


def table(rows: list[dict], settings: AutotestSettings) -> list[str]:
    """Markdown rows: values, the tolerance used and its bound, the sign check, new and old verdicts."""
    lines = [
        "| property | unit | reference | model | abs error | tolerance (bound) | sign | passed | abs tolerance alone |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tol = "-" if r["tolerance"] is None else f"{r['tolerance']:.4g} ({r['tolerance_kind']})"
        sign = {True: "ok", False: "WRONG", None: "-"}[r["sign_ok"]]
        new = "yes" if r["passed"] else f"NO ({', '.join(r['failed_by'])})"
        old = "yes" if old_verdict(r, settings) else "NO"
        lines.append(
            f"| {r['property']} | {r['unit']} | {r['reference']:.4g} | {r['model']:.4g} | {r['abs_error']:.4g} | "
            f"{tol} | {sign} | {new} | {old} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", nargs="+", default=["Cu", "Ni", "Al"], choices=sorted(EAM))
    parser.add_argument("--json", help="write every case's rows to this file")
    args = parser.parse_args()
    settings = AutotestSettings(lattices=["fcc", "hcp", "bcc"])
    results = []
    for el, label, ref, ref_kw, model, model_kw in cases(args.elements):
        start = time.perf_counter()
        res = autotest(el, calculator_factory(ref, ref_kw), calculator_factory(model, model_kw), settings)
        seconds = time.perf_counter() - start
        rows = res["rows"]
        n_new = sum(r["passed"] for r in rows)
        n_old = sum(old_verdict(r, settings) for r in rows)
        print(f"\n### {el}: {label} ({seconds:.0f} s)\n")
        print("\n".join(table(rows, settings)))
        print(f"\npassed: {n_new} of {len(rows)} rows; with the absolute tolerances alone: {n_old} of {len(rows)}")
        results.append({"element": el, "case": label, "seconds": seconds, "rows": rows})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"settings": settings.model_dump(mode="json"), "cases": results}, fh, indent=1)


if __name__ == "__main__":
    main()
