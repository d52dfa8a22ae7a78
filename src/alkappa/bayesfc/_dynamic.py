"""Dynamic training of the Bayesian force-constant model and its no-new-data convergence test.

The scheme (design section 1.3; the second seed paper): run MD with the current model and
follow the Bayesian error ``e_t`` of every step together with its *trajectory-averaged* value,
the rolling mean ``r_t`` of the last W errors. A step triggers a reference (oracle) calculation
and a refit when

* ``e_t > f * r_t`` (``ratio``; f = 3 by default; only once the window holds ``warmup``
  values), or
* ``e_t > e_abs`` (``absolute``, a limit in eV/Å; or, with ``noise_factor`` c, the limit
  follows the data: ``e_abs = c * sqrt(3) * sigma_noise`` of the current fit, where sigma_noise
  is the evidence-optimal noise of one force component. The Bayesian error is epistemic only;
  once it is a fraction c of what the model cannot fit anyway, another label mostly teaches
  the model that misfit. A fixed limit below a material's misfit labels forever: SnSe with
  0.03 eV/Å against a fitted noise of 0.084 eV/Å),

and at least ``min_gap`` steps have passed since the last trigger. After a refit the window
restarts, since the errors of the old model are not those of the new one.

Convergence is decided without new reference data: MD with the frozen model over L steps; the
model is converged when the rule would not fire once and the rolling error is flat (the mean
rolling error of the second half differs from that of the first by at most ``flat_tolerance``,
relatively).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from alkappa.bayesfc._basis import FCBasis
from alkappa.bayesfc._calculator import BayesianFCCalculator
from alkappa.bayesfc._model import BayesianFCModelFit, fit_model

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ase import Atoms

#: reasons recorded for a trigger
REASONS = ("ratio", "absolute")


@dataclass(frozen=True)
class TriggerRule:
    """When the Bayesian error asks for a reference calculation.

    Attributes
    ----------
    window
        W: steps in the rolling mean.
    factor
        f: trigger when the error exceeds f times the rolling mean.
    absolute
        Trigger whenever the error exceeds this (eV/Å); ``None``: no absolute limit.
    noise_factor
        c: the absolute limit is c times the fitted force noise per atom (``sqrt(3)`` times
        the noise of one component), set for each fit by :meth:`for_model`; exclusive with
        ``absolute``.
    min_gap
        Minimum number of steps between two triggers.
    warmup
        Errors the window must hold before the ratio test applies.
    """

    window: int = 50
    factor: float = 3.0
    absolute: float | None = None
    min_gap: int = 10
    warmup: int = 10
    noise_factor: float | None = None

    def __post_init__(self) -> None:
        if self.window < 1 or self.min_gap < 0 or self.warmup < 1:
            raise ValueError(f"window and warmup must be >= 1, min_gap >= 0: {self}")
        if self.warmup > self.window:
            raise ValueError(f"warmup ({self.warmup}) cannot exceed the window ({self.window})")
        if self.factor <= 1.0:
            raise ValueError(f"the trigger factor must be > 1, not {self.factor}")
        if self.absolute is not None and self.absolute <= 0:
            raise ValueError(f"the absolute limit must be positive, not {self.absolute}")
        if self.noise_factor is not None and self.noise_factor <= 0:
            raise ValueError(f"the noise factor must be positive, not {self.noise_factor}")
        if self.noise_factor is not None and self.absolute is not None:
            raise ValueError("give the absolute limit or the noise factor, not both")

    def for_model(self, model: BayesianFCModelFit) -> TriggerRule:
        """The rule for MD with ``model``: with ``noise_factor`` c, ``absolute`` becomes c
        times the model's fitted force noise per atom (eV/Å); otherwise the rule itself."""
        if self.noise_factor is None:
            return self
        limit = self.noise_factor * np.sqrt(3.0) * model.posterior.noise_std
        return replace(self, absolute=float(limit), noise_factor=None)


