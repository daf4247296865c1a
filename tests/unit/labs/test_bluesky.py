"""What only the Bluesky station does: plans on a real RunEngine over ophyd simulated devices.

The shared station contract runs over this backend too (``backend_bluesky``); the tests here
cover the documents, the devices factory, device failures and aborting a long acquisition.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, wait
from typing import Any

import pytest

if os.environ.get("CI") != "true":  # under CI a missing package fails instead of skipping
    pytest.importorskip("bluesky")
    pytest.importorskip("ophyd")

from ophyd import Signal
from ophyd.sim import SynAxis, SynSignal
from ophyd.status import DeviceStatus

from genesis_platform.errors import InvalidInput, OperationFailed, StationError
from genesis_platform.labs.bluesky import (
    BlueskyStation,
    open_bluesky_station,
    simulated_devices,
)
from genesis_platform.labs.emulators import EMULATORS, get_emulator
from genesis_platform.labs.protocols import (
    Measurement,
    Operation,
    Station,
    StationState,
)
from genesis_platform.planning.protocols import ParamValue

ELECTROLYTE: dict[str, ParamValue] = {
    "salt_molality": 1.3,
    "temperature_c": 45,
    "solvent": "EC-EMC",
}
HERE = "tests.unit.labs.test_bluesky"


class Documents:
    """A document callback that keeps what the RunEngine emitted, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.docs: list[tuple[str, Mapping[str, Any]]] = []

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        with self.lock:
            self.docs.append((name, doc))

    def of(self, kind: str) -> list[Mapping[str, Any]]:
        with self.lock:
            return [doc for name, doc in self.docs if name == kind]


# -- device factories, loaded by reference in the tests of open_bluesky_station ------------


class StallingAxis(SynAxis):
    """A motor that stalls beyond 9: its move fails with the controller's message."""

    def set(self, value: float) -> Any:
        if value > 9:
            status = DeviceStatus(self)
            status.set_exception(RuntimeError(f"motor stalled at {value}"))
            return status
        return super().set(value)


def flow_cell_devices() -> dict[str, Any]:
    """A flow cell: a pump rate that stalls above 9, a mode, a detector saturating above 8."""
    rate = StallingAxis(name="rate", egu="mL/min")
    mode = Signal(name="mode", value="slow")

    def intensity() -> float:
        if rate.setpoint.get() > 8:
            raise RuntimeError("detector saturated")
        return 2.0 * rate.setpoint.get() + (1.0 if mode.get() == "fast" else 0.0)

    return {
        "movables": {"rate": rate, "mode": mode},
        "detectors": {"intensity": (SynSignal(intensity, name="det"), "det")},
        "parameters": {
            "rate": {"type": "real", "low": 0.0, "high": 10.0, "unit": "mL/min"},
            "mode": {"type": "choice", "values": ["slow", "fast"], "unit": ""},
        },
        "measurements": {"intensity": {"unit": "counts"}},
        "description": "A flow cell with a photodiode.",
    }


def not_kwargs() -> list[int]:
    return [1, 2]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def opened() -> Iterator[list[BlueskyStation]]:
    """Stations a test opens; aborted and closed afterwards."""
    stations: list[BlueskyStation] = []
    yield stations
    for station in stations:
        station.abort()
        station.close()


@pytest.fixture
def make(opened: list[BlueskyStation]) -> Callable[..., tuple[BlueskyStation, Documents]]:
    """Open a simulated electrolyte station (noise 0 unless given) that records documents."""

    def make_station(**options: Any) -> tuple[BlueskyStation, Documents]:
        station, documents, _ = open_recording(opened, **options)
        return station, documents

    return make_station


