"""Physical sanity of the emulators, the built-in station registry and the sim helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from genesis_platform.errors import InvalidInput
from genesis_platform.labs.emulators import EMULATORS, Emulator, get_emulator
from genesis_platform.labs.protocols import Station
from genesis_platform.labs.registry import builtin_stations, open_station
from genesis_platform.labs.simulated import SimulatedStation
from genesis_platform.testing import electrolyte_simulation, reaction_yield_simulation

SOLVENTS = ["EC-DMC", "EC-EMC", "PC"]
CATALYSTS = ["Pd(PPh3)4", "Pd(dppf)Cl2", "XPhos Pd G3", "Pd(OAc)2/SPhos"]
MOLALITIES = np.linspace(0.1, 3.0, 59)


def kappa(molality: float, temperature_c: int, solvent: str) -> float:
    point = {"salt_molality": float(molality), "temperature_c": temperature_c, "solvent": solvent}
    return get_emulator("electrolyte").mean(point)["conductivity"]


def yield_of(temperature_c: float, time_min: float, equivalents: float, catalyst: str) -> float:
    point = {
        "temperature_c": float(temperature_c),
        "time_min": float(time_min),
        "equivalents": float(equivalents),
        "catalyst": catalyst,
    }
    return get_emulator("reaction-yield").mean(point)["yield"]


# -- electrolyte ------------------------------------------------------------------------------


def test_electrolyte_schema_is_exactly_the_documented_one() -> None:
    emulator = get_emulator("electrolyte")
    assert emulator.parameters == {
        "salt_molality": {"type": "real", "low": 0.1, "high": 3.0, "log": False, "unit": "mol/kg"},
        "temperature_c": {"type": "int", "low": 10, "high": 60, "log": False, "unit": "°C"},
        "solvent": {"type": "choice", "values": SOLVENTS, "unit": ""},
    }
    assert emulator.measurements == {"conductivity": {"unit": "mS/cm"}}


@pytest.mark.parametrize("solvent", SOLVENTS)
@pytest.mark.parametrize("temperature_c", [10, 25, 40])
def test_conductivity_peaks_at_an_interior_molality(solvent: str, temperature_c: int) -> None:
    values = [kappa(m, temperature_c, solvent) for m in MOLALITIES]
    peak = MOLALITIES[int(np.argmax(values))]
    assert 0.6 <= peak <= 1.5
    assert values[0] < 0.6 * max(values) and values[-1] < 0.8 * max(values)


@pytest.mark.parametrize("solvent", SOLVENTS)
def test_conductivity_rises_with_temperature(solvent: str) -> None:
    for molality in (0.3, 1.0, 2.0):
        values = [kappa(molality, t, solvent) for t in range(10, 61, 5)]
        assert all(a < b for a, b in itertools.pairwise(values))


def test_peak_molality_shifts_up_with_temperature() -> None:
    cold = MOLALITIES[int(np.argmax([kappa(m, 10, "EC-DMC") for m in MOLALITIES]))]
    hot = MOLALITIES[int(np.argmax([kappa(m, 60, "EC-DMC") for m in MOLALITIES]))]
    assert hot > cold


def test_conductivity_magnitudes_are_realistic() -> None:
    # LiPF6 near 1 M (~0.9 mol/kg) at 25 °C: EC-DMC ~10.7, EC-EMC ~9.5, PC ~5.8 mS/cm.
    assert 9.5 <= kappa(0.9, 25, "EC-DMC") <= 12.0
    assert 8.5 <= kappa(0.9, 25, "EC-EMC") <= 10.5
    assert 5.0 <= kappa(0.9, 25, "PC") <= 7.0
    assert kappa(1.0, 25, "EC-DMC") > kappa(1.0, 25, "EC-EMC") > kappa(1.0, 25, "PC")


def test_electrolyte_optimum_is_interior_in_molality() -> None:
    grid = itertools.product(MOLALITIES, range(10, 61, 5), SOLVENTS)
    best = max(grid, key=lambda p: kappa(*p))
    assert 0.9 < best[0] < 2.0
    assert 15.0 < kappa(*best) < 22.0


# -- reaction yield ---------------------------------------------------------------------------


def test_reaction_schema() -> None:
    emulator = get_emulator("reaction-yield")
    params = emulator.parameters
    assert list(params) == ["temperature_c", "time_min", "equivalents", "catalyst"]
    assert params["catalyst"]["values"] == CATALYSTS
    assert all("unit" in spec for spec in params.values())
    assert emulator.measurements == {"yield": {"unit": "%"}}


def best_conditions(catalyst: str) -> tuple[float, float, float]:
    grid = itertools.product(
        np.linspace(40, 120, 17), np.linspace(5, 240, 48), np.linspace(1, 4, 31)
    )
    return max(grid, key=lambda p: yield_of(*p, catalyst))  # type: ignore[no-any-return]


@pytest.mark.parametrize("catalyst", ["XPhos Pd G3", "Pd(OAc)2/SPhos"])
def test_reaction_optimum_is_interior(catalyst: str) -> None:
    temperature, time_min, equivalents = best_conditions(catalyst)
    assert 40 < temperature < 120
    assert 5 < time_min < 240
    assert 1 < equivalents < 4
    assert 80 < yield_of(temperature, time_min, equivalents, catalyst) < 100


def test_catalysts_have_different_optima_and_activation_energies() -> None:
    optima = {c: best_conditions(c) for c in CATALYSTS}
    assert len({round(o[0]) for o in optima.values()}) >= 3
    # Early-time yield ratio between 60 and 40 °C reflects each catalyst's activation energy.
    ratios = {c: yield_of(60, 5, 2, c) / yield_of(40, 5, 2, c) for c in CATALYSTS}
    assert ratios["Pd(PPh3)4"] > ratios["XPhos Pd G3"] * 1.5


@pytest.mark.parametrize("catalyst", CATALYSTS)
def test_high_temperature_side_reaction_costs_yield(catalyst: str) -> None:
    assert yield_of(120, 240, 2, catalyst) < 0.5 * yield_of(70, 120, 2, catalyst)


def test_yield_stays_a_percentage() -> None:
    emulator = get_emulator("reaction-yield")
    rng = np.random.default_rng(0)
    for point in itertools.product([40, 120], [5, 240], [1, 4], CATALYSTS):
        params = dict(zip(emulator.parameters, point, strict=True))
        value = emulator.evaluate(params, rng, noise=5.0)["yield"]
        assert 0.0 <= value <= 100.0


# -- all emulators ----------------------------------------------------------------------------


DOCUMENTED_NOISE_SD = {
    "electrolyte": lambda value: 0.015 * value + 0.03,  # mS/cm
    "reaction-yield": lambda value: 1.0 + 0.02 * value,  # percentage points
}
MIDDLE_POINTS = {
    "electrolyte": {"salt_molality": 1.0, "temperature_c": 35, "solvent": "EC-EMC"},
    "reaction-yield": {
        "temperature_c": 70.0,
        "time_min": 60.0,
        "equivalents": 2.0,
        "catalyst": "Pd(dppf)Cl2",
    },
}


@pytest.mark.parametrize("name", sorted(EMULATORS))
def test_noise_has_the_documented_size(name: str) -> None:
    emulator = EMULATORS[name]
    assert isinstance(emulator, Emulator)
    params = MIDDLE_POINTS[name]
    [(key, mean)] = emulator.mean(params).items()
    rng = np.random.default_rng(1)
    draws = np.array([emulator.evaluate(params, rng)[key] for _ in range(2000)])
    expected_sd = DOCUMENTED_NOISE_SD[name](mean)
    assert abs(draws.mean() - mean) < 0.1 * expected_sd
    assert 0.9 * expected_sd < draws.std() < 1.1 * expected_sd
    scaled = np.array([emulator.evaluate(params, rng, noise=2.0)[key] for _ in range(2000)])
    assert 1.8 * expected_sd < scaled.std() < 2.2 * expected_sd
    assert emulator.evaluate(params, rng, noise=0.0) == {key: mean}


@pytest.mark.parametrize("name", sorted(EMULATORS))
def test_out_of_range_points_are_refused(name: str) -> None:
    emulator = EMULATORS[name]
    with pytest.raises(InvalidInput):
        emulator.mean({})


def test_unknown_emulator_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="electrolyte, reaction-yield") as info:
        get_emulator("flux-capacitor")
    assert info.value.field == "runner.station"
    assert "genesis station list" in str(info.value)


# -- registry ---------------------------------------------------------------------------------


def test_builtin_stations_one_per_emulator() -> None:
    infos = builtin_stations()
    assert [i.name for i in infos] == sorted(EMULATORS)
    assert all(i.driver == "simulated" and i.slots == 2 for i in infos)


def test_open_station_gives_a_station() -> None:
    station = open_station("electrolyte", latency_s=0, slots=3)
    assert isinstance(station, Station)
    assert isinstance(station, SimulatedStation)
    with station:
        assert station.describe().slots == 3
        assert station.describe().name == "electrolyte"


def test_open_station_refuses_unknown_names_and_options() -> None:
    with pytest.raises(InvalidInput) as unknown:
        open_station("nope")
    assert unknown.value.field == "runner.station"
    with pytest.raises(InvalidInput) as option:
        open_station("electrolyte", warp_speed=9)
    assert option.value.field == "runner.options.warp_speed"
    with pytest.raises(InvalidInput) as value:
        open_station("electrolyte", slots=0)
    assert value.value.field == "runner.options.slots"
    with pytest.raises(InvalidInput) as rate:
        open_station("electrolyte", failure_rate=1.5)
    assert rate.value.field == "runner.options.failure_rate"


# -- simulation helpers -----------------------------------------------------------------------


def test_simulation_helpers_are_the_noise_free_emulators() -> None:
    assert electrolyte_simulation(1.0, 25, "EC-DMC") == {"conductivity": kappa(1.0, 25, "EC-DMC")}
    assert reaction_yield_simulation(80, 60, 2, "XPhos Pd G3") == {
        "yield": yield_of(80, 60, 2, "XPhos Pd G3")
    }
    with pytest.raises(InvalidInput):
        electrolyte_simulation(5.0, 25, "EC-DMC")
