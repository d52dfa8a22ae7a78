"""Any ASE calculator as oracle, built from the config: FHI-aims, VASP, Quantum ESPRESSO, GPAW, ...

Example config blocks::

    oracle:
      name: ase
      fidelity: pbe
      calculator: ase.calculators.aims.Aims
      command: srun aims.x
      species_dir: /opt/aims/species_defaults/defaults_2020/light
      kwargs: {xc: pbe, k_grid: [2, 2, 2], compute_forces: true, compute_analytical_stress: true}
      directory: work/aims

    oracle:
      name: ase
      calculator: ase.calculators.espresso.Espresso
      command: mpirun -n 32 pw.x
      pseudo_dir: /opt/sssp
      kwargs: {pseudopotentials: {Cu: Cu.upf, I: I.upf}, kpts: [2, 2, 2], tprnfor: true,
               tstress: true, input_data: {system: {ecutwfc: 60}}}

    oracle:
      name: ase
      calculator: ase.calculators.vasp.Vasp
      command: srun vasp_std
      pseudo_dir: /opt/vasp/potentials     # the VASP_PP_PATH directory
      kwargs: {xc: pbe, encut: 500, kpts: [2, 2, 2]}

How ASE (3.23+) runs the external code, and therefore how ``command`` and ``species_dir`` /
``pseudo_dir`` are applied (https://ase-lib.org/ase/calculators/calculators.html, section
"Calculator configuration"):

- *Profile-based* calculators (subclasses of ``GenericFileIOCalculator``: Aims, Espresso,
  Abinit, ORCA, Octopus, ELK, ONETEP, exciting) take a ``profile`` object that holds the command
  and the code's basis/pseudopotential directory, e.g. ``AimsProfile(command,
  default_species_directory=...)`` or ``EspressoProfile(command, pseudo_dir)``. The profile is
  built through the template's own ``load_profile``, i.e. exactly as from a ``[aims]`` section
  of ASE's config file, with ``species_dir``/``pseudo_dir`` filled into whichever directory
  setting that profile declares. Without ``command``, ASE's config file is used as usual.
- *Command-based* calculators (VASP, and the older ``FileIOCalculator`` subclasses) take
  ``command=``. VASP finds POTCARs through ``VASP_PP_PATH``; ``pseudo_dir`` sets that variable
  for the duration of each calculation only.
- Everything else runs in-process (GPAW, EMT, tblite, ...); ``command`` and a species
  directory make no sense there and are rejected.

Every :meth:`ASECalculatorOracle.label` call runs in its own directory, so parallel label jobs
do not overwrite each other's files: ``<directory>/<directory_template>`` when ``directory`` is
given (kept), else a fresh temporary directory that is deleted after a successful calculation
and kept (its path is in the error message) after a failed one.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import shlex
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import FileIOCalculator
from ase.calculators.genericfileio import GenericFileIOCalculator
from ase.data import chemical_symbols

from alkappa.oracles._base import Oracle, OracleError, OracleInputError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from ase import Atoms
    from ase.calculators.calculator import Calculator

# The directory setting of each ASE profile class (its ``configvars``), as of ASE 3.29:
_DIRECTORY_CONFIGVARS = (
    "default_species_directory",  # FHI-aims (AimsProfile)
    "pseudo_dir",  # Quantum ESPRESSO (EspressoProfile)
    "pp_paths",  # ABINIT (AbinitProfile)
    "sppath",  # ELK (ElkProfile)
    "pseudo_path",  # ONETEP (OnetepProfile)
    "species_path",  # exciting (ExcitingProfile)
)

_TEMPLATE_FIELDS = {"formula": "CuI", "hash": "0" * 12, "pid": 0}


def structure_hash(atoms: Atoms) -> str:
    """12 hex digits identifying a structure (numbers, positions, cell, pbc)."""
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.round(atoms.positions, 8).tobytes())
    h.update(np.round(atoms.cell.array, 8).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    return h.hexdigest()[:12]


#: Packages whose calculator is a factory function rather than a class (newer GPAW's
#: ``gpaw.GPAW``); a config may name a function only from these.
FACTORY_PACKAGES = ("gpaw",)


def import_calculator(path: str) -> Callable[..., Calculator]:
    """The calculator class named by a dotted import path, not called.

    A config is data, so what it names here must be a calculator, never arbitrary code: a
    class derived from ASE's ``BaseCalculator`` (from any installed module: installed packages
    are trusted code), or a factory function of a package in :data:`FACTORY_PACKAGES`.
    Anything else (e.g. ``subprocess.call``) is an :class:`OracleInputError` before it could
    be called. Importing the module runs that installed package's own import code only.
    """
    from ase.calculators.calculator import BaseCalculator

    module_name, _, attr = str(path).rpartition(".")
    if not module_name or not attr:
        raise OracleInputError(
            f"ase oracle: calculator '{path}' is not a dotted import path "
            "(e.g. 'ase.calculators.vasp.Vasp')"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OracleInputError(f"ase oracle: cannot import calculator '{path}': {exc}") from exc
    obj = getattr(module, attr, None)
    if obj is None or not callable(obj):
        raise OracleInputError(
            f"ase oracle: cannot import calculator '{path}': "
            f"module '{module_name}' has no calculator '{attr}'"
        )
    if isinstance(obj, type) and issubclass(obj, BaseCalculator):
        return obj
    package = str(getattr(obj, "__module__", "") or "").split(".")[0]
    if inspect.isfunction(obj) and package in FACTORY_PACKAGES:
        return obj
    raise OracleInputError(
        f"ase oracle: calculator '{path}' is not an ASE calculator class (a subclass of "
        "ase.calculators.calculator.BaseCalculator); other code comes in as an oracle plugin "
        "(README: your own DFT code)"
    )


def _explicit_parameters(factory: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return set()


class _SectionConfig:
    """Stands in for ``ase.config.Config``: one section, as a profile's ``from_config`` reads it.

    Used instead of a real ``Config`` because that parses values with configparser
    interpolation, which would mangle commands containing ``$``.
    """

    def __init__(self, name: str, section: Mapping[str, str]) -> None:
        self.parser = {name: dict(section)}


class _ProfilePlaceholder:
    """Lets a profile-based calculator be constructed only to read its ``template``."""

    command = ""


@contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class ASECalculatorOracle(Oracle):
    """Any ASE calculator, configured by import path and keyword arguments.

    Parameters
    ----------
    fidelity
        Fidelity label (e.g. ``pbe``); default: the calculator's class name in lower case.
    calculator
        Dotted import path of the calculator class, e.g. ``ase.calculators.vasp.Vasp``.
    kwargs
        Keyword arguments for the calculator's constructor (the code's own settings).
    command
        Shell command that runs the code, e.g. ``srun aims.x`` (see the module docstring).
    species_dir, pseudo_dir
        Basis-set / pseudopotential directory (the two names are synonyms).
    directory
        Parent of the per-call run directories; default: fresh temporary directories.
    directory_template
        Name of a run directory below ``directory``; may use ``{formula}``, ``{hash}``
        (of the structure, so a rerun of the same frame reuses its directory) and ``{pid}``.
    supported_elements
        Chemical symbols the setup covers (e.g. those with a species file); default: any.
    """

    def __init__(
        self,
        fidelity: str | None = None,
        calculator: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        command: str | None = None,
        species_dir: str | None = None,
        pseudo_dir: str | None = None,
        directory: str | None = None,
        directory_template: str = "{formula}-{hash}",
        supported_elements: list[str] | None = None,
    ) -> None:
        if not calculator:
            raise OracleInputError(
                "ase oracle: option 'calculator' (dotted import path, e.g. "
                "'ase.calculators.vasp.Vasp') is required"
            )
        self.factory = import_calculator(calculator)
        self.name = getattr(self.factory, "__name__", str(calculator).rsplit(".", 1)[-1])
        self.default_fidelity = self.name.lower()
        if species_dir and pseudo_dir and species_dir != pseudo_dir:
            raise OracleInputError(
                "ase oracle: 'species_dir' and 'pseudo_dir' are synonyms; give only one"
            )
        data_dir = species_dir or pseudo_dir
        if supported_elements is not None:
            bad = sorted(set(supported_elements) - set(chemical_symbols[1:]))
            if bad:
                raise OracleInputError(
                    f"ase oracle: supported_elements has unknown symbol(s) {', '.join(bad)}"
                )
        try:
            directory_template.format(**_TEMPLATE_FIELDS)
        except (KeyError, IndexError, ValueError) as exc:
            raise OracleInputError(
                f"ase oracle: directory_template '{directory_template}' is invalid ({exc}); "
                f"it may use {', '.join('{' + k + '}' for k in _TEMPLATE_FIELDS)}"
            ) from exc
        super().__init__(
            fidelity,
            calculator=calculator,
            kwargs=dict(kwargs or {}),
            command=command,
            species_dir=data_dir,
            directory=directory,
            directory_template=directory_template,
            supported_elements=supported_elements,
        )
        # label() hands its run directory to make_calculator() (called inside Oracle.label)
        # through this attribute, so one oracle object must not label from two threads at once.
        self._pending_directory: Path | None = None
        self._profile: Any = None
        self._environment: dict[str, str] = {}

        # Decide how the command and data directory reach the code (module docstring).
        if isinstance(self.factory, type) and issubclass(self.factory, GenericFileIOCalculator):
            self.kind = "profile"
            if data_dir and command is None:
                raise OracleInputError(
                    f"ase oracle: {self.name} needs 'command' when a species/pseudo directory "
                    "is given (or put both into ASE's config file)"
                )
        elif (isinstance(self.factory, type) and issubclass(self.factory, FileIOCalculator)) or (
            "command" in _explicit_parameters(self.factory)
        ):
            self.kind = "command"
            if data_dir:
                pp_variable = getattr(self.factory, "VASP_PP_PATH", None)
                if pp_variable is None:
                    raise OracleInputError(
                        f"ase oracle: {self.name} takes no species/pseudopotential directory; "
                        "set it through 'kwargs' instead"
                    )
                self._environment[pp_variable] = str(Path(data_dir).expanduser())
        else:
            self.kind = "in-process"
            if command:
                raise OracleInputError(
                    f"ase oracle: {self.name} runs inside Python and takes no 'command'"
                )
            if data_dir:
                raise OracleInputError(
                    f"ase oracle: {self.name} takes no 'species_dir'/'pseudo_dir'; "
                    "set it through 'kwargs' instead"
                )
        # Nothing is constructed here: validating a config must not call the code it names.
        # The first make_calculator() (the first label) builds the profile and the calculator,
        # so bad settings stop the campaign at its first oracle call.
        self._profile_ready = self.kind != "profile"

    # -- construction -------------------------------------------------------------------------

    def _build_profile(self, command: str | None, data_dir: str | None) -> Any:
        """The profile object for a GenericFileIOCalculator, or None to use ASE's config file."""
        if command is None:
            if data_dir:
                raise OracleInputError(
                    f"ase oracle: {self.name} needs 'command' when a species/pseudo directory "
                    "is given (or put both into ASE's config file)"
                )
            return None
        try:
            probe = self.factory(profile=_ProfilePlaceholder(), **self.options["kwargs"])
        except Exception as exc:
            raise OracleInputError(
                f"ase oracle: {self.name} rejected its settings: {type(exc).__name__}: {exc}"
            ) from exc
        template = probe.template
        section = {"command": command}
        if data_dir:
            path = str(Path(data_dir).expanduser())
            section.update(dict.fromkeys(_DIRECTORY_CONFIGVARS, path))
        try:
            profile = template.load_profile(_SectionConfig(template.name, section))
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise OracleInputError(
                f"ase oracle: cannot set up how to run {self.name} (command {command!r}): "
                f"{type(cause).__name__}: {cause}"
            ) from exc
        if data_dir and not any(hasattr(profile, v) for v in _DIRECTORY_CONFIGVARS):
            raise OracleInputError(
                f"ase oracle: {self.name} takes no species/pseudopotential directory"
            )
        return profile

    def _build(self, directory: Path | None) -> Calculator:
        if not self._profile_ready:
            self._profile = self._build_profile(
                self.options["command"], self.options["species_dir"]
            )
            self._profile_ready = True
        kwargs = dict(self.options["kwargs"])
        explicit = _explicit_parameters(self.factory)
        if self.kind == "profile":
            kwargs.update(profile=self._profile, directory=directory)
        elif self.kind == "command":
            if self.options["command"]:
                kwargs["command"] = self.options["command"]
            if "directory" in explicit:
                kwargs["directory"] = str(directory)
        try:
            calc = self.factory(**kwargs)
        except Exception as exc:
            hint = ""
            if self.kind == "profile" and self._profile is None:
                hint = " (give 'command', or configure the code in ASE's config file)"
            raise OracleInputError(
                f"ase oracle: {self.name} rejected its settings: {type(exc).__name__}: {exc}{hint}"
            ) from exc
        if directory is not None and "directory" not in kwargs and hasattr(calc, "directory"):
            calc.directory = str(directory)
        if self._environment:
            original = calc.calculate
            variables = dict(self._environment)

            def calculate(*args: Any, **kw: Any) -> Any:
                with _environment(variables):
                    return original(*args, **kw)

            calc.calculate = calculate
        return calc

    # -- Oracle interface ----------------------------------------------------------------------

    @property
    def supported_elements(self) -> set[str] | None:
        listed = self.options["supported_elements"]
        return None if listed is None else set(listed)

    def make_calculator(self, directory: str | Path | None = None) -> Calculator:
        """A fresh calculator that runs in ``directory``.

        Without ``directory`` (and outside :meth:`label`), a file-based code gets a new
        temporary directory that is left in place; an in-process one keeps its default.
        """
        if directory is None:
            directory = self._pending_directory
        if directory is None:
            if self.kind == "in-process":
                return self._build(None)
            directory = tempfile.mkdtemp(prefix=f"alkappa-{self.default_fidelity}-")
        return self._build(Path(directory))

    def run_directory(self, atoms: Atoms) -> Path | None:
        """Where :meth:`label` runs ``atoms`` if ``directory`` is set, else None (temporary)."""
        base = self.options["directory"]
        if base is None:
            return None
        name = self.options["directory_template"].format(
            formula=atoms.get_chemical_formula(), hash=structure_hash(atoms), pid=os.getpid()
        )
        return Path(base).expanduser() / name

    def label(self, atoms: Atoms) -> Atoms:
        self.check(atoms)
        directory = self.run_directory(atoms)
        temporary = directory is None
        if temporary:
            directory = Path(tempfile.mkdtemp(prefix=f"alkappa-{self.default_fidelity}-"))
        else:
            directory.mkdir(parents=True, exist_ok=True)
        self._pending_directory = directory
        try:
            out = super().label(atoms)
        except OracleError as exc:
            raise OracleError(
                f"{exc} [run directory kept: {directory}]", transient=exc.transient
            ) from exc
        except OracleInputError:
            if temporary:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        finally:
            self._pending_directory = None
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            out.info["oracle_directory"] = str(directory)
        return out

    def command_line(self) -> list[str] | None:
        """The argv the external code would be started with, or None if it runs in-process.

        Nothing is run and no file is written.
        """
        calc = self._build(Path(tempfile.gettempdir()) / "alkappa-ase-probe")
        if self.kind == "profile":
            return list(calc.profile.get_command(getattr(calc.template, "inputname", None)))
        if self.kind == "command":
            if hasattr(calc, "make_command"):  # VASP: command, else ASE_VASP_COMMAND etc.
                try:
                    return shlex.split(calc.make_command(calc.command))
                except Exception as exc:
                    raise OracleInputError(
                        f"ase oracle: no command for {self.name}: {exc}"
                    ) from exc
            return shlex.split(calc.profile.command)
        return None

    def describe(self) -> str:
        return f"ASE {self.name}"
