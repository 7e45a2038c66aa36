"""schnetpack 2.1.1 imports on its own under torch 2.13: the start-up import hook
(al_flows_schnetpack_compat.pth, docs/dependencies.md) in the installed environment and in a wheel."""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PTH = "al_flows_schnetpack_compat.pth"


def py(code: str, python: str = sys.executable, cwd: Path | None = None) -> str:
    """Run ``code`` in a fresh interpreter (outside the repository, so only installed paths count)."""
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_schnetpack_imports_without_al_flows(tmp_path):
    assert (
        py("import sys, schnetpack; assert 'al_flows' not in sys.modules; print(schnetpack.__version__)", cwd=tmp_path)
        == "2.1.1"
    )
    # the full loader path that needs T_co, again without al_flows
    assert (
        py("from schnetpack.data import AtomsLoader, ASEAtomsData; print(AtomsLoader.__name__)", cwd=tmp_path)
        == "AtomsLoader"
    )


def test_hook_is_loaded_at_start_up_and_does_not_import_torch(tmp_path):
    code = (
        "import sys; started = 'al_flows_schnetpack_compat' in sys.modules; import al_flows_schnetpack_compat; "
        "assert 'torch' not in sys.modules, 'torch imported at start-up'; print(started)"
    )
    assert py(code, cwd=tmp_path) == "True"  # True: the .pth in site-packages imported it
    assert py("import sys, al_flows; print('torch' in sys.modules)", cwd=tmp_path) == "False"
    pth = Path(sysconfig.get_paths()["purelib"]) / PTH
    assert pth.read_text() == (ROOT / "src" / PTH).read_text()


def test_hook_patches_only_when_schnetpack_is_imported(tmp_path):
    code = (
        "import sys, torch.utils.data.dataloader as d\n"
        "from al_flows_schnetpack_compat import _SchnetpackHook\n"
        "before = hasattr(d, 'T_co')\n"
        "assert any(isinstance(f, _SchnetpackHook) for f in sys.meta_path)\n"
        "import schnetpack\n"
        "assert not any(isinstance(f, _SchnetpackHook) for f in sys.meta_path), 'hook not removed'\n"
        "print(before, d.T_co.__covariant__)\n"
    )
    assert py(code, cwd=tmp_path) == "False True"  # torch 2.13 lacks T_co until schnetpack is imported


def test_wheel_ships_the_pth_into_site_packages(tmp_path):
    """Build a wheel from a copy of the sources, install it (--no-deps) into a fresh venv, import schnetpack there."""
    src = tmp_path / "proj"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path / "dist")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("al_flows-*.whl")
    top = {n for n in zipfile.ZipFile(wheel).namelist() if "/" not in n}
    assert top == {PTH, "al_flows_schnetpack_compat.py"}
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([*pip, "--python", python, "install", "--no-deps", str(wheel)], check=True, capture_output=True)
    site = Path(py("import sysconfig; print(sysconfig.get_paths()['purelib'])", python))
    assert (site / PTH).read_text() == (ROOT / "src" / PTH).read_text()
    if not (site / "al_flows").is_dir():
        pytest.fail(f"the wheel did not install al_flows into {site}")
    # torch and schnetpack from this environment, on the path after the wheel's .pth ran ("zz" sorts last)
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = (
        "import sys; assert 'torch' not in sys.modules; import schnetpack, al_flows; "
        "print(schnetpack.__version__, al_flows.__file__)"
    )
    version, where = py(code, python, cwd=tmp_path).split()
    assert version == "2.1.1" and Path(where).is_relative_to(site)