def open_recording(
    opened: list[BlueskyStation], **options: Any
) -> tuple[BlueskyStation, Documents, dict[str, Any]]:
    """A simulated electrolyte station recording its documents, and its devices."""
    devices = simulated_devices("electrolyte", **{"noise": 0.0, **options})
    documents = Documents()
    devices["subscriptions"] = (*devices["subscriptions"], documents)
    station = BlueskyStation("flow-cell", **devices)
    opened.append(station)
    return station, documents, devices


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def middle(emulator: str) -> dict[str, ParamValue]:
    point: dict[str, ParamValue] = {}
    for name, spec in get_emulator(emulator).parameters.items():
        if spec["type"] == "choice":
            point[name] = spec["values"][-1]
        elif spec["type"] == "int":
            point[name] = (spec["low"] + spec["high"]) // 2
        else:
            point[name] = spec["low"] + (spec["high"] - spec["low"]) / 3
    return point


# -- tests ----------------------------------------------------------------------------------


def test_describe(opened: list[BlueskyStation]) -> None:
    station = BlueskyStation.simulated("electrolyte", name="cell-7")
    opened.append(station)
    info = station.describe()
    emulator = get_emulator("electrolyte")
    assert isinstance(station, Station)
    assert (info.name, info.driver, info.protocol, info.slots) == (
        "cell-7",
        "bluesky",
        "Bluesky",
        1,
    )
    assert info.parameters == emulator.parameters
    assert info.measurements == emulator.measurements
    assert info.capabilities == ("measure",)
    assert emulator.description in info.description


@pytest.mark.parametrize("emulator", sorted(EMULATORS))
def test_noise_free_run_returns_the_emulators_mean(
    emulator: str, opened: list[BlueskyStation]
) -> None:
    station = BlueskyStation.simulated(emulator, noise=0.0)
    opened.append(station)
    point = middle(emulator)
    measurement = station.run(Operation("op-1", point)).result(timeout=5)
    assert isinstance(measurement, Measurement)
    assert measurement.operation_id == "op-1"
    assert measurement.values == get_emulator(emulator).mean(point)
    assert measurement.external_id == measurement.metadata["uid"]
    uuid.UUID(measurement.external_id)
    assert measurement.metadata["exit_status"] == "success"
    positions = measurement.metadata["positions"]
    assert positions.keys() == point.keys()
    for name, value in point.items():  # readbacks: a SynAxis interpolates to its target
        assert positions[name] == (value if isinstance(value, str) else pytest.approx(value))


def test_documents_carry_the_operation(make: Callable[..., Any]) -> None:
    station, documents = make()
    measurement = station.run(Operation("trial-42", ELECTROLYTE)).result(timeout=5)
    [start] = documents.of("start")
    [event] = documents.of("event")
    [stop] = documents.of("stop")
    assert start["operation_id"] == "trial-42"
    assert start["params"] == ELECTROLYTE
    assert start["station"] == "flow-cell"
    assert measurement.external_id == start["uid"] == stop["run_start"]
    assert stop["exit_status"] == "success"
    assert event["data"]["conductivity"] == measurement.values["conductivity"]
    assert event["data"]["solvent"] == "EC-EMC"
    assert event["data"]["salt_molality_setpoint"] == 1.3
    assert measurement.duration_s == pytest.approx(stop["time"] - start["time"])


def test_latency_is_the_detectors_acquisition(make: Callable[..., Any]) -> None:
    station, _ = make(latency_s=0.3)
    started = time.monotonic()
    measurement = station.run(Operation("slow", ELECTROLYTE)).result(timeout=5)
    assert 0.3 <= measurement.duration_s <= time.monotonic() - started


def test_noise_is_reproducible_per_operation_id(make: Callable[..., Any]) -> None:
    station, _ = make(noise=1.0, seed=3)
    twin, _ = make(noise=1.0, seed=3)
    other_seed, _ = make(noise=1.0, seed=4)
    mean = get_emulator("electrolyte").mean(ELECTROLYTE)["conductivity"]

    def value(on: BlueskyStation, op_id: str) -> float:
        return on.run(Operation(op_id, ELECTROLYTE)).result(timeout=5).values["conductivity"]

    first = value(station, "a")
    assert value(station, "a") == first == value(twin, "a")
    assert len({first, value(station, "b"), value(other_seed, "a"), mean}) == 4
    assert math.isclose(first, mean, rel_tol=0.2)


