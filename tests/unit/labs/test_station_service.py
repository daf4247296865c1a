"""The station service: registry, shared use by campaigns, records, commands from any shell."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from genesis_platform import CampaignSpecError, Platform
from genesis_platform.errors import InvalidInput, NotFound, SafetyViolation, StationError
from genesis_platform.labs.protocols import Operation, StationState

POINT = {"salt_molality": 1.0, "solvent": "PC", "temperature_c": 25}
FAST = {"emulator": "electrolyte", "latency_s": 0.02, "latency_jitter": 0.0, "slots": 1}


def campaign_spec(name: str, project: str, station: str, trials: int = 6) -> dict[str, Any]:
    return {
        "name": name,
        "project": project,
        "space": {
            "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
            "temperature_c": {"type": "int", "low": 10, "high": 60},
            "solvent": {"type": "choice", "values": ["EC-DMC", "PC"]},
        },
        "objectives": {"conductivity": "max"},
        "planner": "random",
        "runner": {"station": station},
        "budget": {"trials": trials, "parallel": 2},
        "seed": 3,
    }


def test_built_in_stations_are_listed_with_registered_ones(platform: Platform) -> None:
    platform.stations.add("flow-cell", "simulated", FAST, {"limits": {"temperature_c": ":40"}})
    records = {r.name: r for r in platform.stations.list()}
    assert {"electrolyte", "reaction-yield", "flow-cell"} <= set(records)
    assert records["electrolyte"].builtin and not records["flow-cell"].builtin
    assert records["flow-cell"].options["emulator"] == "electrolyte"
    assert records["flow-cell"].safety == {"limits": {"temperature_c": ":40"}}


@pytest.mark.parametrize(
    ("name", "driver", "options", "safety", "field"),
    [
        ("Bad Name", "simulated", FAST, {}, "name"),
        ("cell", "laser", {}, {}, "driver"),
        ("cell", "simulated", {**FAST, "warp": 9}, {}, "options.warp"),
        ("cell", "simulated", {**FAST, "slots": 0}, {}, "options.slots"),
        ("cell", "simulated", {"emulator": "nope"}, {}, "options.emulator"),
        ("cell", "sila2", {}, {}, "options.port"),
        ("cell", "bluesky", {}, {}, "options"),
        ("cell", "simulated", FAST, {"limits": {"nope": "1:2"}}, "safety.limits.nope"),
        (
            "cell",
            "simulated",
            FAST,
            {"limits": {"temperature_c": "60:20"}},
            "safety.limits.temperature_c",
        ),
        ("cell", "simulated", FAST, {"interlocks": ["pressure <= 2"]}, "safety.interlocks[0]"),
        ("cell", "simulated", FAST, {"timeout_s": -1}, "safety.timeout_s"),
        ("electrolyte", "simulated", FAST, {}, "name"),
    ],
)
def test_bad_registrations_are_refused_and_nothing_is_stored(
    platform: Platform,
    name: str,
    driver: str,
    options: dict[str, Any],
    safety: dict[str, Any],
    field: str,
) -> None:
    before = platform.stations.list()
    with pytest.raises(InvalidInput) as error:
        platform.stations.add(name, driver, options, safety)
    assert error.value.field == field
    assert platform.stations.list() == before


def test_a_name_is_registered_once_and_removed(platform: Platform) -> None:
    platform.stations.add("cell", "simulated", FAST)
    with pytest.raises(InvalidInput, match="exists"):
        platform.stations.add("cell", "simulated", FAST)
    platform.stations.remove("cell")
    with pytest.raises(NotFound):
        platform.stations.get("cell")
    with pytest.raises(InvalidInput, match="built in"):
        platform.stations.remove("electrolyte")


def test_operations_are_recorded_with_project_and_instrument_seconds(platform: Platform) -> None:
    platform.stations.add("cell", "simulated", FAST, {"limits": {"temperature_c": ":40"}})
    handle = platform.stations.handle("cell", project="battery")
    measurement = handle.run(Operation("op-1", POINT)).result(timeout=10)
    refused = handle.run(Operation("op-2", {**POINT, "temperature_c": 50}))
    with pytest.raises(SafetyViolation):
        refused.result(timeout=5)
    ops = {o.operation_id: o for o in platform.stations.operations(station="cell")}
    assert ops["op-1"].state == "completed" and ops["op-1"].project == "battery"
    assert ops["op-1"].instrument_seconds == pytest.approx(measurement.duration_s)
    assert ops["op-1"].values == pytest.approx(dict(measurement.values))
    assert ops["op-2"].state == "refused" and "temperature_c" in ops["op-2"].error
    assert ops["op-2"].started_at is None  # never sent
    usage = platform.stations.usage(project="battery")
    assert usage[("battery", "cell")] == pytest.approx(measurement.duration_s)


def test_two_campaigns_of_two_projects_share_one_station(platform: Platform) -> None:
    platform.stations.add("shared", "simulated", FAST)
    campaigns = [
        platform.campaigns.create(campaign_spec(f"c-{p}", p, "shared")) for p in ("a", "b")
    ]
    threads = [threading.Thread(target=c.run) for c in campaigns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for campaign in campaigns:
        assert campaign.info().n_observed == 6
    ops = sorted(platform.stations.operations(station="shared"), key=lambda o: o.started_at)
    assert {o.project for o in ops} == {"a", "b"}
    assert all(o.state == "completed" for o in ops)
    first_half = [o.project for o in ops[:6]]
    assert first_half.count("a") >= 2 and first_half.count("b") >= 2  # interleaved, not a then b
    usage = platform.stations.usage(station="shared")
    assert usage[("a", "shared")] > 0 and usage[("b", "shared")] > 0


def test_a_shared_station_takes_no_campaign_options(platform: Platform) -> None:
    platform.stations.add("shared", "simulated", FAST)
    spec = campaign_spec("c", "a", "shared")
    spec["runner"]["options"] = {"latency_s": 0}
    with pytest.raises(CampaignSpecError) as error:
        platform.campaigns.create(spec)
    assert error.value.field == "runner.options"


def test_an_unknown_station_is_a_campaign_spec_error(platform: Platform) -> None:
    with pytest.raises(CampaignSpecError) as error:
        platform.campaigns.create(campaign_spec("c", "a", "nowhere"))
    assert error.value.field == "runner.station"


def test_inventory_counts_use_faults_and_maintenance(platform: Platform) -> None:
    import datetime as dt

    platform.stations.add("good", "simulated", FAST, {"timeout_s": 30})
    platform.stations.add("flaky", "simulated", {**FAST, "failure_rate": 1.0})
    for station in ("good", "flaky"):
        future = platform.stations.handle(station, "p").run(Operation("op", POINT))
        future.exception(timeout=10)
    start = dt.datetime.now(dt.UTC)
    platform.stations.maintenance("good", start - dt.timedelta(hours=6), start, "service")
    rows = {r.name: r for r in platform.stations.inventory(start - dt.timedelta(days=1))}
    assert {"electrolyte", "reaction-yield", "good", "flaky"} <= set(rows)
    good, flaky = rows["good"], rows["flaky"]
    assert (good.protocol, good.driver) == ("simulated", "simulated")
    assert good.safety == ("timeout 30 s",)
    assert good.operations == 1 and good.faults == 0 and good.utilization > 0
    assert good.uptime == pytest.approx(0.75, abs=0.01)
    assert flaky.faults == 1 and "transient fault" in flaky.last_fault
    assert rows["electrolyte"].uptime == 1.0 and rows["electrolyte"].operations == 0


def test_reservations_of_two_projects_may_not_overlap(platform: Platform) -> None:
    import datetime as dt

    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    platform.stations.reserve("electrolyte", "a", start, start + dt.timedelta(hours=2))
    with pytest.raises(InvalidInput, match="overlaps"):
        platform.stations.reserve(
            "electrolyte", "b", start + dt.timedelta(hours=1), start + dt.timedelta(hours=3)
        )
    with pytest.raises(InvalidInput) as error:
        platform.stations.maintenance("electrolyte", start, start - dt.timedelta(hours=1))
    assert error.value.field == "ends_at"
    [window] = platform.stations.windows("electrolyte")
    platform.stations.cancel_window(window.id)
    assert platform.stations.windows("electrolyte") == []


_HOLDER = """
import sys, time
from genesis_platform import Platform
from genesis_platform.labs.protocols import Operation
point = {"salt_molality": 1.0, "solvent": "PC", "temperature_c": 25}
with Platform.open(sys.argv[1]) as p:
    station = p.stations.handle(sys.argv[2], project="held")
    if sys.argv[3] == "empty":
        station.run(Operation("drain", point)).result(timeout=10)
        print("drained", flush=True)
        for _ in range(100):
            if p.stations.status(sys.argv[2]).state.value != "error":
                break
            time.sleep(0.1)
        print("state", p.stations.status(sys.argv[2]).state.value, flush=True)
    else:
        future = station.run(Operation("long", point))
        print("running", flush=True)
        error = future.exception(timeout=30)
        print("ended", type(error).__name__, flush=True)
