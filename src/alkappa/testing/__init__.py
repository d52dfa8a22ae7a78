"""Contract tests for oracle and model plugins: pytest mixins that a plugin's tests subclass.

Every oracle and every model must behave the same way for alkappa to use it (forces that are
minus the energy gradient, labels that leave their input alone, an ensemble calculator with the
keys the AL loop reads, ...). These mixins check that; the built-in plugins use them too. A
plugin package's test file::

    from ase.build import bulk

    from alkappa.testing import ModelContract, OracleContract

    class TestMyOracle(OracleContract):
        oracle_spec = {"name": "my-dft", "kpts": [2, 2, 2]}
        force_tolerance = 1e-3

        def oracle_structure(self):
            atoms = bulk("Si", "diamond", a=5.43)
            atoms.rattle(0.03, seed=1)
            return atoms

    class TestMyModel(ModelContract):
        model_spec = {"name": "my-mlip", "max_epochs": 2}

:class:`LennardJonesModel` is a model plugin for tests of the pipeline: a Lennard-Jones pair
potential that trains in milliseconds and provides its own heat flux (:class:`PairHeatFlux`).

Each test method is one clause of the contract; class attributes tune the tolerances and
steps (see :class:`OracleContract` and :class:`ModelContract`). A test can also be run outside
pytest's collection, with the fixture value made by :meth:`OracleContract.make_oracle_case` or
:meth:`ModelContract.train_contract_model`.

This module imports pytest: it needs pytest installed (``pip install "alkappa[testing]"``);
nothing else in alkappa imports it.
"""

from __future__ import annotations

from alkappa.testing._frames import emt_frames
from alkappa.testing._lj_model import LennardJonesModel, PairHeatFlux
from alkappa.testing._model import UNCERTAINTY_KEYS, ModelContract, TrainedModel
from alkappa.testing._oracle import OracleCase, OracleContract

__all__ = [
    "UNCERTAINTY_KEYS",
    "LennardJonesModel",
    "ModelContract",
    "OracleCase",
    "OracleContract",
    "PairHeatFlux",
    "TrainedModel",
    "emt_frames",
]
