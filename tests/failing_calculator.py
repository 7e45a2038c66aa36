"""An ASE calculator that always raises: a labeller whose every calculation fails."""

from ase.calculators.calculator import Calculator


class AlwaysFails(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        raise RuntimeError("license server unreachable")