"""


def start_holder(home: Path, station: str, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "GENESIS_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(home), station, mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def stop(holder: subprocess.Popen[str]) -> None:
    holder.kill()
    holder.wait(timeout=20)
    if holder.stdout is not None:
        holder.stdout.close()


def test_abort_from_another_process_stops_the_operation(
    platform: Platform, genesis_home: Path
) -> None:
    platform.stations.add("slow", "simulated", {**FAST, "latency_s": 30.0})
    holder = start_holder(genesis_home, "slow", "long")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "running"
        deadline = time.monotonic() + 10
        while platform.stations.status("slow").state is not StationState.BUSY:
            assert time.monotonic() < deadline, "the holder's status was not published"
            time.sleep(0.2)
        assert platform.stations.abort("slow", wait_s=5.0)
        assert holder.stdout.readline().strip() == "ended StationError"
        assert holder.wait(timeout=20) == 0
    finally:
        stop(holder)
    [op] = platform.stations.operations(station="slow")
    assert op.state == "aborted"


def test_refill_from_another_process(platform: Platform, genesis_home: Path) -> None:
    platform.stations.add("dosing", "simulated", {**FAST, "reservoir_ml": 1.0, "use_ml": 1.0})
    holder = start_holder(genesis_home, "dosing", "empty")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "drained"
        deadline = time.monotonic() + 10
        while platform.stations.status("dosing").state is not StationState.ERROR:
            assert time.monotonic() < deadline, "the empty reservoir was not published"
            time.sleep(0.2)
        assert platform.stations.refill("dosing", wait_s=5.0)
        assert holder.stdout.readline().strip() == "state idle"
        assert holder.wait(timeout=20) == 0
    finally:
        stop(holder)


def test_abort_with_nobody_holding_the_station_says_so(platform: Platform) -> None:
    assert platform.stations.abort("electrolyte", wait_s=0.3) is False


def test_a_station_that_cannot_be_reached_is_offline(platform: Platform) -> None:
    platform.stations.add("remote", "sila2", {"port": 1})
    status = platform.stations.status("remote")
    assert status.state is StationState.OFFLINE
    assert status.reason
    with pytest.raises(StationError):
        platform.stations.handle("remote")


def test_an_abort_is_carried_out_once(platform: Platform) -> None:
    platform.stations.add("slowish", "simulated", {**FAST, "latency_s": 1.5})
    handle = platform.stations.handle("slowish", project="p")
    first = handle.run(Operation("first", POINT))
    time.sleep(0.2)
    assert platform.stations.abort("slowish")
    with pytest.raises(StationError):
        first.result(timeout=5)
    after = handle.run(Operation("after", POINT))
    time.sleep(1.2)  # the watcher polled twice: it must not abort again
    assert after.result(timeout=5).operation_id == "after"


def test_an_old_abort_is_not_carried_out_by_a_later_opening(platform: Platform) -> None:
    platform.stations.add("later", "simulated", {**FAST, "latency_s": 1.2})
    platform.stations.open("electrolyte")  # the watcher runs before "later" opens
    assert platform.stations.abort("later", wait_s=0.2) is False  # nobody had it open
    future = platform.stations.handle("later", project="p").run(Operation("op", POINT))
    assert future.result(timeout=5).operation_id == "op"


def test_operator_commands_reach_a_campaigns_private_built_in_station(
    platform: Platform,
) -> None:
    from genesis_platform.labs.simulated import SimulatedStation

    station = SimulatedStation("electrolyte", latency_s=30.0)
    handle = platform.stations.private("electrolyte", station, project="p")
    try:
        future = handle.run(Operation("long", POINT))
        time.sleep(0.2)
        assert platform.stations.abort("electrolyte")
        with pytest.raises(StationError):
            future.result(timeout=5)
    finally:
        handle.close()


def test_a_changed_safety_policy_reaches_a_station_already_open(
    platform: Platform, genesis_home: Path
) -> None:
    platform.stations.add("cell", "simulated", FAST)
    handle = platform.stations.handle("cell", project="p")
    assert handle.run(Operation("before", POINT)).result(timeout=5)
    with Platform.open(genesis_home) as operator:  # another shell
        operator.stations.remove("cell")
        operator.stations.add("cell", "simulated", FAST, {"limits": {"temperature_c": ":20"}})
    time.sleep(1.1)
    with pytest.raises(SafetyViolation):
        handle.run(Operation("after", POINT)).result(timeout=5)
    with Platform.open(genesis_home) as operator:
        operator.stations.remove("cell")
    time.sleep(1.1)
    with pytest.raises(StationError, match="removed"):
        handle.run(Operation("gone", {**POINT, "temperature_c": 15})).result(timeout=5)


def test_deleting_a_maintenance_window_releases_the_queue(platform: Platform) -> None:
    import datetime as dt

    platform.stations.add("cell", "simulated", FAST)
    start = dt.datetime.now(dt.UTC)
    window = platform.stations.maintenance("cell", start, start + dt.timedelta(hours=1), "lamp")
    future = platform.stations.handle("cell", project="p").run(Operation("op", POINT))
    time.sleep(0.5)
    assert not future.done()
    platform.stations.cancel_window(window.id)
    assert future.result(timeout=5).operation_id == "op"  # not an hour later


def test_inventory_counts_overlapping_windows_once_and_only_operations_sent(
    platform: Platform,
) -> None:
    import datetime as dt

    platform.stations.add("busy", "simulated", {**FAST, "latency_s": 30.0})
    handle = platform.stations.handle("busy", "p")
    running = handle.run(Operation("running", POINT))
    queued = handle.run(Operation("queued", POINT))  # one slot: never sent
    time.sleep(0.2)
    platform.stations.abort("busy")
    for future in (running, queued):
        future.exception(timeout=5)
    now = dt.datetime.now(dt.UTC)
    hours = dt.timedelta(hours=1)
    platform.stations.maintenance("busy", now - 9 * hours, now - 3 * hours, "a")
    platform.stations.maintenance("busy", now - 6 * hours, now, "b")  # overlaps the first
    [row] = [r for r in platform.stations.inventory(now - 24 * hours, now) if r.name == "busy"]
    assert row.uptime == pytest.approx(1 - 9 / 24, abs=0.01)
    assert row.operations == 1  # the running one; the one aborted in the queue never ran


def test_abort_tells_a_sila_server_directly_when_no_process_follows_it(
    platform: Platform,
) -> None:
    from genesis_platform.labs.sila import SilaStation
    from tests.unit.labs.backend_sila import serve

    with serve("electrolyte", latency_s=30.0, slots=1) as server:
        platform.stations.add("remote", "sila2", {"port": server.port})
        elsewhere = SilaStation("elsewhere", host=server.host, port=server.port)  # not Genesis's
        try:
            running = elsewhere.run(Operation("long", POINT))
            deadline = time.monotonic() + 10
            while server.station.status().busy_slots == 0:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert platform.stations.abort("remote", wait_s=0.2)
            with pytest.raises(StationError):
                running.result(timeout=10)
            deadline = time.monotonic() + 10
            while server.station.status().busy_slots:
                assert time.monotonic() < deadline, "the server still runs the operation"
                time.sleep(0.05)
        finally:
            elsewhere.close()
