"""One station shared by many campaigns: priorities, fair share, windows, timeouts."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from genesis_platform.errors import SafetyViolation, StationError
from genesis_platform.labs.protocols import Measurement, Operation, StationState
from genesis_platform.labs.safety import SafetyPolicy
from genesis_platform.labs.scheduler import StationScheduler, Window
from genesis_platform.labs.simulated import SimulatedStation

POINT = {"salt_molality": 1.0, "solvent": "PC", "temperature_c": 25}


class RecordingLog:
    """Keeps the order operations started in and how each ended."""

    def __init__(self) -> None:
        self.ids: dict[int, str] = {}
        self.started_order: list[str] = []
        self.ended: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def queued(self, station: str, op: Operation, project: str, priority: int) -> int:
        with self._lock:
            record_id = len(self.ids) + 1
            self.ids[record_id] = op.id
            return record_id

    def refused(
        self, station: str, op: Operation, project: str, priority: int, reason: str
    ) -> None:
        self.ended[op.id] = ("refused", 0.0)

    def started(self, record_id: int) -> None:
        with self._lock:
            self.started_order.append(self.ids[record_id])

    def finished(
        self,
        record_id: int,
        state: str,
        *,
        seconds: float,
        measurement: Measurement | None = None,
        error: str = "",
    ) -> None:
        self.ended[self.ids[record_id]] = (state, seconds)


class Windows:
    """A window list the test changes while the scheduler reads it."""

    def __init__(self) -> None:
        self.windows: list[Window] = []

    def __call__(self) -> list[Window]:
        return list(self.windows)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def log() -> RecordingLog:
    return RecordingLog()


@pytest.fixture
def windows() -> Windows:
    return Windows()


def make(
    log: RecordingLog,
    windows: Windows,
    *,
    latency_s: float = 0.05,
    slots: int = 1,
    safety: SafetyPolicy | None = None,
    shares: dict[str, float] | None = None,
) -> StationScheduler:
    station = SimulatedStation(
        "electrolyte", slots=slots, latency_s=latency_s, latency_jitter=0.0, noise=0.0
    )
    return StationScheduler(
        "shared",
        station,
        safety=safety or SafetyPolicy(),
        log=log,
        windows=windows,
        shares=shares,
    )


@pytest.fixture
def scheduler(log: RecordingLog, windows: Windows) -> Iterator[StationScheduler]:
    opened = make(log, windows)
    yield opened
    opened.close()


def test_higher_priority_runs_first(scheduler: StationScheduler, log: RecordingLog) -> None:
    futures = [scheduler.submit(Operation(f"low-{i}", POINT), "p", 0) for i in range(3)]
    urgent = scheduler.submit(Operation("urgent", POINT), "p", 5)
    for future in [*futures, urgent]:
        future.result(timeout=10)
    # low-0 was already running; the urgent one goes before the other low ones
    assert log.started_order == ["low-0", "urgent", "low-1", "low-2"]


def test_fair_share_interleaves_projects(scheduler: StationScheduler, log: RecordingLog) -> None:
    first = [scheduler.submit(Operation(f"a-{i}", POINT), "a") for i in range(6)]
    time.sleep(0.02)  # a-0 runs; project b arrives with a long queue of a's waiting
    second = [scheduler.submit(Operation(f"b-{i}", POINT), "b") for i in range(3)]
    for future in [*first, *second]:
        future.result(timeout=10)
    order = log.started_order
    assert order[:7] == ["a-0", "b-0", "a-1", "b-1", "a-2", "b-2", "a-3"]
    usage = scheduler.usage()
    assert usage["a"] == pytest.approx(6 * 0.05, rel=0.5)
    assert usage["b"] == pytest.approx(3 * 0.05, rel=0.5)


def test_shares_weigh_projects(log: RecordingLog, windows: Windows) -> None:
    scheduler = make(log, windows, shares={"big": 3.0})
    try:
        futures = [scheduler.submit(Operation(f"small-{i}", POINT), "small") for i in range(8)]
        futures += [scheduler.submit(Operation(f"big-{i}", POINT), "big") for i in range(8)]
        for future in futures:
            future.result(timeout=10)
    finally:
        scheduler.close()
    first_eight = log.started_order[:8]
    assert sum(op.startswith("big") for op in first_eight) >= 5  # about 3 of every 4


def test_a_reservation_runs_only_its_project(
    scheduler: StationScheduler, log: RecordingLog, windows: Windows
) -> None:
    windows.windows = [Window("reservation", now(), now() + dt.timedelta(seconds=0.6), "owner")]
    other = scheduler.submit(Operation("other", POINT), "guest")
    mine = scheduler.submit(Operation("mine", POINT), "owner")
    mine.result(timeout=5)
    assert not other.done()
    assert other.result(timeout=5).operation_id == "other"  # once the window is over
    assert log.started_order == ["mine", "other"]


def test_nothing_is_sent_in_a_maintenance_window(
    scheduler: StationScheduler, log: RecordingLog, windows: Windows
) -> None:
    end = now() + dt.timedelta(seconds=0.5)
    windows.windows = [Window("maintenance", now(), end, reason="lamp change")]
    future = scheduler.submit(Operation("waits", POINT), "p")
    time.sleep(0.2)
    assert log.started_order == []
    status = scheduler.status()
    assert status.state is StationState.MAINTENANCE
    assert status.reason == "lamp change"
    assert status.queue_length == 1
    future.result(timeout=5)
    assert now() >= end


def test_an_operation_past_its_timeout_is_aborted_and_recorded(
    log: RecordingLog, windows: Windows
) -> None:
    scheduler = make(log, windows, latency_s=5.0, slots=2, safety=SafetyPolicy(timeout_s=0.3))
    try:
        start = time.monotonic()
        stuck = scheduler.submit(Operation("stuck", POINT), "p")
        with pytest.raises(StationError, match="timeout"):
            stuck.result(timeout=3)
        assert time.monotonic() - start < 2.0
        assert log.ended["stuck"][0] == "timed_out"
        assert scheduler.status().busy_slots == 0
    finally:
        scheduler.close()


def test_cancelling_a_queued_operation_takes_it_out(
    scheduler: StationScheduler, log: RecordingLog
) -> None:
    running = scheduler.submit(Operation("running", POINT), "p")
    queued = scheduler.submit(Operation("queued", POINT), "p")
    assert queued.cancel()
    running.result(timeout=5)
    time.sleep(0.1)
    assert log.started_order == ["running"]
    assert log.ended["queued"][0] == "aborted"
    assert scheduler.status().queue_length == 0


def test_abort_drops_the_queue_and_stops_the_running_one(
    log: RecordingLog, windows: Windows
) -> None:
    scheduler = make(log, windows, latency_s=5.0)
    try:
        futures = [scheduler.submit(Operation(f"op-{i}", POINT), "p") for i in range(3)]
        time.sleep(0.1)
        scheduler.abort()
        for future in futures:
            with pytest.raises(StationError):
                future.result(timeout=2)
        assert {log.ended[f"op-{i}"][0] for i in range(3)} == {"aborted"}
    finally:
        scheduler.close()


def test_the_same_operation_id_is_not_queued_twice(
    scheduler: StationScheduler, log: RecordingLog
) -> None:
    first = scheduler.submit(Operation("op", POINT), "p")
    again = scheduler.submit(Operation("op", POINT), "p")
    assert again is first
    first.result(timeout=5)
    assert log.started_order == ["op"]


def test_a_closed_scheduler_refuses(scheduler: StationScheduler) -> None:
    scheduler.close()
    with pytest.raises(StationError, match="closed"):
        scheduler.submit(Operation("late", POINT), "p").result(timeout=1)


def test_instrument_seconds_are_the_measured_duration(
    scheduler: StationScheduler, log: RecordingLog
) -> None:
    scheduler.submit(Operation("op", POINT), "p").result(timeout=5)
    state, seconds = log.ended["op"]
    assert state == "completed"
    assert seconds == pytest.approx(0.05, rel=0.2)


class FlakyWindows(Windows):
    """Windows whose reading fails once, as a locked catalog would."""

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_on = fail_on

    def __call__(self) -> list[Window]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("database is locked")
        return super().__call__()


def test_a_failing_scheduling_pass_strands_nothing(log: RecordingLog) -> None:
    scheduler = make(log, FlakyWindows(fail_on=2))  # the pass after the first operation
    try:
        futures = [scheduler.submit(Operation(f"op-{i}", POINT), "p") for i in range(3)]
        for future in futures:
            assert future.result(timeout=10).operation_id  # retried within about a second
    finally:
        scheduler.close()


def test_operations_wait_while_the_station_is_in_error(windows: Windows) -> None:
    log = RecordingLog()
    station = SimulatedStation(
        "electrolyte", slots=1, latency_s=0.0, noise=0.0, reservoir_ml=1.0, use_ml=1.0
    )
    scheduler = StationScheduler("dosing", station, safety=SafetyPolicy(), log=log, windows=windows)
    try:
        scheduler.submit(Operation("first", POINT), "p").result(timeout=5)  # empties it
        waiting = [scheduler.submit(Operation(f"op-{i}", POINT), "p") for i in range(400)]
        time.sleep(0.3)
        assert not any(f.done() for f in waiting)  # held, not failed, and no recursion
        assert scheduler.status().state is StationState.ERROR
        station.refill()
        scheduler.poke()
        # one dose per refill: the first waiting operation runs, the rest wait again
        assert waiting[0].result(timeout=5).operation_id == "op-0"
        time.sleep(0.2)
        assert not any(f.done() for f in waiting[1:])
    finally:
        scheduler.close()
    assert all(isinstance(f.exception(timeout=5), StationError) for f in waiting[1:])


def test_a_maintenance_window_clears_a_permanent_fault(log: RecordingLog) -> None:
    windows = Windows()
    station = SimulatedStation(
        "electrolyte", slots=1, latency_s=0.0, noise=0.0, permanent_fault_rate=1.0
    )
    scheduler = StationScheduler(
        "fragile", station, safety=SafetyPolicy(), log=log, windows=windows
    )
    try:
        with pytest.raises(StationError, match="maintenance"):
            scheduler.submit(Operation("breaks", POINT), "p").result(timeout=5)
        assert station.status().state is StationState.ERROR
        windows.windows = [
            Window("maintenance", now(), now() + dt.timedelta(seconds=0.4), reason="repair")
        ]
        scheduler.poke()
        assert station.status().state is StationState.MAINTENANCE
        time.sleep(0.6)
        scheduler.poke()
        assert station.status().state is StationState.IDLE  # out of maintenance: repaired
    finally:
        scheduler.close()


def test_a_timeout_stops_only_its_own_operation(log: RecordingLog, windows: Windows) -> None:
    station = SimulatedStation("electrolyte", slots=2, latency_s=1.5, latency_jitter=0.0)
    scheduler = StationScheduler(
        "two", station, safety=SafetyPolicy(timeout_s=1.0), log=log, windows=windows
    )
    try:
        stuck = scheduler.submit(Operation("stuck", POINT), "p")
        time.sleep(0.7)
        later = scheduler.submit(Operation("later", POINT), "p")  # would end at 2.2 s
        with pytest.raises(StationError, match="timeout"):
            stuck.result(timeout=5)
        assert log.ended["stuck"][0] == "timed_out"
        with pytest.raises(StationError, match="timeout"):
            later.result(timeout=5)  # times out on its own clock, not stopped with the first
        assert log.ended["later"][0] == "timed_out"
        assert station.status().busy_slots == 0
    finally:
        scheduler.close()


class GatedLog(RecordingLog):
    """A log whose first record waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def queued(self, station: str, op: Operation, project: str, priority: int) -> int:
        self.entered.set()
        self.go.wait(5)
        return super().queued(station, op, project, priority)