class TriggerTracker:
    """Apply a :class:`TriggerRule` to a stream of errors, one step at a time."""

    def __init__(self, rule: TriggerRule) -> None:
        self.rule = rule
        self.window: deque[float] = deque(maxlen=rule.window)
        self.last_trigger: int | None = None

    @property
    def rolling_mean(self) -> float:
        """Mean of the errors in the window (NaN if empty)."""
        return float(np.mean(self.window)) if self.window else float("nan")

    def update(self, step: int, error: float) -> tuple[str | None, float]:
        """Test ``error`` of ``step`` against the rolling mean of the steps before it.

        Returns the trigger reason (``None`` for no trigger) and the rolling mean the error
        was compared with. The error then enters the window.
        """
        rule = self.rule
        rolling = self.rolling_mean
        reason = None
        gap_ok = self.last_trigger is None or step - self.last_trigger >= rule.min_gap
        if gap_ok:
            if rule.absolute is not None and error > rule.absolute:
                reason = "absolute"
            elif len(self.window) >= rule.warmup and error > rule.factor * rolling:
                reason = "ratio"
        if reason is not None:
            self.last_trigger = step
        self.window.append(float(error))
        return reason, rolling

    def reset(self) -> None:
        """Empty the window (after a refit); the last trigger step is kept."""
        self.window.clear()


class Trigger(TypedDict):
    """A step at which the rule fires (:func:`scan_errors`)."""

    step: int
    error: float
    rolling_mean: float
    reason: str


class TriggerRow(TypedDict):
    """A trigger of the training (a row of ``triggers.csv``)."""

    round: int
    step: int
    error: float
    rolling_mean: float
    reason: str
    n_train: int


class ErrorRow(TypedDict):
    """One MD step of the training (a row of ``errors.csv``)."""

    round: int
    step: int
    error: float
    rolling_mean: float
    #: the trigger's reason, ``restart`` or empty
    trigger: str
    limit: float | None


def scan_errors(
    errors: Sequence[float], rule: TriggerRule, *, reset_on_trigger: bool = False
) -> list[Trigger]:
    """The triggers the rule fires on an error series (step = index)."""
    tracker = TriggerTracker(rule)
    out: list[Trigger] = []
    for step, err in enumerate(errors):
        reason, rolling = tracker.update(step, float(err))
        if reason is not None:
            out.append(
                {"step": step, "error": float(err), "rolling_mean": rolling, "reason": reason}
            )
            if reset_on_trigger:
                tracker.reset()
    return out


