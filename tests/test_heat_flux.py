"""Heat fluxes: unfolded (message passing), virial and harmonic, against analytic results."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import neighbor_list

from alkappa.greenkubo._flux import (
    HEAT_FLUX_METHODS,
    HarmonicHeatFlux,
    HeatFluxCalculator,
    HeatFluxMethod,
    VirialHeatFlux,
    atomic_stresses,
    make_heat_flux,
    minimum_image_pair_vectors,
    velocities_per_fs,
)
from alkappa.models._nequip_ensemble import Member, NequIPEnsembleCalculator
from alkappa.models.nequip import UnfoldedHeatFlux

torch = pytest.importorskip("torch")

# --- a Lennard-Jones "model" in torch, equal to ASE's smooth LennardJones ----------------------

SIGMA, EPSILON, RC, RO = 2.3, 0.05, 5.0, 4.0


class TorchLJ(torch.nn.Module):
    """Atomic energies U_i = 1/2 sum_j phi(r_ij) through nequip's model interface."""

    def forward(self, data):  # type: ignore[no-untyped-def]
        pos = data["pos"]
        i, j = data["edge_index"]
        vec = pos[j] - pos[i]
        if "cell" in data:
            vec = vec + data["edge_cell_shift"] @ data["cell"].view(3, 3)
        r2 = (vec * vec).sum(-1)
        c6 = (SIGMA**2 / r2) ** 3
        phi = 4 * EPSILON * (c6 * c6 - c6)
        rc2, ro2 = RC**2, RO**2
        smooth = (rc2 - r2) ** 2 * (rc2 + 2 * r2 - 3 * ro2) / (rc2 - ro2) ** 3
        cut = torch.where(r2 < ro2, torch.ones_like(r2), smooth)
        cut = torch.where(r2 < rc2, cut, torch.zeros_like(r2))
        energies = torch.zeros(pos.shape[0], dtype=pos.dtype).index_add(0, i, 0.5 * phi * cut)
        return {**data, "atomic_energy": energies[:, None]}


def lj_member() -> Member:
    return Member(path=None, model=TorchLJ(), kind="eager", r_max=RC, type_names=["Ar"])


def ase_lj() -> LennardJones:
    return LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC, ro=RO, smooth=True)


def thermal(atoms: Atoms, seed: int, rattle: float = 0.1, temperature: float = 300.0) -> Atoms:
    """Rattled copy with Maxwell-Boltzmann velocities (no net momentum)."""
    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
    masses = atoms.get_masses()[:, None]
    momenta = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * temperature)
    atoms.set_momenta(momenta - momenta.mean(axis=0))
    return atoms


def lj_crystal(seed: int = 0) -> Atoms:
    """32-atom fcc Ar-like cell (nearest neighbours near the LJ minimum)."""
    return thermal(bulk("Ar", "fcc", a=3.65, cubic=True).repeat(2), seed)


def rel_close(a: np.ndarray, b: np.ndarray, rtol: float) -> None:
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    assert scale > 0
    assert np.linalg.norm(np.asarray(a) - np.asarray(b)) <= rtol * scale, (a, b)


