"""A stand-in for the ``vasp_std`` executable, backed by ASE's EMT calculator.

See :mod:`tests.vasp_standin.standin`.
"""