def test_a_submit_racing_close_settles(windows: Windows) -> None:
    log = GatedLog()
    scheduler = make(log, windows)  # type: ignore[arg-type]
    result: list[Any] = []
    submitter = threading.Thread(
        target=lambda: result.append(scheduler.submit(Operation("op", POINT), "p"))
    )
    submitter.start()
    assert log.entered.wait(5)
    scheduler.close()
    log.go.set()
    submitter.join(5)
    with pytest.raises(StationError):
        result[0].result(timeout=5)
    assert log.ended["op"][0] == "aborted"


def test_the_same_id_submitted_at_once_runs_once(windows: Windows) -> None:
    log = GatedLog()
    scheduler = make(log, windows)  # type: ignore[arg-type]
    try:
        futures: list[Any] = []
        first = threading.Thread(
            target=lambda: futures.append(scheduler.submit(Operation("op", POINT), "p"))
        )
        first.start()
        assert log.entered.wait(5)
        second = scheduler.submit(Operation("op", POINT), "p")  # while the first is stored
        log.go.set()
        first.join(5)
        assert second is futures[0]
        second.result(timeout=5)
        assert log.started_order == ["op"]
    finally:
        scheduler.close()


def test_a_changed_policy_applies_to_the_next_operation(log: RecordingLog) -> None:
    policies = [SafetyPolicy()]
    station = SimulatedStation("electrolyte", slots=1, latency_s=0.0, noise=0.0)
    scheduler = StationScheduler("p", station, safety=lambda: policies[-1], log=log)
    try:
        scheduler.submit(Operation("before", POINT), "p").result(timeout=5)
        info = station.describe()
        policies.append(
            SafetyPolicy.from_config({"limits": {"temperature_c": ":20"}}, info.parameters)
        )
        with pytest.raises(SafetyViolation):
            scheduler.submit(Operation("after", POINT), "p").result(timeout=5)
    finally:
        scheduler.close()
