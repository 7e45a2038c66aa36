"""The documentation is complete, consistent with the code and self-contained: every config key
is documented, the shear-strain formula is the code's, no doc points outside the project, and
every relative link resolves."""

import re
import typing
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from al_flows.active_learning.config import CampaignConfig
from al_flows.exploration.shear_geometry import shear_cell, shear_strain
from al_flows.pool_study.config import PoolStudyConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOC = (DOCS / "configuration.md").read_text()
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _models(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def all_keys(model, seen=None):
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for sub in _models(field.annotation):
            keys |= all_keys(sub, seen)
    return keys


def _md_links(path: Path) -> list[str]:
    return LINK.findall(path.read_text())


def _documented_text() -> str:
    """configuration.md and every docs page it links to."""
    pages = {DOCS / "configuration.md"}
    for target in _md_links(DOCS / "configuration.md"):
        file = target.split("#", 1)[0]
        if file.endswith(".md") and "://" not in file:
            pages.add((DOCS / file).resolve())
    return "\n".join(p.read_text() for p in sorted(pages))


def _documented_keys() -> set[str]:
    return set(re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)", _documented_text()))


def test_config_walk_reaches_union_members():
    # the walk must see inside discriminated unions (sources, explorers, labellers, stores)
    keys = all_keys(CampaignConfig) | all_keys(PoolStudyConfig)
    for key in (
        "label_structures",
        "calibrate",
        "target_error_lo",
        "edge_min",
        "displacement_max",
        "stop_deviation",
        "t_max_ps",
        "temperatures_K",
        "potcar_spec",
        "password_env",
        "merge_tol",
        "eps_tol",
        "stride",
        "reference_kwargs",
    ):
        assert key in keys, key


def test_configuration_links_the_pages_it_relies_on():
    linked = {t.split("#", 1)[0] for t in _md_links(DOCS / "configuration.md")}
    assert {"exploration.md", "pool_study.md", "methods.md"} <= linked


@pytest.mark.parametrize("model", [CampaignConfig, PoolStudyConfig], ids=["campaign", "pool_study"])
def test_every_config_key_is_documented(model):
    documented = _documented_keys()
    assert "not_a_config_key" not in documented
    keys = all_keys(model)
    assert len(keys) > 30
    missing = sorted(keys - documented)
    assert not missing, f"keys neither in docs/configuration.md nor in a page it links: {missing}"


# --------------------------------------------------------------------------- shear strain

GAMMA = re.compile(r"(?:γ|gamma)\s*=\s*(?:√|sqrt)")
CANONICAL = "sqrt(cell[0,1]^2 + cell[0,2]^2) / cell[0,0]"


def _doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_methods_states_the_code_gamma_convention():
    text = (DOCS / "methods.md").read_text()
    stated = re.search(r"`γ = ([^`]+)`", text)
    assert stated is not None and stated.group(1) == CANONICAL
    # the stated formula, evaluated, is al_flows.exploration.shear_geometry.shear_strain; both are the same few
    # float operations (hypot vs sqrt of a sum), so they agree to a few ulp: rtol 1e-12
    rng = np.random.default_rng(0)
    for _ in range(20):
        cell = rng.normal(size=(3, 3)) + np.diag(rng.uniform(5.0, 20.0, 3))
        value = eval(stated.group(1).replace("^", "**"), {"sqrt": np.sqrt, "cell": cell})
        assert np.isclose(value, shear_strain(cell), rtol=1e-12, atol=0.0)
    # and a shear step changes exactly cell[0,1] and cell[0,2] (what the docs say it does)
    cell = rng.normal(size=(3, 3))
    diff = shear_cell(cell, 0.1) - cell
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[0, 2] = 0.1
    assert np.allclose(diff, expected, rtol=0.0, atol=1e-15)
    # the paper's notation is related to it explicitly, once
    for relation in ("C21 = `cell[0,1]`", "C31 = `cell[0,2]`", "C11 = `cell[0,0]`"):
        assert relation in text, relation


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: p.name)
def test_every_gamma_formula_uses_the_code_convention(path):
    text = path.read_text()
    if path.name == "methods.md":  # relates the paper's C21/C31/C11 to cell[0,1], cell[0,2], cell[0,0]
        return
    assert not re.search(r"C(?:21|31|01|02|00|₂₁|₃₁|₀₁|₀₂|₀₀)(?![0-9])", text), (
        "cell-matrix notation other than cell[i,j]"
    )
    for m in GAMMA.finditer(text):
        rest = text[m.end() :].lstrip(" (")
        formula = (
            "sqrt(" + rest[: len(CANONICAL) - len("sqrt(")] if not rest.startswith("sqrt") else rest[: len(CANONICAL)]
        )
        assert formula.replace("**", "^") == CANONICAL, f"{path.name}: {text[m.start() : m.start() + 60]!r}"


