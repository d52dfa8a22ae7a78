"""Typed settings: the validated configuration's sections as frozen objects.

:func:`alkappa.config.material_settings` gives one material's settings as the validated,
defaults-filled dictionary that Snakemake hands every job (``params.settings``). A stage's
step function turns the sections it reads into the objects here once, at its top, and passes
those down; below the step functions no code indexes a settings dictionary.

Every section object is a frozen dataclass with one typed field per key of the schema's
section (``workflow/schemas/config.schema.yaml``; ``tests/test_settings.py`` checks that they
agree). :meth:`~_Section.from_settings` and :meth:`~_Section.from_dict` build one and fail
with one line naming the key if a key is missing or unknown; lists become tuples, so that a
section is immutable through and through. Values are kept as the config gives them (an
integer ``timestep`` stays an integer), so fingerprints and records written from them do not
change.

=========================  ===================================================
:class:`GreenKuboSettings`  ``greenkubo``: production, analysis, heat flux
:class:`PhononSettings`     ``phonons``: harmonic phonons (phonopy)
:class:`ConductivitySettings`  ``conductivity``: fc3 and phono3py's kappa
:class:`RelaxSettings`      ``relax``: relaxation of the structure
:class:`InitialSettings`    ``initial``: the initial dataset D_0
:class:`TestSettings`       ``test``: the held-out test set
:class:`EnsembleSettings`   ``ensemble``: the committee of MLIPs
:class:`ExploreSettings`    ``explore``: exploration MD (with its ``ramp`` and
                            ``uncertainty_bias`` objects)
:class:`SelectSettings`     ``select``: which explored frames are labelled
:class:`GateSettings`       ``gate``: the physical gate on labels
:class:`CalibrationSettings`  ``calibration``: recalibrated uncertainty
:class:`ConvergenceSettings`  ``convergence``: when the AL loop stops
:class:`BaselinesSettings`  ``baselines``: MLIPs without AL at equal cost
:class:`ReferenceSettings`  ``reference``: reference MD and imported trajectories
:class:`EventsSettings`     ``events``: event diagnostics
:class:`BayesianSettings`   ``bayesian``: on-the-fly Bayesian force constants
:class:`MultiFidelitySettings`  ``multifidelity``: oracle levels (:class:`FidelityLevel`),
                            the study's SevenNet ``model``, ``al`` and ``study``
:class:`~alkappa.oracles.OracleSpec`  ``oracle``: the reference method
=========================  ===================================================

An object inside a section (``explore.ramp``) is a section object of its own. The modules
of this package are private; everything is imported from ``alkappa.settings``.

:class:`ProductionSettings` and :class:`AnalysisSettings` are the parts of ``greenkubo`` that
the Green-Kubo library (:mod:`alkappa.greenkubo`) takes; they have defaults, so that the
library is usable without a config.

A check or helper that reads one section lives here too, next to that section:
:func:`check_greenkubo_budget`, :func:`baseline_temperatures` and :func:`multifidelity_al`
(:mod:`alkappa.config` uses them and re-exports them). This package imports neither
:mod:`alkappa.config` nor a stage: its :class:`ConfigError` is :mod:`alkappa._schema`'s, the
one :mod:`alkappa.config` raises.
"""

from alkappa._schema import ConfigError
from alkappa.oracles.spec import OracleSpec
from alkappa.settings._al import (
    AimdBaselineSettings,
    BaselinesSettings,
    CalibrationSettings,
    ConvergenceSettings,
    EnsembleSettings,
    ExploreSettings,
    GateSettings,
    HarmonicBaselineSettings,
    InitialSettings,
    RampSettings,
    SelectSettings,
    TestSettings,
    UncertaintyBiasSettings,
    baseline_temperatures,
)
from alkappa.settings._base import Mesh, SettingsDict, section_defaults
from alkappa.settings._bayesfc import BayesianSettings
from alkappa.settings._events import EventsSettings
from alkappa.settings._greenkubo import (
    AnalysisSettings,
    GreenKuboSettings,
    ProductionSettings,
    check_greenkubo_budget,
)
from alkappa.settings._multifidelity import (
    FidelityLevel,
    MultiFidelityALSettings,
    MultiFidelityModelSettings,
    MultiFidelitySettings,
    MultiFidelityStudySettings,
    multifidelity_al,
)
from alkappa.settings._phonons import ConductivitySettings, Fc3Options, PhononSettings
from alkappa.settings._reference import ReferenceMDSettings, ReferenceSettings
from alkappa.settings._structure import RelaxSettings

__all__ = [
    "AimdBaselineSettings",
    "AnalysisSettings",
    "BaselinesSettings",
    "BayesianSettings",
    "CalibrationSettings",
    "ConductivitySettings",
    "ConfigError",
    "ConvergenceSettings",
    "EnsembleSettings",
    "EventsSettings",
    "ExploreSettings",
    "Fc3Options",
    "FidelityLevel",
    "GateSettings",
    "GreenKuboSettings",
    "HarmonicBaselineSettings",
    "InitialSettings",
    "Mesh",
    "MultiFidelityALSettings",
    "MultiFidelityModelSettings",
    "MultiFidelitySettings",
    "MultiFidelityStudySettings",
    "OracleSpec",
    "PhononSettings",
    "ProductionSettings",
    "RampSettings",
    "ReferenceMDSettings",
    "ReferenceSettings",
    "RelaxSettings",
    "SelectSettings",
    "SettingsDict",
    "TestSettings",
    "UncertaintyBiasSettings",
    "baseline_temperatures",
    "check_greenkubo_budget",
    "multifidelity_al",
    "section_defaults",
]
