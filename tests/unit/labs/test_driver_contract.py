"""The contract every station driver keeps: simulated, SiLA 2 and Bluesky.

Each driver has a ``backend_<driver>.py`` module with a ``station(emulator, latency_s=...,
slots=...)`` context manager giving a noise-free station of that driver around a built-in
emulator (the SiLA 2 one starts a real SiLA 2 server on loopback; the Bluesky one a real
RunEngine over ophyd simulated devices), so every driver must measure exactly the
emulator's model value. The safety cases run the driver behind Genesis's scheduler, as
campaigns use it, and check that a refused operation never reaches the driver.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

import pytest

from genesis_platform.errors import InvalidInput, SafetyViolation, StationError
from genesis_platform.labs.emulators import get_emulator
from genesis_platform.labs.protocols import (
    Measurement,
    Operation,
    Station,
    StationInfo,
    StationState,
    StationStatus,
)
from genesis_platform.labs.safety import SafetyPolicy
from genesis_platform.labs.scheduler import StationScheduler
from genesis_platform.planning.protocols import ParamValue

DRIVERS = ["simulated", "sila", "bluesky"]
EMULATOR = "electrolyte"

OpenStation = Callable[..., AbstractContextManager[Station]]


@pytest.fixture(params=DRIVERS)
def open_station(request: pytest.FixtureRequest) -> OpenStation:
    backend = importlib.import_module(f"tests.unit.labs.backend_{request.param}")
    return backend.station  # type: ignore[no-any-return]


@pytest.fixture
def station(open_station: OpenStation) -> Iterator[Station]:
    with open_station(EMULATOR, latency_s=0.0) as opened:
        yield opened


def valid_point(info: StationInfo, shift: int = 0) -> dict[str, ParamValue]:
    """A point inside every range (moved by ``shift`` steps) and a choice."""
    point: dict[str, ParamValue] = {}
    for name, schema in info.parameters.items():
        if schema["type"] == "real":
            point[name] = schema["low"] + (schema["high"] - schema["low"]) * (0.3 + 0.1 * shift)
        elif schema["type"] == "int":
            point[name] = int(schema["low"] + (schema["high"] - schema["low"]) * 0.5)
        else:
            point[name] = schema["values"][shift % len(schema["values"])]
    return point


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


class CountingStation:
    """A station that passes everything to ``inner`` and counts the operations it was sent.

    It observes, it does not fake: the operations run on the real driver.
    """

    def __init__(self, inner: Station) -> None:
        self.inner = inner
        self.sent: list[Operation] = []

    def describe(self) -> StationInfo:
        return self.inner.describe()

    def status(self) -> StationStatus:
        return self.inner.status()

    def run(self, op: Operation) -> Future[Measurement]:
        self.sent.append(op)
        return self.inner.run(op)

    def abort(self) -> None:
        self.inner.abort()

    def close(self) -> None:
        """The backend closes the inner station."""


class NullLog:
    """An operation log that keeps nothing (the catalog log is tested with the service)."""

    def queued(self, station: str, op: Operation, project: str, priority: int) -> int:
        return 0

    def refused(
        self, station: str, op: Operation, project: str, priority: int, reason: str
    ) -> None:
        return None

    def started(self, record_id: int) -> None:
        return None

    def finished(self, record_id: int, state: str, **_: Any) -> None:
        return None


def test_is_a_station_describing_itself(station: Station) -> None:
    assert isinstance(station, Station)
    info = station.describe()
    emulator = get_emulator(EMULATOR)
    assert set(info.parameters) == set(emulator.parameters)
    assert set(info.measurements) == set(emulator.measurements)
    assert info.driver and info.protocol and info.slots >= 1
    for name, schema in info.parameters.items():
        assert schema["type"] == emulator.parameters[name]["type"]
        if schema["type"] != "choice":
            assert schema["low"] == pytest.approx(emulator.parameters[name]["low"])
            assert schema["high"] == pytest.approx(emulator.parameters[name]["high"])


def test_run_measures_the_emulators_value(station: Station) -> None:
    point = valid_point(station.describe())
    measurement = station.run(Operation("op-1", point)).result(timeout=20)
    assert measurement.operation_id == "op-1"
    expected = get_emulator(EMULATOR).mean(point)
    assert set(measurement.values) == set(expected)
    for name, value in expected.items():
        assert math.isfinite(measurement.values[name])
        assert measurement.values[name] == pytest.approx(value, rel=1e-9)
    assert measurement.external_id
    assert measurement.duration_s >= 0


def test_status_is_idle_with_a_recent_heartbeat(station: Station) -> None:
    status = station.status()
    assert status.state is StationState.IDLE
    assert (status.busy_slots, status.queue_length) == (0, 0)
    assert abs(time.time() - status.heartbeat) < 30


def test_bad_parameters_are_refused_without_running(station: Station) -> None:
    info = station.describe()
    point = valid_point(info)
    name = next(n for n, s in info.parameters.items() if s["type"] != "choice")
    point[name] = info.parameters[name]["high"] * 10 + 1
    future = station.run(Operation("bad", point))
    error = future.exception(timeout=10)
    assert isinstance(error, InvalidInput)
    assert name in str(error)
    status = station.status()
    assert (status.busy_slots, status.queue_length) == (0, 0)


def test_abort_fails_running_and_queued_operations(open_station: OpenStation) -> None:
    with open_station(EMULATOR, latency_s=5.0, slots=1) as station:
        info = station.describe()
        futures = [station.run(Operation(f"op-{i}", valid_point(info, i))) for i in range(2)]
        wait_for(lambda: station.status().state is StationState.BUSY)
        start = time.monotonic()
        station.abort()
        for future in futures:
            with pytest.raises(StationError):
                future.result(timeout=3)
        assert time.monotonic() - start < 3.0
        wait_for(lambda: station.status().state is StationState.IDLE)


def test_the_same_operation_id_in_flight_runs_once(open_station: OpenStation) -> None:
    with open_station(EMULATOR, latency_s=0.5, slots=1) as station:
        point = valid_point(station.describe())
        first = station.run(Operation("op-1", point))
        again = station.run(Operation("op-1", point))
        ran, rerun = first.result(timeout=20), again.result(timeout=20)
        assert again is first or ran.external_id == rerun.external_id  # one run, not two
        assert station.status().queue_length == 0


def test_queued_operations_all_complete(open_station: OpenStation) -> None:
    with open_station(EMULATOR, latency_s=0.0, slots=1) as station:
        info = station.describe()
        futures = [station.run(Operation(f"op-{i}", valid_point(info, i))) for i in range(4)]
        results = [future.result(timeout=20) for future in futures]
        assert [r.operation_id for r in results] == [f"op-{i}" for i in range(4)]


def test_a_closed_station_refuses_operations(open_station: OpenStation) -> None:
    with open_station(EMULATOR, latency_s=0.0) as station:
        point = valid_point(station.describe())
        station.close()
        with pytest.raises(StationError):
            station.run(Operation("late", point)).result(timeout=10)


def test_an_operation_outside_the_limits_never_reaches_the_driver(station: Station) -> None:
    info = station.describe()
    name = next(n for n, s in info.parameters.items() if s["type"] == "real")
    low, high = info.parameters[name]["low"], info.parameters[name]["high"]
    safe_high = low + (high - low) * 0.5
    policy = SafetyPolicy.from_config({"limits": {name: f":{safe_high}"}}, info.parameters)
    counting = CountingStation(station)
    scheduler = StationScheduler("contract", counting, safety=policy, log=NullLog())
    unsafe = {**valid_point(info), name: low + (high - low) * 0.9}  # valid for the driver
    refused = scheduler.submit(Operation("unsafe", unsafe), project="p")
    error = refused.exception(timeout=5)
    assert isinstance(error, SafetyViolation)
    assert error.field == f"op.params.{name}"
    assert counting.sent == []
    safe = scheduler.submit(Operation("safe", valid_point(info)), project="p")
    assert safe.result(timeout=20).operation_id == "safe"
    assert [op.id for op in counting.sent] == ["safe"]


def test_an_interlock_refuses_a_forbidden_combination(station: Station) -> None:
    info = station.describe()
    choice = next(n for n, s in info.parameters.items() if s["type"] == "choice")
    number = next(n for n, s in info.parameters.items() if s["type"] == "real")
    banned = info.parameters[choice]["values"][0]
    low = info.parameters[number]["low"]
    rule = f"{number} <= {low} if {choice} == {banned}"
    policy = SafetyPolicy.from_config({"interlocks": [rule]}, info.parameters)
    counting = CountingStation(station)
    scheduler = StationScheduler("contract", counting, safety=policy, log=NullLog())
    point = {**valid_point(info), choice: banned}
    error = scheduler.submit(Operation("forbidden", point)).exception(timeout=5)
    assert isinstance(error, SafetyViolation)
    assert rule in str(error)
    assert counting.sent == []


def test_measurements_have_units(station: Station) -> None:
    measurements: Mapping[str, Mapping[str, Any]] = station.describe().measurements
    assert all(isinstance(schema.get("unit"), str) for schema in measurements.values())