# --------------------------------------------------------------------------- self-contained

FORBIDDEN = [
    (re.compile(r"shared/", re.I), "a path outside the project"),
    (re.compile(r"\bMETHODS\b"), "an internal methods note (cite docs/methods.md or the paper)"),
    (re.compile(r"FACTS\.md", re.I), "an internal facts note"),
    (re.compile(r"\bseeds? 0{2}[0-9]", re.I), "an internal seed number (name the paper)"),
    (re.compile(r"\bissues? [0-9]", re.I), "an internal issue number"),
    (re.compile(r"no gpu was lent", re.I), "an internal note"),
    (re.compile(r"\bthe issue\b", re.I), "an internal note"),
]


def _project_files() -> list[Path]:
    files = [
        README,
        *DOCS.rglob("*.md"),
        *(ROOT / "flows").rglob("*.yaml"),
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "benchmarks").rglob("*.py"),
        *(ROOT / "scripts").glob("*"),
    ]
    return sorted(f for f in files if f.is_file())


def test_forbidden_patterns_are_caught():
    hits = [
        why
        for text in ("see ../shared/METHODS.md A2", "(seed 000)", "issue 9", "FACTS.md")
        for rx, why in FORBIDDEN
        if rx.search(text)
    ]
    assert len(hits) >= 4
    assert not any(rx.search("docs/methods.md: the methods of Sprueill et al.") for rx, _ in FORBIDDEN)


def test_no_file_refers_outside_the_project():
    problems = []
    for path in _project_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for rx, why in FORBIDDEN:
                if rx.search(line):
                    problems.append(f"{path.relative_to(ROOT)}:{n}: {why}: {line.strip()[:100]}")
    assert not problems, "\n".join(problems)


def test_table_i_names_its_source():
    # "Table I" alone is ambiguous (DP-GEN has a Table I too): a file that uses it names Sprueill et al.
    bad = [
        str(p.relative_to(ROOT))
        for p in _project_files()
        if re.search(r"\bTable I\b", p.read_text()) and "Sprueill" not in p.read_text()
    ]
    assert not bad, f"'Table I' without naming Sprueill et al.: {bad}"


# --------------------------------------------------------------------------- links


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = heading.strip().lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not re.match(r"#{1,6} ", line):
            continue
        slug = _slug(line.lstrip("#"))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_slug_follows_github():
    assert (
        _slug(" 3. Baselines and Table I of Sprueill et al. (`baselines:`)")
        == "3-baselines-and-table-i-of-sprueill-et-al-baselines"
    )
    assert (
        _slug(" The authors' public code, and what al_flows does instead")
        == "the-authors-public-code-and-what-al_flows-does-instead"
    )


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: p.name)
def test_relative_links_resolve(path):
    broken = []
    for target in _md_links(path):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if ROOT not in dest.parents and dest != ROOT:
            broken.append(f"{target}: outside the project")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{path.name}: {broken}"


def test_configuration_md_says_exactly_what_is_in_the_fingerprint():
    """The fingerprint section of docs/configuration.md lists exactly the keys of
    NOT_FINGERPRINTED as left out, and every other top-level key as in."""
    import re

    from al_flows.active_learning.config import CampaignConfig
    from al_flows.workflow.config import NOT_FINGERPRINTED

    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text[text.index("### The fingerprint") : text.index("## `initial`")]
    inside, outside = section.split("**Not in the fingerprint**")
    left_out = set(re.findall(r"`([a-z_]+(?:\[\])?(?:\.[a-z_]+)?)`", outside.split("Extending a campaign")[0]))
    want = set()
    for key, sub in NOT_FINGERPRINTED.items():
        if sub is True:
            want.add(key)
        else:
            want |= {f"{key}[].{k}" if key == "explorers" else f"{key}.{k}" for k in sub}
    assert want <= left_out, want - left_out
    listed_in = set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", inside.split("**In the fingerprint**")[1])))
    top_in = {k for k in CampaignConfig.model_fields if NOT_FINGERPRINTED.get(k) is not True}
    assert top_in == listed_in, top_in ^ listed_in


# --------------------------------------------------------------------------- docs show what al-flows prints


