"""Task functions for tests and examples, importable by reference on any site.

Each is meant to be named in a :class:`~genesis_platform.compute.protocols.TaskSpec` as
``"genesis_platform.testing.functions:<name>"`` and returns a dict of JSON numbers, the
shape a campaign expects from a simulation.
"""

from __future__ import annotations

import json
import math
import os
import time

from genesis_platform.labs.emulators import get_emulator
from genesis_platform.planning.protocols import ParamValue

__all__ = [
    "JOURNAL_ENV",
    "SLEEP_ENV",
    "always_fails",
    "branin",
    "electrolyte_blend_simulation",
    "electrolyte_cost_simulation",
    "electrolyte_simulation",
    "exits_abruptly",
    "journaled",
    "noop",
    "quadratic",
    "reaction_yield_simulation",
    "sleep_then_return",
]

JOURNAL_ENV = "GENESIS_TEST_JOURNAL"
"""Environment variable naming the file :func:`journaled` appends to."""

SLEEP_ENV = "GENESIS_TEST_SLEEP"
"""Environment variable: seconds :func:`journaled` sleeps after writing its line."""

QUADRATIC_CENTER = 0.3
"""Where :func:`quadratic` has its minimum, in every numeric parameter."""


def branin(x: float, y: float) -> dict[str, float]:
    """The Branin-Hoo function, a standard 2-D test of global optimizers.

    Defined on ``x`` in [-5, 10], ``y`` in [0, 15]; its global minimum 0.397887 is reached
    at (-pi, 12.275), (pi, 2.275) and (9.42478, 2.475).

    Returns:
        ``{"value": f(x, y)}``.
    """
    b = 5.1 / (4 * math.pi**2)
    c = 5 / math.pi
    t = 1 / (8 * math.pi)
    value = (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10
    return {"value": value}


def quadratic(**params: ParamValue) -> dict[str, float]:
    """Sum of squared distances of the numeric parameters from :data:`QUADRATIC_CENTER`.

    Non-numeric parameters (choice labels) are ignored. The minimum, 0, is at 0.3 in
    every numeric parameter.

    Returns:
        ``{"value": sum((v - 0.3) ** 2)}``.
    """
    numbers = [float(v) for v in params.values() if not isinstance(v, str | bool)]
    return {"value": sum((v - QUADRATIC_CENTER) ** 2 for v in numbers)}


def noop() -> None:
    """Do nothing: the task that dispatch benchmarks send."""


def always_fails(**params: ParamValue) -> dict[str, float]:
    """Raise :class:`RuntimeError`, to test how failures are reported.

    Raises:
        RuntimeError: Always, naming the parameters it got.
    """
    raise RuntimeError(f"always_fails was called with {dict(params)!r}")


def exits_abruptly(**params: ParamValue) -> dict[str, float]:
    """End the calling process at once with ``os._exit(70)``: a crash, as a segfault would be.

    Tests use it to check that an executor survives a worker that dies mid-task.
    """
    os._exit(70)


def sleep_then_exit_abruptly(seconds: float, **params: ParamValue) -> dict[str, float]:
    """Sleep ``seconds`` (s), then end the process as :func:`exits_abruptly` does.

    Tests use it to check what retried attempts are charged.
    """
    time.sleep(seconds)
    os._exit(70)


def sleep_then_return(seconds: float, **params: ParamValue) -> dict[str, float]:
    """Sleep ``seconds`` (s), then return them and :func:`quadratic` of the parameters.

    Returns:
        ``{"value": quadratic(**params)["value"], "slept_s": seconds}``.
    """
    time.sleep(seconds)
    return {**quadratic(**params), "slept_s": float(seconds)}


def journaled(**params: ParamValue) -> dict[str, float]:
    """Append one JSON line ``{"params": ..., "pid": ...}`` to the journal, then return.

    The journal is the file named by the ``GENESIS_TEST_JOURNAL`` environment variable. A
    test that kills and resumes a campaign reads it back to check that no trial ran twice.
    The line is written with one ``O_APPEND`` write, so concurrent workers do not interleave.
    After writing, the call sleeps ``GENESIS_TEST_SLEEP`` seconds if that is set, so a test
    can kill the campaign while trials are in flight.

    Returns:
        :func:`quadratic` of the parameters.

    Raises:
        RuntimeError: ``GENESIS_TEST_JOURNAL`` is not set.
    """
    path = os.environ.get(JOURNAL_ENV)
    if not path:
        raise RuntimeError(f"set {JOURNAL_ENV} to the file journaled() should append to")
    line = json.dumps({"params": params, "pid": os.getpid()}, sort_keys=True) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)
    time.sleep(float(os.environ.get(SLEEP_ENV) or 0))
    return quadratic(**params)