def rolling_means(errors: Sequence[float], window: int) -> np.ndarray:
    """Rolling mean of the last ``window`` values, including the current one."""
    e = np.asarray(errors, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(e)])
    idx = np.arange(1, e.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


@dataclass(frozen=True)
class MDSettings:
    """Langevin MD of the dynamic training and of the convergence check.

    Attributes
    ----------
    temperature
        K.
    timestep
        fs.
    friction
        Langevin friction, 1/fs.
    max_displacement
        Å: an MD run whose largest displacement exceeds this restarts from the reference
        lattice (an unstable model; recorded).
    statistic
        Which Bayesian error drives the rule: ``force_mean`` or ``force_max`` (eV/Å).
    """

    temperature: float = 300.0
    timestep: float = 2.0
    friction: float = 0.02
    max_displacement: float = 1.0
    statistic: str = "force_mean"

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.timestep <= 0 or self.friction < 0:
            raise ValueError(f"invalid MD settings: {self}")
        if self.statistic not in ("force_mean", "force_max"):
            raise ValueError(f"statistic must be force_mean or force_max, not {self.statistic}")


class _MD:
    """Langevin MD from the reference lattice with Maxwell-Boltzmann velocities."""

    def __init__(self, reference: Atoms, md: MDSettings, seed: int) -> None:
        self.reference = reference
        self.md = md
        self.rng = np.random.default_rng(seed)
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        from ase import units
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

        self.atoms = self.reference.copy()
        self.atoms.set_constraint(FixCom())
        MaxwellBoltzmannDistribution(self.atoms, temperature_K=self.md.temperature, rng=self.rng)
        Stationary(self.atoms)
        self.dyn = Langevin(
            self.atoms,
            self.md.timestep * units.fs,
            temperature_K=self.md.temperature,
            friction=self.md.friction / units.fs,
            fixcm=False,
            rng=self.rng,
        )

    def step(self, calc: BayesianFCCalculator, basis: FCBasis) -> tuple[float, bool]:
        """One MD step; returns the Bayesian error at the new positions and whether it
        restarted (the error is then that of the restarted state)."""
        self.atoms.calc = calc
        self.dyn.run(1)
        restarted = False
        if np.linalg.norm(basis.displacements(self.atoms), axis=1).max() > self.md.max_displacement:
            self.restarts += 1
            restarted = True
            self._start()
            self.atoms.calc = calc
        self.atoms.get_forces()
        return calc.uncertainty[self.md.statistic], restarted


def rattled(reference: Atoms, n: int, amplitude: float, seed: int) -> list[Atoms]:
    """``n`` copies of ``reference`` with Gaussian displacements of std ``amplitude`` (Å)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = reference.copy()
        atoms.positions = atoms.positions + rng.normal(0.0, amplitude, atoms.positions.shape)
        out.append(atoms)
    return out


class CheckSummary(TypedDict):
    """:meth:`ConvergenceCheck.summary`: the no-new-data decision with its numbers."""

    converged: bool
    steps: int
    n_would_fire: int
    would_fire: list[Trigger]
    rolling_error_first_half: float
    rolling_error_second_half: float
    relative_change: float
    flat_tolerance: float
    md_restarts: int
    mean_error: float
    max_error: float
    oracle_calls: int


class RoundCheck(CheckSummary):
    """The check after a training round (``train.json``, ``rounds``)."""

    round: int
    n_train: int


@dataclass
class ConvergenceCheck:
    """Result of :func:`check_convergence`: MD with the frozen model, no reference data."""

    converged: bool
    steps: int
    would_fire: list[Trigger]
    first_half_mean: float
    second_half_mean: float
    relative_change: float
    flat_tolerance: float
    restarts: int
    errors: np.ndarray = field(repr=False)

    def summary(self) -> CheckSummary:
        """The decision with its numbers (JSON-ready)."""
        return {
            "converged": self.converged,
            "steps": self.steps,
            "n_would_fire": len(self.would_fire),
            "would_fire": self.would_fire,
            "rolling_error_first_half": self.first_half_mean,
            "rolling_error_second_half": self.second_half_mean,
            "relative_change": self.relative_change,
            "flat_tolerance": self.flat_tolerance,
            "md_restarts": self.restarts,
            "mean_error": float(np.mean(self.errors)),
            "max_error": float(np.max(self.errors)),
            "oracle_calls": 0,
        }


def check_convergence(
    model: BayesianFCModelFit,
    rule: TriggerRule,
    md: MDSettings,
    *,
    steps: int,
    seed: int,
    flat_tolerance: float = 0.1,
    equilibration: int = 0,
) -> ConvergenceCheck:
    """Decide convergence from MD with the frozen ``model`` (no oracle call).

    Converged: the rule would not fire in ``steps`` steps (window never reset: the model does
    not change), the MD stayed stable (no restart), and the rolling error is flat: the means of
    the rolling error over the two halves of the run (after the first ``rule.window`` steps)
    differ by at most ``flat_tolerance`` relative to the first. The run starts from the ideal
    lattice; the first ``equilibration`` steps (the heating transient, over which the error
    grows with the displacements) are run but not analysed.
    """
    if equilibration < 0:
        raise ValueError(f"equilibration must be >= 0, not {equilibration}")
    if steps < 2 * rule.window + 2:
        raise ValueError(
            f"the convergence run needs at least 2 * window + 2 = {2 * rule.window + 2} steps"
        )
    calc = BayesianFCCalculator([model], samples=0)
    run = _MD(model.basis.reference, md, seed)
    for _ in range(equilibration):
        run.step(calc, model.basis)
    errors = np.array([run.step(calc, model.basis)[0] for _ in range(steps)])
    fired = scan_errors(errors, rule)
    rolling = rolling_means(errors, rule.window)[rule.window :]
    half = rolling.size // 2
    first, second = float(rolling[:half].mean()), float(rolling[half:].mean())
    change = abs(second - first) / first if first > 0 else float("inf")
    return ConvergenceCheck(
        converged=not fired and change <= flat_tolerance and run.restarts == 0,
        steps=steps,
        would_fire=fired,
        first_half_mean=first,
        second_half_mean=second,
        relative_change=change,
        flat_tolerance=flat_tolerance,
        restarts=run.restarts,
        errors=errors,
    )


@dataclass
class DynamicTrainingResult:
    """Everything the dynamic training produced.

    Attributes
    ----------
    model
        The final fit.
    frames
        Labelled training structures (initial ones first, then one per trigger).
    triggers
        One dict per trigger: round, step, error, rolling_mean, reason, n_train.
    errors
        One dict per MD step: round, step, error, rolling_mean, trigger (the reason, or
        ``restart`` where the MD left ``max_displacement`` and restarted from the lattice).
    posterior
        One dict per fit: n_train, alpha, beta, noise_std, gamma, log_evidence and the mean
        posterior parameter width per order (``param_std_order<n>``, relative to the mean
        absolute parameter of that order).
    checks
        The convergence check after each round (:meth:`ConvergenceCheck.summary`).
    converged
        Whether the last check passed.
    oracle_calls
        Reference calculations requested (initial + triggers).
    """

    model: BayesianFCModelFit
    frames: list[Atoms]
    triggers: list[TriggerRow]
    errors: list[ErrorRow]
    posterior: list[dict[str, float]]
    checks: list[RoundCheck]
    converged: bool
    oracle_calls: int
    md_restarts: int = 0


def posterior_record(model: BayesianFCModelFit) -> dict[str, float]:
    """Hyperparameters and posterior widths of one fit."""
    post = model.posterior
    std = model.parameter_std()
    theta = model.parameters
    rec: dict[str, float] = {
        "n_train": model.n_structures,
        "alpha": post.alpha,
        "beta": post.beta,
        "noise_std": post.noise_std,
        "gamma": post.gamma,
        "log_evidence": post.log_evidence,
    }
    for order in sorted(set(model.basis.orders.tolist())):
        sel = model.basis.orders == order
        rec[f"param_std_order{order}"] = float(std[sel].mean())
        rec[f"param_rel_std_order{order}"] = float(
            std[sel].mean() / (np.abs(theta[sel]).mean() or 1.0)
        )
    return rec


def run_dynamic_training(
    reference: Atoms,
    label: Callable[[list[Atoms]], list[Atoms]],
    *,
    cutoffs: Sequence[float],
    rule: TriggerRule,
    md: MDSettings,
    steps_per_round: int,
    max_rounds: int,
    check_steps: int,
    flat_tolerance: float = 0.1,
    check_equilibration: int = 0,
    n_initial: int = 2,
    initial_amplitude: float = 0.03,
    seed: int = 0,
    max_calls: int | None = None,
    symprec: float = 1e-3,
    progress: Callable[[str], None] | None = None,
) -> DynamicTrainingResult:
    """Train a Bayesian FC model by dynamic training until the frozen-model check passes.

    Parameters
    ----------
    reference
        The ideal supercell.
    label
        Labels a list of structures with the reference method (energy and forces); with the
        pipeline this goes through the oracle ledger (:func:`alkappa.labelling.label_frames`).
    cutoffs
        Cluster cutoffs per order from 2 (Å).
    rule, md
        The trigger rule and the MD settings.
    steps_per_round
        MD steps of dynamic training per round.
    max_rounds
        Rounds at most; after each, :func:`check_convergence` (``check_steps`` steps after
        ``check_equilibration`` unanalysed ones) decides.
    n_initial, initial_amplitude
        The first fit uses ``n_initial`` rattled structures (Gaussian, std in Å).
    seed
        Seed of everything random (MD, rattling).
    max_calls
        Stop when this many reference calculations have been made (``None``: no limit).
    progress
        Called with a line of text after each round.
    """
    say = progress or (lambda _msg: None)
    basis = FCBasis(reference, cutoffs, symprec=symprec)
    frames = label(rattled(reference, n_initial, initial_amplitude, seed))
    if len(frames) < 1:
        raise RuntimeError("the reference method failed on all initial structures")
    designs = [basis.design(f)[:2] for f in frames]
    model = fit_model(basis, frames, designs=designs)
    posterior = [posterior_record(model)]
    triggers: list[TriggerRow] = []
    errors: list[ErrorRow] = []
    checks: list[RoundCheck] = []
    calls = len(frames)
    tracker = TriggerTracker(rule.for_model(model))
    run = _MD(reference, md, seed + 1)
    converged = False
    step = 0
    for rnd in range(max_rounds):
        calc = BayesianFCCalculator([model], samples=0)
        for _ in range(steps_per_round):
            err, restarted = run.step(calc, basis)
            if restarted:
                tracker.reset()
            reason, rolling = tracker.update(step, err)
            errors.append(
                {
                    "round": rnd,
                    "step": step,
                    "error": err,
                    "rolling_mean": rolling,
                    "trigger": reason or ("restart" if restarted else ""),
                    "limit": tracker.rule.absolute,
                }
            )
            if reason is not None and (max_calls is None or calls < max_calls):
                new = label([run.atoms.copy()])
                calls += 1
                triggers.append(
                    {
                        "round": rnd,
                        "step": step,
                        "error": err,
                        "rolling_mean": rolling,
                        "reason": reason,
                        "n_train": len(frames) + len(new),
                    }
                )
                if new:
                    frames.extend(new)
                    designs.append(basis.design(new[0])[:2])
                    model = fit_model(basis, frames, designs=designs)
                    posterior.append(posterior_record(model))
                    calc = BayesianFCCalculator([model], samples=0)
                    run.atoms.calc = calc
                    tracker.rule = rule.for_model(model)
                tracker.reset()
            step += 1
        check = check_convergence(
            model,
            rule.for_model(model),
            md,
            steps=check_steps,
            seed=seed + 1000 + rnd,
            flat_tolerance=flat_tolerance,
            equilibration=check_equilibration,
        )
        summary: RoundCheck = {
            "round": rnd,
            "n_train": len(frames),
            "oracle_calls": calls,
            **check.summary(),
        }
        checks.append(summary)
        say(
            f"round {rnd}: {calls} oracle calls, {len(frames)} structures, check "
            f"{'passed' if check.converged else 'failed'} ({len(check.would_fire)} would fire, "
            f"rolling error change {check.relative_change:.3f})"
        )
        if check.converged:
            converged = True
            break
        if max_calls is not None and calls >= max_calls:
            break
    return DynamicTrainingResult(
        model=model,
        frames=frames,
        triggers=triggers,
        errors=errors,
        posterior=posterior,
        checks=checks,
        converged=converged,
        oracle_calls=calls,
        md_restarts=run.restarts,
    )


def run_periodic_training(
    reference: Atoms,
    label: Callable[[list[Atoms]], list[Atoms]],
    *,
    cutoffs: Sequence[float],
    md: MDSettings,
    steps: int,
    every: int,
    n_initial: int = 2,
    initial_amplitude: float = 0.03,
    seed: int = 0,
    symprec: float = 1e-3,
) -> tuple[BayesianFCModelFit, int]:
    """Baseline of the dynamic training: label every ``every``-th MD step, whatever the error.

    Same start (initial rattled structures, MD seed) as :func:`run_dynamic_training`; returns
    the final model and the number of reference calculations.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, not {every}")
    basis = FCBasis(reference, cutoffs, symprec=symprec)
    frames = label(rattled(reference, n_initial, initial_amplitude, seed))
    designs = [basis.design(f)[:2] for f in frames]
    model = fit_model(basis, frames, designs=designs)
    calls = len(frames)
    run = _MD(reference, md, seed + 1)
    calc = BayesianFCCalculator([model], samples=0)
    for step in range(steps):
        run.step(calc, basis)
        if (step + 1) % every == 0:
            new = label([run.atoms.copy()])
            calls += 1
            if new:
                frames.extend(new)
                designs.append(basis.design(new[0])[:2])
                model = fit_model(basis, frames, designs=designs)
                calc = BayesianFCCalculator([model], samples=0)
    return model, calls
