"""genesis station, in-process: registry, safety, windows, inventory, operator commands.

Only ``serve-sila``, which serves until Ctrl-C, runs in its own process.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from genesis_platform import Platform
from genesis_platform.errors import SafetyViolation, StationError
from genesis_platform.labs.protocols import Operation, StationState
from genesis_platform.planning.protocols import ParamValue
from tests.integration.cli import run, run_json
from tests.unit.labs.backend_sila import require_sila

NAME = "cell"
BUILTINS = ["electrolyte", "reaction-yield"]
INTERLOCK = "temperature_c <= 40 if solvent == EC-DMC"
POINT: dict[str, ParamValue] = {"salt_molality": 1.0, "temperature_c": 30, "solvent": "EC-DMC"}


def add(capsys: pytest.CaptureFixture[str], *options: str, latency_s: float = 0) -> None:
    """``genesis station add`` of an electrolyte cell with a limit, an interlock, a timeout."""
    argv = ["station", "add", NAME, "--driver", "simulated", "-o", "emulator=electrolyte"]
    argv += ["-o", f"latency_s={latency_s}", *options, "--limit", "temperature_c=20:60"]
    argv += ["--interlock", INTERLOCK, "--timeout", "5"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert f"added station {NAME} (simulated)" in out


def names(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [s["name"] for s in run_json(capsys, "station", "list")]


def iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="seconds")


def test_add_list_show_and_status(capsys: pytest.CaptureFixture[str]) -> None:
    add(capsys)
    listed = {s["name"]: s for s in run_json(capsys, "station", "list")}
    assert list(listed) == [NAME, *BUILTINS]
    assert listed[NAME] == {
        "name": NAME,
        "driver": "simulated",
        "options": {"emulator": "electrolyte", "latency_s": 0.0},
        "safety": {
            "limits": {"temperature_c": "20:60"},
            "interlocks": [INTERLOCK],
            "timeout_s": 5.0,
        },
        "builtin": False,
        "created_by": listed[NAME]["created_by"],
    }
    assert all(listed[b]["builtin"] and listed[b]["safety"] == {} for b in BUILTINS)
    code, out, _ = run(capsys, "station", "list")
    assert code == 0 and all(name in out for name in [NAME, *BUILTINS])

    code, out, _ = run(capsys, "station", "show", NAME)
    assert code == 0
    assert f"{NAME} (simulated, simulated, 2 slots)" in out
    for line in [
        "parameter salt_molality:",
        "parameter temperature_c:",
        "parameter solvent:",
        "measures conductivity:",
        "safety limit temperature_c 20:60",
        f"safety interlock {INTERLOCK}",
        "safety timeout 5 s",
    ]:
        assert line in out
    shown = run_json(capsys, "station", "show", NAME)
    assert list(shown["description"]["parameters"]) == ["salt_molality", "temperature_c", "solvent"]
    assert shown["safety"]["limits"] == {"temperature_c": "20:60"}

    code, out, _ = run(capsys, "station", "status", NAME)
    assert code == 0 and f"{NAME}: idle" in out and "busy slots 0, queue 0" in out
    before = time.time()
    status = run_json(capsys, "station", "status", NAME)
    assert (status["station"], status["state"], status["queue_length"]) == (NAME, "idle", 0)
    assert before - 60 < status["heartbeat"] <= time.time()


def test_reserve_maintenance_windows_unwindow(capsys: pytest.CaptureFixture[str]) -> None:
    add(capsys)
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    code, out, err = run(
        capsys, "station", "reserve", NAME, "--project", "p", "--start", iso(start), "--end", "1h"
    )
    assert code == 0, err
    assert "reservation" in out
    code, out, err = run(capsys, "station", "maintenance", NAME, "--end", "2h", "--reason", "lamp")
    assert code == 0, err
    assert "maintenance" in out and "lamp" in out

    windows = run_json(capsys, "station", "windows", NAME)
    assert [(w["kind"], w["project"], w["reason"]) for w in windows] == [
        ("maintenance", "", "lamp"),
        ("reservation", "p", ""),
    ]
    maintenance, reservation = windows
    starts = dt.datetime.fromisoformat(reservation["starts_at"])
    ends = dt.datetime.fromisoformat(reservation["ends_at"])
    assert ends - starts == dt.timedelta(hours=1)
    assert starts == start.replace(microsecond=0)
    span = dt.datetime.fromisoformat(maintenance["ends_at"]) - dt.datetime.fromisoformat(
        maintenance["starts_at"]
    )
    assert span == dt.timedelta(hours=2)
    assert run_json(capsys, "station", "windows", "electrolyte") == []

    # another project's overlapping reservation is refused
    argv = ["station", "reserve", NAME, "--project", "q", "--start", iso(start), "--end", "30m"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "starts_at" in err and "'p'" in err

    code, out, _ = run(capsys, "station", "unwindow", str(reservation["id"]))
    assert code == 0 and f"deleted window {reservation['id']}" in out
    assert [w["id"] for w in run_json(capsys, "station", "windows", NAME)] == [maintenance["id"]]
    code, _, err = run(capsys, "station", "unwindow", str(reservation["id"]))
    assert code == 2 and "genesis station windows" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--project", "p", "--start", "tomorrow", "--end", "1h"], "--start"),
        (["--project", "p", "--start", "now", "--end", "later"], "--end"),
        (["--project", "p", "--start", "now", "--end", "2020-01-01T00:00+00:00"], "ends_at"),
        (["--project", "", "--start", "now", "--end", "1h"], "project"),
        (["--project", "p", "--start", "now", "--end", "99999999999d"], "--end"),
        (["--project", "p", "--start", "now", "--end", "36501d"], "--end"),
        (["--project", "p", "--start", "now", "--end", "\u00b2h"], "--end"),  # a digit, not 0-9
        (["--project", "p", "--start", "now", "--end", "9999-12-31T23:59-05:00"], "--end"),
        (["--project", "p", "--start", "9999-12-31T23:00+00:00", "--end", "2h"], "--start"),
        (["--project", "p", "--start", "9999-12-31T23:00-05:00", "--end", "1s"], "--start"),
        (["--project", "p", "--start", "0001-01-01T00:00+05:00", "--end", "1h"], "--start"),
    ],
)
def test_bad_reservations_exit_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    add(capsys)
    code, _, err = run(capsys, "station", "reserve", NAME, *argv)
    assert code == 2
    assert f"error: {words}" in err
    assert run_json(capsys, "station", "windows", NAME) == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--end", "99999999999d"], "--end: '99999999999d' is longer than 36500 days"),
        (["--end", "1e400h"], "--end: '1e400h' is not an ISO time"),
        (["--end", "9999-12-31T23:59+00:00"], "--end: '9999-12-31T23:59+00:00' is more than"),
        (["--start", "9999-12-31T23:00+00:00", "--end", "2h"], "--start: '9999-12-31T23:00+00"),
        (["--start", "0001-01-01T00:00+00:00", "--end", "1h"], "--start: '0001-01-01T00:00+00"),
    ],
)
def test_bad_maintenance_exits_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    add(capsys)
    code, out, err = run(capsys, "station", "maintenance", NAME, *argv)
    assert code == 2
    assert f"error: {words}" in err
    assert out == ""
    assert run_json(capsys, "station", "windows", NAME) == []


def test_a_window_may_last_a_century_written_as_a_duration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    add(capsys)
    code, _, err = run(capsys, "station", "maintenance", NAME, "--end", "36500d")
    assert code == 0, err
    [window] = run_json(capsys, "station", "windows", NAME)
    span = dt.datetime.fromisoformat(window["ends_at"]) - dt.datetime.fromisoformat(
        window["starts_at"]
    )
    assert span == dt.timedelta(days=36500)


def test_status_says_maintenance_during_a_maintenance_window(
    capsys: pytest.CaptureFixture[str],
) -> None:
    add(capsys)
    code, _, err = run(capsys, "station", "maintenance", NAME, "--end", "2h", "--reason", "lamp")
    assert code == 0, err
    status = run_json(capsys, "station", "status", NAME)
    assert (status["state"], status["reason"]) == ("maintenance", "lamp")


def test_status_says_maintenance_where_the_station_is_open(platform: Platform) -> None:
    platform.stations.add(NAME, "simulated", {"emulator": "electrolyte", "latency_s": 0})
    now = dt.datetime.now(dt.UTC)
    platform.stations.maintenance(NAME, now, now + dt.timedelta(hours=2), "lamp")
    platform.stations.open(NAME)
    status = platform.stations.status(NAME)
    assert (status.state, status.reason) == (StationState.MAINTENANCE, "lamp")


def test_inventory_lists_every_station(capsys: pytest.CaptureFixture[str]) -> None:
    add(capsys)
    now = dt.datetime.now(dt.UTC)
    past = ["--start", iso(now - dt.timedelta(days=3)), "--end", iso(now - dt.timedelta(days=1))]
    code, _, err = run(capsys, "station", "maintenance", NAME, *past, "--reason", "service")
    assert code == 0, err
    assert run_json(capsys, "station", "windows", NAME) == []  # it has ended

    rows = {r["name"]: r for r in run_json(capsys, "station", "inventory")}
    assert list(rows) == [NAME, *BUILTINS]
    for row in rows.values():
        assert (row["driver"], row["protocol"], row["reachable"]) == (
            "simulated",
            "simulated",
            "yes",
        )
        assert row["capabilities"] == ["measure"]
        assert (row["operations"], row["faults"], row["refused"]) == (0, 0, 0)
        assert row["utilization"] == 0.0
    assert set(rows[NAME]["safety"]) == {
        "limit temperature_c 20:60",
        f"interlock {INTERLOCK}",
        "timeout 5 s",
    }
    assert rows[NAME]["uptime"] == pytest.approx(1 - 2 / 30, abs=1e-4)
    assert all(rows[b]["safety"] == [] and rows[b]["uptime"] == 1.0 for b in BUILTINS)
    # over the last day the window is outside the period
    recent = {r["name"]: r for r in run_json(capsys, "station", "inventory", "--days", "0.5")}
    assert recent[NAME]["uptime"] == 1.0
    code, out, _ = run(capsys, "station", "inventory")
    assert code == 0 and "lab readiness, last 30 days" in out


@pytest.mark.parametrize("days", ["-1", "0", "nan", "inf", "-inf", "1e12", "36501"])
def test_inventory_refuses_a_period_that_is_not_a_positive_number_of_days(
    capsys: pytest.CaptureFixture[str], days: str
) -> None:
    code, out, err = run(capsys, "station", "inventory", "--days", days, "--json")
    assert code == 2
    assert out == ""
    assert "error: --days: must be a number of days > 0 and <= 36500" in err


def test_inventory_over_a_century(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "station", "inventory", "--days", "36500")
    assert [r["name"] for r in rows] == BUILTINS


def test_operations_and_usage_are_recorded(
    capsys: pytest.CaptureFixture[str], platform: Platform
) -> None:
    add(capsys, "-o", "latency_jitter=0", latency_s=0.05)
    handle = platform.stations.handle(NAME, project="proj-a")
    first = handle.run(Operation("op-1", POINT)).result(timeout=10)
    handle.run(Operation("op-2", {**POINT, "solvent": "PC", "temperature_c": 55})).result(10)
    assert first.values["conductivity"] > 0

    below = handle.run(Operation("op-3", {**POINT, "temperature_c": 15})).exception(timeout=10)
    assert isinstance(below, SafetyViolation) and below.field == "op.params.temperature_c"
    hot = handle.run(Operation("op-4", {**POINT, "temperature_c": 50})).exception(timeout=10)
    assert isinstance(hot, SafetyViolation) and hot.field == "op.params"

    ops = {o["operation_id"]: o for o in run_json(capsys, "station", "operations", NAME)}
    assert {k: o["state"] for k, o in ops.items()} == {
        "op-1": "completed",
        "op-2": "completed",
        "op-3": "refused",
        "op-4": "refused",
    }
    assert all(o["project"] == "proj-a" and o["station"] == NAME for o in ops.values())
    assert ops["op-1"]["instrument_seconds"] == pytest.approx(0.05)
    assert ops["op-1"]["values"] == pytest.approx(dict(first.values))
    assert ops["op-1"]["external_id"] == f"{NAME}:op-1"
    assert ops["op-3"]["instrument_seconds"] == 0.0 and "below its limit 20" in ops["op-3"]["error"]
    assert INTERLOCK in ops["op-4"]["error"]
    assert run_json(capsys, "station", "operations", NAME, "--project", "other") == []
    assert len(run_json(capsys, "station", "operations", "--limit", "1")) == 1

    usage = run_json(capsys, "station", "usage", "--project", "proj-a")
    assert usage == [{"project": "proj-a", "station": NAME, "instrument_seconds": 0.1}]
    total = ops["op-1"]["instrument_seconds"] + ops["op-2"]["instrument_seconds"]
    assert usage[0]["instrument_seconds"] == pytest.approx(total, abs=1e-3)
    assert run_json(capsys, "station", "usage", "--project", "proj-b") == []

    [row] = [r for r in run_json(capsys, "station", "inventory") if r["name"] == NAME]
    assert (row["operations"], row["refused"], row["faults"]) == (2, 2, 0)
    assert row["instrument_seconds"] == pytest.approx(total)


def test_refill_a_station_without_a_reservoir_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    add(capsys)
    for name in (NAME, "electrolyte"):
        code, _, err = run(capsys, "station", "refill", name)
        assert code == 2
        assert "consumable" in err and f"station '{name}' has no consumables" in err


def test_refill_from_the_cli_reaches_the_process_that_has_it_open(
    capsys: pytest.CaptureFixture[str], platform: Platform
) -> None:
    add(capsys, "-o", "reservoir_ml=1", "-o", "use_ml=1")
    handle = platform.stations.handle(NAME, project="p")
    handle.run(Operation("op-1", POINT)).result(timeout=10)
    status = platform.stations.status(NAME)
    assert status.state == StationState.ERROR and "refill" in status.reason
    held = handle.run(Operation("op-2", POINT))  # waits for the refill, does not fail
    time.sleep(0.3)
    assert not held.done()
    assert platform.stations.status(NAME).queue_length == 1

    code, out, err = run(capsys, "station", "refill", NAME)  # another platform, as a shell
    assert code == 0, err
    assert f"{NAME}: refilled" in out
    assert held.result(timeout=10).operation_id == "op-2"  # and it empties the reservoir again
    ops = {o["operation_id"]: o["state"] for o in run_json(capsys, "station", "operations")}
    assert ops == {"op-1": "completed", "op-2": "completed"}


def test_abort_when_no_process_has_the_station_open(capsys: pytest.CaptureFixture[str]) -> None:
    add(capsys)
    code, out, _ = run(capsys, "station", "abort", NAME)
    assert code == 0
    assert f"{NAME}: no process has it open; nothing was running" in out


def test_abort_from_the_cli_stops_a_running_operation(
    capsys: pytest.CaptureFixture[str], platform: Platform
) -> None:
    add(capsys, "-o", "latency_jitter=0", latency_s=10)
    future = platform.stations.handle(NAME, project="p").run(Operation("long", POINT))
    code, out, err = run(capsys, "station", "abort", NAME)
    assert code == 0, err
    assert f"{NAME}: aborted" in out
    error = future.exception(timeout=2)
    assert isinstance(error, StationError) and "aborted" in str(error)
    [op] = run_json(capsys, "station", "operations", NAME)
    assert (op["operation_id"], op["state"]) == ("long", "aborted")


def test_remove(capsys: pytest.CaptureFixture[str]) -> None:
    add(capsys)
    code, out, _ = run(capsys, "station", "remove", NAME)
    assert code == 0 and f"removed station {NAME}" in out
    assert names(capsys) == BUILTINS
    code, _, err = run(capsys, "station", "show", NAME)
    assert code == 2 and f"station {NAME} does not exist" in err and "genesis station list" in err
    code, _, err = run(capsys, "station", "remove", NAME)
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "station", "remove", "electrolyte")
    assert code == 2 and "'electrolyte' is built in" in err
    assert names(capsys) == BUILTINS


SIMULATED = ["--driver", "simulated", "-o", "emulator=electrolyte"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["x", "--driver", "robot"], "driver: unknown station driver 'robot'"),
        (["x", *SIMULATED, "-o", "colour=red"], "options.colour"),
        (["x", *SIMULATED, "-o", "latency_s=-1"], "options.latency_s"),
        (["x", "--driver", "simulated", "-o", "emulator=nope"], "options.emulator"),
        (["x", "--driver", "simulated"], "options.emulator"),  # 'x' names no emulator
        (["x", *SIMULATED, "-o", "latency_s"], "--option"),
        (["x", *SIMULATED, "--limit", "temperature_c=60:20"], "safety.limits.temperature_c"),
        (["x", *SIMULATED, "--limit", "nope=1:2"], "safety.limits.nope"),
        (["x", *SIMULATED, "--limit", "temperature_c"], "--limit"),
        (["x", *SIMULATED, "--interlock", "nope <= 3"], "safety.interlocks[0]"),
        (
            ["x", *SIMULATED, "--interlock", "temperature_c <= 40", "--interlock", "T <= 1"],
            "safety.interlocks[1]",
        ),
        (
            ["x", *SIMULATED, "--interlock", "temperature_c <= 40 if base == CsF"],
            "safety.interlocks[0]",
        ),
        (["x", *SIMULATED, "--timeout", "0"], "safety.timeout_s"),
        (["x", *SIMULATED, "--limit", "solvent=20:60"], "safety.limits.solvent: a range"),
        (["x", *SIMULATED, "--limit", "temperature_c=40"], "safety.limits.temperature_c: allowed"),
        (["x", *SIMULATED, "--limit", "solvent=EC-DMC,DMC"], "safety.limits.solvent: 'DMC'"),
        (
            ["x", *SIMULATED, "--interlock", "temperature_c <= 40 if solvent == DMC"],
            "safety.interlocks[0]: 'DMC' is not a value of 'solvent'",
        ),
        (
            ["x", *SIMULATED, "--interlock", "salt_molality <= 2 if temperature_c == 30"],
            "safety.interlocks[0]: 'temperature_c' is of type 'int', not a choice",
        ),
        (["Bad Name", *SIMULATED], "name"),
        (["electrolyte", "--driver", "simulated"], "name: 'electrolyte' is a built-in station"),
    ],
)
def test_bad_add_exits_2_naming_the_field_and_stores_nothing(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    code, _, err = run(capsys, "station", "add", *argv)
    assert code == 2
    assert f"error: {words}" in err
    assert names(capsys) == BUILTINS


def test_a_duplicate_name_exits_2_and_keeps_the_first(capsys: pytest.CaptureFixture[str]) -> None:
    add(capsys)
    argv = ["station", "add", NAME, *SIMULATED, "-o", "latency_s=1"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and f"name: station '{NAME}' exists" in err
    [record] = [s for s in run_json(capsys, "station", "list") if s["name"] == NAME]
    assert record["options"]["latency_s"] == 0.0
    assert names(capsys) == [NAME, *BUILTINS]


def test_add_refuses_a_drift_the_station_cannot_open_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "station", "add", "x", *SIMULATED, "-o", "drift_per_hour=2e6")
    assert code == 2 and "drift_per_hour" in err
    assert names(capsys) == BUILTINS


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--latency", "-1"], "error: --latency: must be a number of seconds >= 0, got -1"),
        (["--latency", "nan"], "error: --latency: must be a number of seconds >= 0, got nan"),
        (["--latency", "inf"], "error: --latency: must be a number of seconds >= 0, got inf"),
        (["--host", " "], "error: --host: is empty"),
        (["--emulator", "nope"], "error: --emulator: no emulator 'nope'"),
        (["--port", "65536"], "'--port'"),  # Typer's range check
    ],
)
def test_bad_serve_sila_options_print_only_the_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    code, out, err = run(capsys, "station", "serve-sila", "--emulator", "electrolyte", *argv)
    assert code == 2
    assert out == ""  # no banner announcing a server that never ran
    assert words in err


def test_serve_sila_on_port_0_announces_the_port_once_it_listens() -> None:
    require_sila()
    server = subprocess.Popen(
        [sys.executable, "-m", "genesis_platform.cli", "station", "serve-sila",
         "--emulator", "electrolyte", "--port", "0", "--latency", "0"],
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert select.select([server.stdout], [], [], 30)[0], "no banner within 30 s"
        banner = server.stdout.readline()
        found = re.search(r"on 127\.0\.0\.1:(\d+) \(insecure\); Ctrl-C stops it", banner)
        assert found, banner
        port = int(found[1])
        assert port > 0
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) == 0  # it listens when it says so
    finally:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(timeout=20)
        finally:
            server.kill()
            _, err = server.communicate()
    assert code == 0, err