def electrolyte_simulation(
    salt_molality: float, temperature_c: int, solvent: str
) -> dict[str, float]:
    """The ``electrolyte`` emulator without noise: a simulation of the station's experiment.

    Args:
        salt_molality: LiPF6 molality, mol/kg (0.1-3.0).
        temperature_c: Temperature, °C (10-60).
        solvent: ``EC-DMC``, ``EC-EMC`` or ``PC``.

    Returns:
        ``{"conductivity": ...}`` in mS/cm.

    Raises:
        InvalidInput: A value is outside the emulator's space.
    """
    point: dict[str, ParamValue] = {
        "salt_molality": salt_molality,
        "temperature_c": temperature_c,
        "solvent": solvent,
    }
    return get_emulator("electrolyte").mean(point)


def reaction_yield_simulation(
    temperature_c: float, time_min: float, equivalents: float, catalyst: str
) -> dict[str, float]:
    """The ``reaction-yield`` emulator without noise.

    Args:
        temperature_c: Temperature, °C (40-120).
        time_min: Reaction time, min (5-240).
        equivalents: Base equivalents per aryl bromide (1-4).
        catalyst: One of the emulator's catalyst labels.

    Returns:
        ``{"yield": ...}`` in %.

    Raises:
        InvalidInput: A value is outside the emulator's space.
    """
    point: dict[str, ParamValue] = {
        "temperature_c": temperature_c,
        "time_min": time_min,
        "equivalents": equivalents,
        "catalyst": catalyst,
    }
    return get_emulator("reaction-yield").mean(point)


# Viscosity (mPa s, 40 °C) and relative permittivity of the blend's solvents.
_SOLVENT_VISCOSITY = {"ec": 1.9, "dmc": 0.59, "emc": 0.65}
_SOLVENT_PERMITTIVITY = {"ec": 89.8, "dmc": 3.1, "emc": 3.0}


def electrolyte_blend_simulation(
    ec_fraction: float, dmc_fraction: float, emc_fraction: float, salt_molality: float
) -> dict[str, float]:
    """A solvent-blend electrolyte: conductivity and viscosity of an EC/DMC/EMC mixture.

    A deliberately simple model for the mixture example: the blend's viscosity mixes the
    solvents' logarithmically and grows with salt; ions dissociate with the blend's
    permittivity; conductivity is carriers times mobility (Walden's rule, mobility
    inversely proportional to viscosity).

    Args:
        ec_fraction: Mass fraction of ethylene carbonate (0-1).
        dmc_fraction: Mass fraction of dimethyl carbonate (0-1).
        emc_fraction: Mass fraction of ethyl methyl carbonate (0-1).
        salt_molality: LiPF6 molality, mol/kg (0.1-3.0).

    Returns:
        ``{"conductivity": mS/cm, "viscosity": mPa s}``.
    """
    fractions = {"ec": ec_fraction, "dmc": dmc_fraction, "emc": emc_fraction}
    total = sum(fractions.values()) or 1.0
    shares = {k: v / total for k, v in fractions.items()}
    solvent_viscosity = math.exp(sum(shares[k] * math.log(_SOLVENT_VISCOSITY[k]) for k in shares))
    viscosity = solvent_viscosity * (1.0 + 0.55 * salt_molality + 0.22 * salt_molality**2)
    permittivity = sum(shares[k] * _SOLVENT_PERMITTIVITY[k] for k in shares)
    dissociation = permittivity / (permittivity + 18.0)
    carriers = salt_molality * math.exp(-0.35 * salt_molality)
    conductivity = 38.0 * carriers * dissociation / viscosity
    return {"conductivity": conductivity, "viscosity": viscosity}


_SOLVENT_COST = {"EC-DMC": 4.0, "EC-EMC": 6.5, "PC": 3.0}
"""Solvent cost, $ per kg of electrolyte."""


def electrolyte_cost_simulation(
    salt_molality: float, temperature_c: int, solvent: str
) -> dict[str, float]:
    """The ``electrolyte`` emulator's conductivity and the electrolyte's cost.

    Cost ($/kg) is the solvent's, plus LiPF6 at about 150 $/kg (152 g/mol), plus the
    energy to hold the cell above 25 °C; it trades against conductivity, which rises with
    salt and temperature: the two-objective example.

    Returns:
        ``{"conductivity": mS/cm, "cost": $/kg}``.
    """
    conductivity = electrolyte_simulation(salt_molality, temperature_c, solvent)["conductivity"]
    salt_cost = 150.0 * 0.152 * salt_molality
    heating = 0.04 * max(0, temperature_c - 25)
    return {"conductivity": conductivity, "cost": _SOLVENT_COST[solvent] + salt_cost + heating}
