"""Packaging hook; all metadata is in pyproject.toml.

``build_py`` also copies ``src/al_flows_schnetpack_compat.pth`` to the top of the build tree, so a
wheel installs it into site-packages (a .pth file is only read from there). It imports
``al_flows_schnetpack_compat`` at start-up, which lets schnetpack 2.1.1 import under torch >= 2.7
(docs/dependencies.md). Editable installs skip build_py's copies; scripts/install.sh places the
.pth itself there.

``build_py`` also copies the example campaigns of ``flows/`` into the package (``al_flows/flows``),
so an installed wheel runs ``al-flows demo`` from any directory; a checkout reads ``flows/`` itself.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "al_flows_schnetpack_compat.pth"
EXAMPLES = sorted(Path("flows").rglob("*.yaml"))


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            self.copy_file(str(Path("src") / PTH), str(Path(self.build_lib) / PTH), preserve_mode=0)
            for path in EXAMPLES:
                target = Path(self.build_lib) / "al_flows" / path
                self.mkpath(str(target.parent))
                self.copy_file(str(path), str(target), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        examples = [str(Path(self.build_lib) / "al_flows" / p) for p in EXAMPLES]
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH), *examples]


setup(cmdclass={"build_py": BuildPyWithPth})
