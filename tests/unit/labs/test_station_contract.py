"""The station contract, run over every station backend.

A new backend (SiLA 2, Bluesky/ophyd) adds a parameter to the ``station_kind`` fixture and
an ``open_*`` branch in ``make_station``; the tests stay as they are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, wait
from typing import Any

import pytest

from genesis_platform.errors import InvalidInput, OperationFailed, StationError
from genesis_platform.labs.protocols import (
    Measurement,
    Operation,
    Station,
    StationInfo,
    StationState,
)
from genesis_platform.labs.registry import builtin_stations, open_station
from genesis_platform.planning.protocols import ParamValue

SIMULATED = [f"simulated:{info.name}" for info in builtin_stations()]

MakeStation = Callable[..., Station]


@pytest.fixture(params=SIMULATED)
def station_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_station(station_kind: str) -> Iterator[MakeStation]:
    """Open stations of this kind with test options; close them all afterwards."""
    opened: list[Station] = []
    driver, name = station_kind.split(":", 1)
    assert driver == "simulated"

    def make(**options: Any) -> Station:
        options = {"latency_s": 0.0, "latency_jitter": 0.0, **options}
        station = open_station(name, **options)
        opened.append(station)
        return station

    yield make
    for station in opened:
        station.abort()
        getattr(station, "close", lambda: None)()


@pytest.fixture
def station(make_station: MakeStation) -> Station:
    return make_station()


def valid_point(info: StationInfo) -> dict[str, ParamValue]:
    """The middle of every range and the first of every choice."""
    point: dict[str, ParamValue] = {}
    for name, schema in info.parameters.items():
        if schema["type"] == "real":
            point[name] = (schema["low"] + schema["high"]) / 2
        elif schema["type"] == "int":
            point[name] = (schema["low"] + schema["high"]) // 2
        else:
            point[name] = schema["values"][0]
    return point


def out_of_range(info: StationInfo) -> tuple[str, dict[str, ParamValue]]:
    point = valid_point(info)
    name, schema = next((n, s) for n, s in info.parameters.items() if s["type"] != "choice")
    point[name] = schema["high"] + 1
    return name, point


def op(station: Station, op_id: str, **changes: ParamValue) -> Operation:
    return Operation(op_id, {**valid_point(station.describe()), **changes})


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_is_a_station(station: Station) -> None:
    assert isinstance(station, Station)


def test_describe_gives_schemas_with_units(station: Station) -> None:
    info = station.describe()
    assert info.name and info.description and info.slots >= 1
    assert info.parameters and info.measurements
    for name, schema in info.parameters.items():
        assert name.isidentifier()
        assert schema["type"] in {"real", "int", "choice"}
        assert "unit" in schema
        if schema["type"] == "choice":
            assert schema["values"]
        else:
            assert schema["low"] < schema["high"]
    for schema in info.measurements.values():
        assert isinstance(schema["unit"], str) and schema["unit"]


def test_run_returns_every_measurement(station: Station) -> None:
    info = station.describe()
    measurement = station.run(op(station, "op-1")).result(timeout=5)
    assert isinstance(measurement, Measurement)
    assert measurement.operation_id == "op-1"
    assert set(measurement.values) == set(info.measurements)
    assert all(math.isfinite(v) for v in measurement.values.values())
    assert measurement.external_id
    assert measurement.duration_s >= 0


@pytest.mark.parametrize("problem", ["missing", "out of range", "extra", "bad choice"])
def test_invalid_params_are_refused_without_running(station: Station, problem: str) -> None:
    info = station.describe()
    point = valid_point(info)
    if problem == "missing":
        bad = next(iter(point))
        del point[bad]
    elif problem == "out of range":
        bad, point = out_of_range(info)
    elif problem == "extra":
        bad = "not_a_parameter"
        point[bad] = 1.0
    else:
        bad = next(n for n, s in info.parameters.items() if s["type"] == "choice")
        point[bad] = "no-such-choice"
    future = station.run(Operation("bad-op", point))
    assert future.done(), "validation must fail the future at once"
    error = future.exception()
    assert isinstance(error, InvalidInput | StationError)
    assert bad in str(error)
    status = station.status()
    assert (status.busy_slots, status.queue_length) == (0, 0)


def test_failure_rate_one_fails_every_operation(make_station: MakeStation) -> None:
    station = make_station(failure_rate=1.0)
    futures = [station.run(op(station, f"op-{i}")) for i in range(3)]
    for future in futures:
        with pytest.raises(OperationFailed, match="transient fault"):
            future.result(timeout=5)


def test_failure_rate_in_between_fails_some(make_station: MakeStation) -> None:
    station = make_station(failure_rate=0.5, slots=4)
    futures = [station.run(op(station, f"op-{i}")) for i in range(40)]
    wait(futures, timeout=5)
    failed = sum(isinstance(f.exception(), OperationFailed) for f in futures)
    assert 5 < failed < 35


def test_status_counts_busy_slots_and_queue(make_station: MakeStation) -> None:
    station = make_station(slots=2, latency_s=5.0)
    assert station.status().state is StationState.IDLE
    futures = [station.run(op(station, f"op-{i}")) for i in range(5)]
    wait_for(lambda: station.status().busy_slots == 2)
    status = station.status()
    assert status.state is StationState.BUSY
    assert status.queue_length == 3
    station.abort()
    assert all(f.done() for f in futures)


def test_abort_fails_running_and_queued_operations(make_station: MakeStation) -> None:
    station = make_station(slots=1, latency_s=5.0)
    futures = [station.run(op(station, f"op-{i}")) for i in range(3)]
    wait_for(lambda: station.status().busy_slots == 1)
    start = time.monotonic()
    station.abort()
    for future in futures:
        with pytest.raises(StationError, match="aborted"):
            future.result(timeout=1)
    assert time.monotonic() - start < 1.0
    wait_for(lambda: station.status().state is StationState.IDLE)
    after = station.run(op(station, "after"))  # accepted again after an abort
    wait_for(lambda: station.status().busy_slots == 1)
    assert not after.done()


def test_slots_run_in_parallel(make_station: MakeStation) -> None:
    station = make_station(slots=2, latency_s=0.2)
    start = time.monotonic()
    futures = [station.run(op(station, f"op-{i}")) for i in range(2)]
    for future in futures:
        future.result(timeout=5)
    elapsed = time.monotonic() - start
    assert 0.19 <= elapsed < 0.35, elapsed


def test_same_operation_id_in_flight_runs_once(make_station: MakeStation) -> None:
    station = make_station(slots=2, latency_s=0.2)
    first = station.run(op(station, "op-1"))
    again = station.run(op(station, "op-1"))
    assert again is first
    status = station.status()
    assert status.busy_slots + status.queue_length == 1


def test_same_operation_id_with_other_params_is_refused(make_station: MakeStation) -> None:
    station = make_station(slots=1, latency_s=0.2)
    info = station.describe()
    first = station.run(op(station, "op-1"))
    changed = {**valid_point(info)}
    name = next(n for n, s in info.parameters.items() if s["type"] != "choice")
    changed[name] = info.parameters[name]["low"]
    clash = station.run(Operation("op-1", changed))
    assert isinstance(clash.exception(timeout=0), InvalidInput)
    first.result(timeout=5)


def test_rerun_of_an_operation_id_is_reproducible(make_station: MakeStation) -> None:
    station = make_station(seed=7)
    first = station.run(op(station, "op-1")).result(timeout=5)
    again = station.run(op(station, "op-1")).result(timeout=5)
    other_station = make_station(seed=7)
    elsewhere = other_station.run(op(other_station, "op-1")).result(timeout=5)
    assert first.values == again.values == elsewhere.values
    different = station.run(op(station, "op-2")).result(timeout=5)
    assert different.values != first.values  # noise differs between operations


def test_many_operations_with_zero_latency_are_fast(make_station: MakeStation) -> None:
    station = make_station(slots=2)
    point = valid_point(station.describe())
    start = time.perf_counter()
    futures: list[Future[Measurement]] = [
        station.run(Operation(f"op-{i}", point)) for i in range(1000)
    ]
    wait(futures, timeout=10)
    elapsed = time.perf_counter() - start
    assert all(f.exception() is None for f in futures)
    assert elapsed < 1.0, f"{elapsed * 1000:.0f} ms for 1,000 operations"


def test_caller_can_cancel_a_queued_operation(make_station: MakeStation) -> None:
    station = make_station(slots=1, latency_s=0.1)
    running = station.run(op(station, "op-1"))
    wait_for(lambda: station.status().busy_slots == 1)
    queued = station.run(op(station, "op-2"))
    assert queued.cancel()
    assert station.status().queue_length == 0
    running.result(timeout=5)
    resubmitted = station.run(op(station, "op-2"))
    assert resubmitted is not queued
    assert resubmitted.result(timeout=5).operation_id == "op-2"


def test_measurements_have_their_units(station: Station) -> None:
    info: Mapping[str, Mapping[str, Any]] = station.describe().measurements
    assert all("unit" in schema for schema in info.values())