def test_same_id_in_flight_returns_the_same_future(make: Callable[..., Any]) -> None:
    station, documents = make(latency_s=0.3)
    first = station.run(Operation("dup", ELECTROLYTE))
    assert station.run(Operation("dup", dict(ELECTROLYTE))) is first
    clash = station.run(Operation("dup", {**ELECTROLYTE, "temperature_c": 20}))
    assert isinstance(clash.exception(timeout=0), InvalidInput)
    first.result(timeout=5)
    again = station.run(Operation("dup", ELECTROLYTE))
    assert again is not first
    again.result(timeout=5)
    assert [doc["operation_id"] for doc in documents.of("start")] == ["dup", "dup"]


def test_operations_run_one_at_a_time_in_order(make: Callable[..., Any]) -> None:
    station, documents = make(latency_s=0.1)
    ids = [f"op-{i}" for i in range(4)]
    futures = [
        station.run(Operation(op_id, {**ELECTROLYTE, "temperature_c": 20 + i}))
        for i, op_id in enumerate(ids)
    ]
    status = station.status()
    assert status.state is StationState.BUSY
    assert status.busy_slots + status.queue_length == 4
    assert status.busy_slots <= 1
    done, _ = wait(futures, timeout=5)
    assert len(done) == 4
    starts, stops = documents.of("start"), documents.of("stop")
    assert [doc["operation_id"] for doc in starts] == ids
    for start, previous_stop in zip(starts[1:], stops, strict=False):
        assert start["time"] >= previous_stop["time"]
    assert station.status().state is StationState.IDLE


def test_abort_stops_a_long_acquisition_and_the_queue(opened: list[BlueskyStation]) -> None:
    station, documents, devices = open_recording(opened, latency_s=5.0)
    futures = [
        station.run(Operation(f"long-{i}", {**ELECTROLYTE, "temperature_c": 30 + i}))
        for i in range(3)
    ]
    wait_for(lambda: len(documents.of("start")) == 1)  # the first one is acquiring
    assert station.status().busy_slots == 1
    started = time.monotonic()
    station.abort()
    done, _ = wait(futures, timeout=3.0)
    assert time.monotonic() - started < 3.0  # not the 5 s acquisition
    assert len(done) == 3
    for future in futures:
        assert isinstance(future.exception(), StationError)
    wait_for(lambda: len(documents.of("stop")) == 1)
    assert documents.of("stop")[0]["exit_status"] == "abort"
    assert documents.of("event") == []

    # The instrument answers again: the next operation runs (with a quick detector).
    detector, _ = devices["detectors"]["conductivity"]
    detector.exposure_time = 0.0
    after = station.run(Operation("after", ELECTROLYTE)).result(timeout=5)
    assert after.values == get_emulator("electrolyte").mean(ELECTROLYTE)
    assert [doc["operation_id"] for doc in documents.of("start")] == ["long-0", "after"]
    assert station.status().state is StationState.IDLE


def test_cancel_aborts_the_running_plan_and_the_queue_runs_on(
    opened: list[BlueskyStation],
) -> None:
    station, documents, _ = open_recording(opened, latency_s=1.0)
    long = station.run(Operation("long", ELECTROLYTE))
    queued = station.run(Operation("queued", {**ELECTROLYTE, "temperature_c": 30}))
    wait_for(lambda: len(documents.of("start")) == 1)  # "long" is running
    started = time.monotonic()
    assert station.cancel("long") is True
    assert long.done(), "the future fails at once"
    error = long.exception(timeout=0)
    assert isinstance(error, StationError) and "aborted" in str(error)
    assert station.cancel("long") is False  # already stopped
    wait_for(lambda: len(documents.of("stop")) >= 1)
    assert documents.of("stop")[0]["exit_status"] == "abort"  # stopped, not run to its end
    assert time.monotonic() - started < 3.0
    measurement = queued.result(timeout=5)
    assert measurement.values == get_emulator("electrolyte").mean(
        {**ELECTROLYTE, "temperature_c": 30}
    )
    assert [doc["operation_id"] for doc in documents.of("start")] == ["long", "queued"]
    assert [doc["exit_status"] for doc in documents.of("stop")] == ["abort", "success"]
    assert len(documents.of("event")) == 1  # the aborted run read nothing
    assert station.status().state is StationState.IDLE