def analytic_pair_flux(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Potential and convective flux (eV/Å²/fs) of the LJ pair potential, by hand.

    V J_pot = 1/2 sum_ij r_ij (F_ij . v_i), r_ij = r_i - r_j, F_ij the force on i due to j;
    V J_conv = sum_i (U_i + K_i) v_i with U_i = 1/2 sum_j phi(r_ij).
    """
    i, d, vec = neighbor_list("idD", atoms, RC)  # vec = r_j - r_i (with the image shift)
    s6 = (SIGMA / d) ** 6
    phi = 4 * EPSILON * (s6 * s6 - s6)
    dphi = 4 * EPSILON * (-12 * s6 * s6 + 6 * s6) / d
    x, rc2, ro2 = d**2, RC**2, RO**2
    inner = x < ro2
    cut = np.where(inner, 1.0, (rc2 - x) ** 2 * (rc2 + 2 * x - 3 * ro2) / (rc2 - ro2) ** 3)
    dcut = np.where(inner, 0.0, 6 * (rc2 - x) * (ro2 - x) / (rc2 - ro2) ** 3 * 2 * d)
    dphi_c = dphi * cut + phi * dcut  # d(phi * cut)/dr
    force_ij = (dphi_c / d)[:, None] * vec  # on i, towards j when attractive
    v = velocities_per_fs(atoms)
    volume = atoms.get_volume()
    potential = 0.5 * np.einsum("ea,eb,eb->a", -vec, force_ij, v[i]) / volume
    energies = np.bincount(i, weights=0.5 * phi * cut, minlength=len(atoms))
    kinetic = 0.5 * atoms.get_masses() * (atoms.get_velocities() ** 2).sum(axis=1)
    convective = ((energies + kinetic)[:, None] * v).sum(axis=0) / volume
    return potential, convective


# --- tiny untrained NequIP models (built directly, no training) -------------------------------

NEQUIP_RMAX = 4.0


def tiny_nequip(seed: int = 0) -> Member:
    """A 2-layer NequIP model with random weights for Cu and I (weights do not matter here)."""
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    set_global_state()
    model = NequIPGNNModel(
        seed=seed,
        model_dtype="float64",
        type_names=["Cu", "I"],
        r_max=NEQUIP_RMAX,
        num_layers=2,
        l_max=1,
        num_features=8,
        radial_mlp_width=8,
        avg_num_neighbors=10.0,
        per_type_energy_scales={"Cu": 0.5, "I": 0.7},
        per_type_energy_shifts={"Cu": -3.0, "I": -2.0},
    )
    model.eval()
    return Member(path=None, model=model, kind="eager", r_max=NEQUIP_RMAX, type_names=["Cu", "I"])


@pytest.fixture(scope="module")
def nequip_members() -> list[Member]:
    return [tiny_nequip(0), tiny_nequip(1)]


def cui(seed: int = 0, repeat: tuple[int, int, int] = (1, 1, 1)) -> Atoms:
    """Rattled zincblende CuI (8 atoms per cubic cell) with thermal velocities."""
    return thermal(bulk("CuI", "zincblende", a=6.05, cubic=True).repeat(repeat), seed)


# --- unfolded flux: the pair potential --------------------------------------------------------


def test_unfolded_pair_flux_equals_analytic_and_virial_flux():
    atoms = lj_crystal(0)
    unfolded = UnfoldedHeatFlux([lj_member()], num_layers=1, convective=True)
    flux = unfolded.heat_flux(atoms)
    potential, convective = analytic_pair_flux(atoms)
    rel_close(unfolded.results["heat_flux_potential"], potential, 1e-8)
    rel_close(unfolded.results["heat_flux_convective"], convective, 1e-8)
    rel_close(flux, potential + convective, 1e-8)
    # ASE's Lennard-Jones atomic stresses give the same flux
    atoms.calc = ase_lj()
    virial = VirialHeatFlux(convective=True)
    rel_close(virial.heat_flux(atoms), flux, 1e-8)
    # and the unfolded system reproduces the periodic energies and forces
    assert unfolded.results["energy"] == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(unfolded.results["forces"], atoms.get_forces(), atol=1e-12)
    np.testing.assert_allclose(unfolded.results["energies"], atoms.get_potential_energies())
    # without the convective term (the default) only the potential part remains
    plain = UnfoldedHeatFlux([lj_member()], num_layers=1)
    np.testing.assert_allclose(plain.heat_flux(atoms), unfolded.results["heat_flux_potential"])


def test_pair_flux_time_derivative_along_md():
    """d/dt sum_i r_i E_i (r_i unwrapped) = V (J_conv + J_pot + J_boundary) along NVE MD."""
    atoms = lj_crystal(1)
    atoms.calc = ase_lj()
    flux = UnfoldedHeatFlux([lj_member()], num_layers=1, convective=True)
    dt = 0.25  # fs
    dyn = VelocityVerlet(atoms, timestep=dt * units.fs)
    barycentre, rates = [], []

    def record() -> None:
        flux.heat_flux(atoms)
        res = flux.results
        kinetic = 0.5 * atoms.get_masses() * (atoms.get_velocities() ** 2).sum(axis=1)
        barycentre.append(atoms.positions.T @ (res["energies"] + kinetic))
        volume = atoms.get_volume()
        rates.append(volume * (res["heat_flux"] + res["boundary_term"]))

    dyn.attach(record, interval=1)
    dyn.run(12)
    barycentre, rates = np.array(barycentre), np.array(rates)
    derivative = (barycentre[2:] - barycentre[:-2]) / (2 * dt)
    # central differences: error ~ (omega dt)^2; the boundary term is large here (images)
    assert np.abs(rates).max() > 1e-3
    np.testing.assert_allclose(derivative, rates[1:-1], atol=2e-3 * np.abs(rates).max())


# --- unfolded flux: NequIP (two message-passing layers) ---------------------------------------


def _path_identity(flux: UnfoldedHeatFlux, atoms: Atoms, h: float = 1e-2) -> None:
    """Along r + v t: d/dt sum_i r_i U_i = sum U_i v_i + V J_pot - sum r_i F_i.v_i + V J_b."""
    v = velocities_per_fs(atoms)

    def barycentre(t: float) -> np.ndarray:
        moved = atoms.copy()
        moved.positions = atoms.positions + v * t
        flux.heat_flux(moved)
        return moved.positions.T @ flux.results["energies"]

    derivative = (barycentre(h) - barycentre(-h)) / (2 * h)
    flux.heat_flux(atoms)
    res = flux.results
    volume = atoms.get_volume()
    expected = (
        v.T @ res["energies"]
        + volume * (res["heat_flux_potential"] + res["boundary_term"])
        - atoms.positions.T @ np.einsum("ia,ia->i", res["forces"], v)
    )
    rel_close(derivative, expected, 1e-6)


def test_nequip_flux_time_derivative_identity(nequip_members):
    atoms = cui(2)
    atoms.positions += 3.0  # far from the origin, partly outside the cell
    flux = UnfoldedHeatFlux(nequip_members[:1])
    assert flux.num_layers == 2 and flux.margin == 2 * NEQUIP_RMAX
    _path_identity(flux, atoms)


def test_margin_beyond_layers_times_cutoff_changes_nothing(nequip_members):
    atoms = cui(3)
    reference = UnfoldedHeatFlux(nequip_members[:1]).heat_flux(atoms)
    for margin in (2 * NEQUIP_RMAX + 0.7, 3 * NEQUIP_RMAX):
        rel_close(
            UnfoldedHeatFlux(nequip_members[:1], margin=margin).heat_flux(atoms), reference, 1e-10
        )
    # pruning only drops edges that cannot reach the cell atoms
    unpruned = UnfoldedHeatFlux(nequip_members[:1], prune=False)
    rel_close(unpruned.heat_flux(atoms), reference, 1e-10)
    # the same for the pair potential: one layer, margin = cutoff is enough
    lj = lj_crystal(3)
    rel_close(
        UnfoldedHeatFlux([lj_member()], num_layers=1, margin=1.6 * RC).heat_flux(lj),
        UnfoldedHeatFlux([lj_member()], num_layers=1).heat_flux(lj),
        1e-10,
    )


def test_margin_of_one_cutoff_is_wrong_for_two_layers(nequip_members):
    """Why unfolding matters: one cutoff of images misses second-shell (two-hop) dependencies.

    The cell energies of the unfolded system are then wrong (the neighbours' first-layer
    features miss messages); the flux compares them with the periodic ones and refuses.
    """
    atoms = cui(4)
    short = UnfoldedHeatFlux(nequip_members[:1], margin=NEQUIP_RMAX)
    with pytest.raises(RuntimeError, match="atomic energies differ"):
        short.heat_flux(atoms)
    unfolded, types = short.unfold(atoms)
    relative, graph = short._inputs(unfolded, types)
    module = short._modules[0]
    with torch.no_grad():
        energies = module({"pos": torch.as_tensor(relative), **graph})["atomic_energy"]
    full = UnfoldedHeatFlux(nequip_members[:1])
    full.heat_flux(atoms)
    truncated = float(energies.reshape(-1)[: len(atoms)].sum())
    assert truncated != pytest.approx(full.results["energy"], rel=1e-12)


def test_float32_flux_is_close_to_float64(nequip_members):
    atoms = cui(8, repeat=(2, 1, 1))
    exact = UnfoldedHeatFlux(nequip_members)
    single = UnfoldedHeatFlux(nequip_members, dtype="float32")
    j64, j32 = exact.heat_flux(atoms), single.heat_flux(atoms)
    rel_close(j32, j64, 1e-4)
    assert not np.array_equal(j32, j64)  # really evaluated in float32
    np.testing.assert_allclose(single.results["forces"], exact.results["forces"], atol=1e-4)
    assert single.results["energy"] == pytest.approx(exact.results["energy"], abs=1e-5 * len(atoms))
    # the float64 members are untouched
    assert all(p.dtype == torch.float64 for p in nequip_members[0].model.parameters())
    with pytest.raises(ValueError, match="dtype"):
        UnfoldedHeatFlux(nequip_members, dtype="float16")
    # a production's runs carry the precision in their fingerprint
    assert (exact.name, single.name) == ("unfolded", "unfolded-float32")


def test_unfolded_atoms_ordered_by_distance(nequip_members):
    """Pruned layers take prefixes: cell atoms first, images by distance, edges by centre."""
    atoms = cui(9)
    flux = UnfoldedHeatFlux(nequip_members[:1])
    unfolded, _ = flux.unfold(atoms)
    n = len(atoms)
    np.testing.assert_array_equal(unfolded.index[:n], np.arange(n))
    assert not unfolded.shifts[:n].any()
    assert np.all(np.diff(unfolded.distance) >= 0)
    assert np.all(np.diff(unfolded.edge_index[0]) >= 0)


def test_translation_and_wrapping_invariance(nequip_members):
    atoms = cui(5)
    flux = UnfoldedHeatFlux(nequip_members[:1])
    reference = flux.heat_flux(atoms)
    variants = []
    moved = atoms.copy()
    moved.positions += np.array([1.3, -7.1, 0.4])
    variants.append(moved)
    wrapped = atoms.copy()
    wrapped.wrap()
    variants.append(wrapped)
    shifted = atoms.copy()  # some atoms by lattice vectors, far outside the cell
    rng = np.random.default_rng(0)
    shifted.positions += rng.integers(-2, 3, size=(len(atoms), 3)) @ atoms.cell.array
    variants.append(shifted)
    for variant in variants:
        rel_close(flux.heat_flux(variant), reference, 1e-10)


def test_nequip_flux_virials_energy_forces_stress(nequip_members):
    """The JVP flux equals sum_o W_o v_o / V; -sum W^T / V is the model's stress."""
    atoms = cui(6)
    flux = UnfoldedHeatFlux(nequip_members[:1])
    j = flux.heat_flux(atoms)
    virials = flux.atomic_virials(atoms)
    from_virials = np.einsum("oab,ob->a", virials, velocities_per_fs(atoms)) / atoms.get_volume()
    rel_close(from_virials, j, 1e-10)
    periodic = atoms.copy()
    periodic.calc = NequIPEnsembleCalculator(nequip_members[:1])
    assert flux.results["energy"] == pytest.approx(periodic.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(flux.results["forces"], periodic.get_forces(), atol=1e-10)
    np.testing.assert_allclose(
        -virials.sum(axis=0).T / atoms.get_volume(), periodic.get_stress(voigt=False), atol=1e-10
    )


def test_ensemble_flux_is_member_mean_and_average_virials(nequip_members):
    atoms = cui(7)
    ensemble = UnfoldedHeatFlux(nequip_members)
    j = ensemble.heat_flux(atoms)
    members = ensemble.results["heat_flux_members"]
    assert members.shape == (2, 3)
    for k, member in enumerate(nequip_members):
        rel_close(UnfoldedHeatFlux([member]).heat_flux(atoms), members[k], 1e-10)
    rel_close(j, members.mean(axis=0), 1e-12)
    assert np.linalg.norm(members[0] - members[1]) > 1e-3 * np.linalg.norm(j)
    # the average virial: heat_flux = potential - aux, aux = sum_o Wbar_o v_o / V
    frames = [cui(s) for s in (10, 11)]
    average = ensemble.set_average_virials(frames)
    assert average.shape == (len(atoms), 3, 3)
    np.testing.assert_allclose(average, np.mean([ensemble.atomic_virials(f) for f in frames], 0))
    j2 = ensemble.heat_flux(atoms)
    res = ensemble.results
    aux = np.einsum("oab,ob->a", average, velocities_per_fs(atoms)) / atoms.get_volume()
    np.testing.assert_allclose(res["heat_flux_aux"], aux)
    np.testing.assert_allclose(j2, res["heat_flux_potential"] - aux)
    np.testing.assert_allclose(res["heat_flux_potential"], j)


def test_unfolded_needs_eager_members_and_layers():
    member = lj_member()
    with pytest.raises(ValueError, match="num_layers"):
        UnfoldedHeatFlux([member])
    compiled = Member(path="m.pt2", model=None, kind="compiled", r_max=RC, type_names=["Ar"])
    with pytest.raises(ValueError, match="eager"):
        UnfoldedHeatFlux([compiled], num_layers=1)
    with pytest.raises(ValueError, match="smaller than the cutoff"):
        UnfoldedHeatFlux([member], num_layers=1, margin=0.5 * RC)


# --- virial flux ---------------------------------------------------------------------------------


def test_virial_flux_recognises_extensive_atomic_stresses():
    atoms = lj_crystal(8)
    atoms.calc = ase_lj()
    intensive = atomic_stresses(atoms)
    reference = VirialHeatFlux().heat_flux(atoms)
    fake = atoms.copy()
    fake.calc = SinglePointCalculator(
        fake,
        energy=atoms.get_potential_energy(),
        stress=atoms.get_stress(),
        stresses=intensive * atoms.get_volume(),
    )
    np.testing.assert_allclose(atomic_stresses(fake), intensive)
    rel_close(VirialHeatFlux().heat_flux(fake), reference, 1e-12)


# --- harmonic flux -------------------------------------------------------------------------------


def spring_force_constants(atoms: Atoms, k: float, a: float) -> np.ndarray:
    """Phi of isotropic nearest-neighbour springs (energy k/2 |u_i - u_j|^2 per bond)."""
    i, j = neighbor_list("ij", atoms, 1.2 * a)
    fc = np.zeros((len(atoms), len(atoms), 3, 3))
    np.add.at(fc, (i, j), -k * np.eye(3))
    np.add.at(fc, (i, i), k * np.eye(3))
    return fc


def _harmonic_md(flux: HarmonicHeatFlux, atoms: Atoms, dt: float, steps: int):  # type: ignore[no-untyped-def]
    """Velocity Verlet with the harmonic forces; yields atoms at every step."""
    masses = atoms.get_masses()[:, None]
    flux.heat_flux(atoms)
    for _ in range(steps):
        forces = flux.results["forces"]
        atoms.set_momenta(atoms.get_momenta() + 0.5 * dt * units.fs * forces)
        atoms.positions += dt * units.fs * atoms.get_momenta() / masses
        flux.heat_flux(atoms)
        atoms.set_momenta(atoms.get_momenta() + 0.5 * dt * units.fs * flux.results["forces"])
        flux.heat_flux(atoms)
        yield atoms


@pytest.mark.parametrize("pair_vectors", ["reference", "current"])
def test_harmonic_flux_time_derivative_in_a_cluster(pair_vectors):
    """Finite cluster: d/dt sum R_i E_i = V J_pot(reference); d/dt sum r_i E_i = V J (current)."""
    a, k = 2.5, 2.0
    reference = Atoms("Cu27", positions=np.indices((3, 3, 3)).reshape(3, -1).T * a)
    reference.set_cell(np.eye(3) * 3 * a)  # for the volume only: not periodic
    reference.set_masses(np.full(27, 50.0))
    fc = spring_force_constants(reference, k, a)
    current = pair_vectors == "current"
    flux = HarmonicHeatFlux(reference, fc, pair_vectors=pair_vectors, convective=current)
    atoms = thermal(reference, 9, rattle=0.05, temperature=200.0)
    dt = 0.25  # fs; the mismatch is 7e-4 of the flux here and scales as dt^2
    barycentre, rates = [], []
    for state in _harmonic_md(flux, atoms, dt, 12):
        kinetic = 0.5 * state.get_masses() * (state.get_velocities() ** 2).sum(axis=1)
        weights = state.positions if current else reference.positions
        barycentre.append(weights.T @ (flux.results["energies"] + kinetic))
        rates.append(state.get_volume() * flux.results["heat_flux"])
    barycentre, rates = np.array(barycentre), np.array(rates)
    derivative = (barycentre[2:] - barycentre[:-2]) / (2 * dt)
    assert np.abs(rates).max() > 1e-3
    np.testing.assert_allclose(derivative, rates[1:-1], atol=2e-3 * np.abs(rates).max())


def test_harmonic_flux_periodic_images_and_wrapping():
    a, k = 2.5, 2.0
    # 2x2x2 simple cubic: the two nearest images of a neighbour are equally short
    small = Atoms(
        "Cu8",
        positions=np.indices((2, 2, 2)).reshape(3, -1).T * a,
        cell=np.eye(3) * 2 * a,
        pbc=True,
    )
    vectors = minimum_image_pair_vectors(small)
    np.testing.assert_allclose(vectors[0, 1], 0.0, atol=1e-12)  # +a and -a averaged
    np.testing.assert_allclose(vectors, -vectors.transpose(1, 0, 2), atol=1e-12)
    # 4x4x4: unique nearest neighbours; the flux does not depend on wrapping or on the
    # flattened (3N, 3N) force-constant layout
    reference = Atoms(
        "Cu64",
        positions=np.indices((4, 4, 4)).reshape(3, -1).T * a,
        cell=np.eye(3) * 4 * a,
        pbc=True,
    )
    fc = spring_force_constants(reference, k, a)
    atoms = thermal(reference, 10, rattle=0.05)
    flux = HarmonicHeatFlux(reference, fc)
    j = flux.heat_flux(atoms)
    shifted = atoms.copy()
    shifted.positions[::3] += 4 * a * np.array([1, 0, -1])
    flat = fc.transpose(0, 2, 1, 3).reshape(3 * 64, 3 * 64)
    rel_close(HarmonicHeatFlux(reference, flat).heat_flux(shifted), j, 1e-12)
    # equals the pair sum over bonds -1/2 sum_ij r_ij (v_i . Phi_ij u_j) = k/2 sum r_ij (v_i . u_j)
    i, jj, bond = neighbor_list("ijD", reference, 1.2 * a)  # bond = R_j - R_i
    u = atoms.positions - reference.positions
    v = velocities_per_fs(atoms)
    by_hand = 0.5 * k * np.einsum("ea,eb,eb->a", -bond, v[i], u[jj]) / atoms.get_volume()
    rel_close(j, by_hand, 1e-12)
    assert flux.results["energy"] == pytest.approx(
        0.25 * k * ((u[i] - u[jj]) ** 2).sum(), rel=1e-12
    )


# --- common interface --------------------------------------------------------------------------


def test_make_heat_flux_and_ase_wrapper(nequip_members):
    assert set(HEAT_FLUX_METHODS) == {"unfolded", "virial", "harmonic"}
    unfolded = UnfoldedHeatFlux(nequip_members[:1])
    assert isinstance(unfolded, HeatFluxMethod)
    assert isinstance(make_heat_flux("virial"), VirialHeatFlux)
    with pytest.raises(ValueError, match="unknown heat-flux method"):
        make_heat_flux("green")
    atoms = cui(12)
    calc = HeatFluxCalculator(NequIPEnsembleCalculator(nequip_members[:1]), unfolded)
    atoms.calc = calc
    forces = atoms.get_forces()
    j = calc.get_property("heat_flux", atoms)
    rel_close(j, UnfoldedHeatFlux(nequip_members[:1]).heat_flux(atoms), 1e-12)
    # same positions, new velocities: a new flux, not the cached one
    atoms.set_velocities(-atoms.get_velocities())
    rel_close(calc.get_property("heat_flux", atoms), -j, 1e-12)
    np.testing.assert_allclose(atoms.get_forces(), forces)
    assert "heat_flux_potential" in calc.results


# --- a trained, packaged member (slow: trains one tiny model) ---------------------------------


@pytest.mark.slow
def test_packaged_nequip_member(tmp_path):
    from helpers import labelled

    from alkappa.io.dataset import write_dataset
    from alkappa.models.ensemble import load_ensemble
    from alkappa.models.nequip import NequIPModel

    frames = [labelled(cui(s), ase_lj()) for s in range(4)]
    write_dataset(tmp_path / "train.xyz", frames[:3])
    write_dataset(tmp_path / "val.xyz", frames[3:])
    model = NequIPModel(
        num_layers=2,
        l_max=1,
        num_features=8,
        radial_mlp_width=8,
        r_max=NEQUIP_RMAX,
        max_epochs=1,
        batch_size=2,
    )
    result = model.train(
        tmp_path / "train.xyz",
        tmp_path / "val.xyz",
        tmp_path / "member_0",
        species=["Cu", "I"],
        seed=0,
    )
    flux = UnfoldedHeatFlux.from_paths(tmp_path)  # a model directory
    assert flux.size == 1 and flux.num_layers == 2 and flux.margin == 2 * NEQUIP_RMAX
    atoms = cui(13)
    j = flux.heat_flux(atoms)
    periodic = atoms.copy()
    periodic.calc = load_ensemble([result.model_path], compiled=False)
    np.testing.assert_allclose(flux.results["forces"], periodic.get_forces(), atol=1e-9)
    virials = flux.atomic_virials(atoms)
    rel_close(
        np.einsum("oab,ob->a", virials, velocities_per_fs(atoms)) / atoms.get_volume(), j, 1e-9
    )
    short = UnfoldedHeatFlux.from_paths([result.model_path], margin=NEQUIP_RMAX)
    with pytest.raises(RuntimeError, match="atomic energies differ"):
        short.heat_flux(atoms)