def test_configuration_md_shows_what_validate_prints(tmp_path, monkeypatch, capsys):
    """The example at the top of docs/configuration.md (the demo file with ``training.epochs``
    misspelt and the trust levels swapped) is what ``al-flows validate`` prints, line for line,
    and the text's description of the format (one line, "and N more problem(s)") holds."""
    import yaml

    from al_flows.cli import main

    data = yaml.safe_load((ROOT / "flows" / "demo_cuni_emt.yaml").read_text())
    data["training"]["epochz"] = data["training"].pop("epochs")
    data["selection"].update(trust_lo=0.5, trust_hi=0.1)
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "demo.yaml"]) == 2
    printed = capsys.readouterr().err.splitlines()
    block = re.search(r"```\n\$ al-flows validate demo.yaml\n(.*?)```", DOC, flags=re.S)
    assert block is not None
    assert block.group(1).splitlines() == printed
    assert len(printed) == 1 and "(and 1 more problem(s): " in printed[0]
    assert "(and N more problem(s): ...)" in DOC and "one line per problem" not in DOC


def test_loop_md_names_the_info_keys_an_export_writes(tmp_path):
    """docs/loop.md's paragraph on exported datasets names exactly the provenance keys that
    ``write_plain_extxyz`` writes (``ensemble_id``, not the store's ``model_id``), as ``ase.io.read``
    gives them back for an initial and an explored frame shaped like a campaign's labels."""
    from ase.io import read
    from tests.frames.test_extxyz_export import EXPLORED, INITIAL

    from al_flows.frames.dataset import Dataset
    from al_flows.frames.extxyz_export import write_plain_extxyz
    from helpers import emt_labelled_multilayer

    frames = []
    for k, info in enumerate([INITIAL, {**EXPLORED, "task_uuid": "9f1c2d3e-uuid"}]):
        atoms = emt_labelled_multilayer(k)
        atoms.info = dict(info)
        frames.append(atoms)
    frames = Dataset(frames).frames  # as stored: with their frame_id
    written = {key for atoms in read(write_plain_extxyz(frames, tmp_path / "d.extxyz"), ":") for key in atoms.info}
    text = (DOCS / "loop.md").read_text()
    para = text[text.index("An exported dataset") :].split("\n\n")[0]
    named = set(re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)`", re.sub(r"\([^)]*\)", "", para)))
    # the explorer's own keys (run, step, gamma, seed, ...) are "then the explorer's own keys"
    own = (set(INITIAL) | set(EXPLORED)) - {
        "frame_id",
        "round",
        "explorer",
        "parent_id",
        "model_id",
        "deviation",
        "labeller",
        "label_settings",
        "task_uuid",
        "energy",
    }
    assert {"ensemble_id", "explore_energy", "origin"} <= written and "model_id" not in written
    assert named == written - own, named ^ (written - own)
    # and the stored frames' paragraph names the store's keys, model_id among them
    store_para = text[text.index("Every frame in a dataset") :].split("\n\n")[0]
    assert {"frame_id", "round", "explorer", "parent_id", "model_id", "deviation", "labeller"} <= set(
        re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)`", store_para)
    )


def test_reliability_md_describes_the_error_line_of_validate_and_run(tmp_path, monkeypatch, capsys):
    """docs/reliability.md: ``validate`` and ``run`` print a bad starting structure as one line,
    ``error: `` then (perhaps the campaign file's path, then) the table's message for overlapping
    atoms, with FILE and the (...) filled in; the page promises no fixed path prefix."""
    import yaml
    from ase import Atoms
    from ase.io import write

    from al_flows.cli import main

    text = (DOCS / "reliability.md").read_text()
    assert "`error: CAMPAIGN.yaml: ...`" not in text and "one line starting with `error: `" in text
    row = next(line for line in text.splitlines() if line.startswith("| overlapping atoms"))
    message = re.search(r"`(initial\.structures\[0\] \(structure 'bad-0'\): atoms [^`]+)`", row).group(1)
    pattern = (
        re.escape(message).replace(re.escape("(...)"), r"\(.+\)").replace("FILE", re.escape(str(tmp_path)) + "/bad.xyz")
    )
    positions = [[0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, 3], [3.2, 0, 0]]  # atoms 1 and 4 0.2 A apart
    write(tmp_path / "bad.xyz", Atoms("Cu5", positions=positions, cell=[6, 6, 6], pbc=True), format="extxyz")
    data = yaml.safe_load((ROOT / "flows" / "demo_cuni_emt.yaml").read_text())
    data["initial"]["structures"] = [{"kind": "file", "path": "bad.xyz"}]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    for argv in (["validate", "bad.yaml"], ["run", "bad.yaml", "--workdir", str(tmp_path / "work")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and re.fullmatch(r"error: (?:bad\.yaml: )?" + pattern, err[0]), (argv, err, pattern)