def test_cancel_drops_a_queued_operation(make: Callable[..., Any]) -> None:
    station, documents = make(latency_s=0.3)
    first = station.run(Operation("first", ELECTROLYTE))
    second = station.run(Operation("second", ELECTROLYTE))
    third = station.run(Operation("third", ELECTROLYTE))
    wait_for(lambda: station.status().busy_slots == 1)
    assert station.cancel("second") is True
    error = second.exception(timeout=0)
    assert isinstance(error, StationError) and "aborted" in str(error)
    assert station.status().queue_length == 1
    assert station.cancel("no-such-operation") is False
    for future in (first, third):
        assert future.result(timeout=5).metadata["exit_status"] == "success"
    assert station.cancel("first") is False  # finished
    assert [doc["operation_id"] for doc in documents.of("start")] == ["first", "third"]


def test_caller_can_cancel_a_queued_operation(make: Callable[..., Any]) -> None:
    station, documents = make(latency_s=0.2)
    running = station.run(Operation("first", ELECTROLYTE))
    queued = station.run(Operation("second", ELECTROLYTE))
    wait_for(lambda: station.status().busy_slots == 1)
    assert queued.cancel()
    assert station.status().queue_length == 0
    running.result(timeout=5)
    resubmitted = station.run(Operation("second", ELECTROLYTE))
    assert resubmitted is not queued
    assert resubmitted.result(timeout=5).operation_id == "second"
    assert [doc["operation_id"] for doc in documents.of("start")] == ["first", "second"]


def test_abort_when_idle_changes_nothing(make: Callable[..., Any]) -> None:
    station, _ = make()
    station.abort()
    assert station.run(Operation("x", ELECTROLYTE)).result(timeout=5).values


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({**ELECTROLYTE, "salt_molality": 3.5}, "op.params.salt_molality"),
        ({**ELECTROLYTE, "temperature_c": 20.5}, "op.params.temperature_c"),
        ({**ELECTROLYTE, "solvent": "water"}, "op.params.solvent"),
        ({"salt_molality": 1.0, "temperature_c": 20}, "op.params.solvent"),
        ({**ELECTROLYTE, "stirring": 1}, "op.params.stirring"),
    ],
)
def test_bad_params_are_refused_before_anything_runs(
    make: Callable[..., Any], params: dict[str, ParamValue], field: str
) -> None:
    station, documents = make()
    future = station.run(Operation("bad", params))
    error = future.exception(timeout=0)
    assert isinstance(error, InvalidInput) and error.field == field
    assert station.status().queue_length == 0
    time.sleep(0.05)
    assert documents.docs == []


@pytest.mark.parametrize(
    ("rate", "message"), [(9.5, "motor stalled at 9.5"), (8.5, "detector saturated")]
)
def test_device_failure_is_operation_failed_with_the_devices_message(
    opened: list[BlueskyStation], rate: float, message: str
) -> None:
    station = open_bluesky_station("flow", devices=f"{HERE}:flow_cell_devices")
    opened.append(station)
    failed = station.run(Operation("fail", {"rate": rate, "mode": "fast"}))
    error = failed.exception(timeout=5)
    assert isinstance(error, OperationFailed)
    assert message in str(error) and "'fail'" in str(error)
    ok = station.run(Operation("ok", {"rate": 3.0, "mode": "fast"})).result(timeout=5)
    assert ok.values == {"intensity": 7.0}
    assert station.status().state is StationState.IDLE


