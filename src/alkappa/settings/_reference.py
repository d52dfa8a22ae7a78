"""The ``reference`` section: reference data (oracle MD, imported trajectories) and the test
set and random-sampling pool drawn from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from alkappa.settings._base import _Section

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class ReferenceMDSettings(_Section):
    """``reference.md``: Langevin NVT driven by the oracle (every step one oracle call).

    Parameters
    ----------
    temperatures
        K, one run each (empty: no reference MD).
    steps
        MD steps per run.
    timestep
        fs.
    friction
        Langevin friction, 1/fs.
    log_interval
        MD steps between logged frames.
    seed
        Of the thermostat and the velocities (plus the temperature).
    """

    SECTION: ClassVar[str] = "reference.md"

    temperatures: tuple[float, ...]
    steps: int
    timestep: float
    friction: float
    log_interval: int
    seed: int


@dataclass(frozen=True)
class ReferenceSettings(_Section):
    """The ``reference`` section.

    Parameters
    ----------
    md
        The oracle MD (:class:`ReferenceMDSettings`).
    files
        Trajectories to import: each with ``path`` and optionally ``format``, ``temperature``
        (K) and ``fidelity``, as the config gives them.
    n_test
        Frames of the held-out test set.
    min_separation
        fs between a test frame and any pool frame of its trajectory.
    seed
        Of the test set's draw and the random baseline's.
    random_baseline
        Train the random-sampling baseline on the pool.
    """

    SECTION: ClassVar[str] = "reference"
    INNER: ClassVar = {"md": ReferenceMDSettings}

    md: ReferenceMDSettings
    files: tuple[Mapping[str, Any], ...]
    n_test: int
    min_separation: float
    seed: int
    random_baseline: bool

    @property
    def present(self) -> bool:
        """Whether the material has reference data (MD to run or files to import)."""
        return bool(self.md.temperatures or self.files)