def test_open_with_a_devices_factory(opened: list[BlueskyStation]) -> None:
    station = open_bluesky_station("flow", devices=f"{HERE}:flow_cell_devices")
    opened.append(station)
    info = station.describe()
    assert (info.name, info.driver, info.description) == (
        "flow",
        "bluesky",
        "A flow cell with a photodiode.",
    )
    measurement = station.run(Operation("m", {"rate": 2.5, "mode": "slow"})).result(timeout=5)
    assert measurement.values == {"intensity": 5.0}
    assert measurement.metadata["positions"] == {"rate": 2.5, "mode": "slow"}


def test_open_with_an_emulator(opened: list[BlueskyStation]) -> None:
    station = open_bluesky_station("cell", emulator="electrolyte", noise=0, latency_s=0, seed=1)
    opened.append(station)
    assert station.describe().name == "cell"
    measurement = station.run(Operation("e", ELECTROLYTE)).result(timeout=5)
    assert measurement.values == get_emulator("electrolyte").mean(ELECTROLYTE)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"devices": "no_colon"}, "options.devices"),
        ({"devices": "tests.unit.labs.no_such_module:f"}, "options.devices"),
        ({"devices": f"{HERE}:no_such_factory"}, "options.devices"),
        ({"devices": f"{HERE}:not_kwargs"}, "options.devices"),
        ({"devices": f"{HERE}:flow_cell_devices", "noise": 0}, "options.noise"),
        ({"devices": f"{HERE}:flow_cell_devices", "emulator": "x"}, "options.emulator"),
        ({"emulator": "no-such-emulator"}, "options.emulator"),
        ({"emulator": "electrolyte", "slots": 2}, "options.slots"),
        ({"emulator": "electrolyte", "latency_s": -1}, "options.latency_s"),
        ({"emulator": "electrolyte", "seed": 1.5}, "options.seed"),
        ({"noise": 0}, "options"),
    ],
)
def test_open_refuses_bad_options(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        open_bluesky_station("s", **options)
    assert caught.value.field == field


def test_constructor_checks_devices_against_schemas() -> None:
    devices = flow_cell_devices()
    with pytest.raises(InvalidInput) as caught:
        BlueskyStation("s", **{**devices, "movables": {"rate": devices["movables"]["rate"]}})
    assert caught.value.field == "movables.mode"
    with pytest.raises(InvalidInput) as caught:
        BlueskyStation("s", **{**devices, "detectors": {"intensity": ("not a device", "det")}})
    assert caught.value.field == "detectors.intensity"
    with pytest.raises(InvalidInput) as caught:
        BlueskyStation("s", **{**devices, "measurements": {"intensity": {}}})
    assert caught.value.field == "measurements.intensity.unit"
    bad_range = {**devices["parameters"], "rate": {"type": "real", "low": 5, "high": 1}}
    with pytest.raises(InvalidInput) as caught:
        BlueskyStation("s", **{**devices, "parameters": bad_range})
    assert caught.value.field.startswith("parameters.rate")


def test_status_heartbeat_is_the_runengines_last_answer(make: Callable[..., Any]) -> None:
    station, _ = make()
    first = station.status()
    assert first.state is StationState.IDLE and first.reason == ""
    assert time.time() - 3.0 < first.heartbeat <= time.time()
    time.sleep(0.02)
    wait_for(lambda: station.status().heartbeat > first.heartbeat)


def test_close_finishes_the_queue_then_refuses(opened: list[BlueskyStation]) -> None:
    station = BlueskyStation.simulated("electrolyte", name="closing", noise=0.0, latency_s=0.05)
    queued: Future[Measurement] = station.run(Operation("last", ELECTROLYTE))
    station.close()
    assert queued.result(timeout=0).values
    status = station.status()
    assert status.state is StationState.OFFLINE and status.reason
    refused = station.run(Operation("late", ELECTROLYTE))
    assert isinstance(refused.exception(timeout=0), StationError)
    station.close()  # twice is fine
    assert not [t for t in threading.enumerate() if t.name == "bluesky-station-closing"]
