"""Allocations: grants, charging from real tasks and simulated operations, refusal before
anything runs, campaigns that run out, and dates."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from genesis_platform import Platform, Principal
from genesis_platform.catalog.tables import AllocationRow, StationOperationRow, TaskRow
from genesis_platform.compute.protocols import Resources
from genesis_platform.errors import (
    AccessDenied,
    AllocationExceeded,
    InvalidInput,
    NotFound,
    TaskFailed,
    TransientFailure,
)
from genesis_platform.governance import allocations
from genesis_platform.governance.allocations import AllocationInfo, AllocationService
from genesis_platform.labs.protocols import Operation

PROJECT = "battery-lab"
FUNCTIONS = "genesis_platform.testing.functions"
POINT = {"salt_molality": 1.0, "solvent": "PC", "temperature_c": 25}
FAST = {"emulator": "electrolyte", "latency_s": 0.02, "latency_jitter": 0.0, "slots": 1}
SECOND = 1 / 3600  # one second, in hours


def allocation(p: Platform, resource: str, unit: str, project: str = PROJECT) -> AllocationInfo:
    [found] = [a for a in p.allocations.show(project) if (a.resource, a.unit) == (resource, unit)]
    return found


def count(p: Platform, table: Any) -> int:
    with p._db.session(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def sleeper(p: Platform, seconds: float = 0.0, walltime_s: float | None = 60, **kw: Any) -> Any:
    """A real local task of the project that sleeps ``seconds``."""
    return p.tasks.submit(
        kw.pop("site", "local"),
        function=f"{FUNCTIONS}:sleep_then_return",
        kwargs={"seconds": seconds},
        project=kw.pop("project", PROJECT),
        resources=Resources(walltime_s=walltime_s, **kw),
    )


def today() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# -- granting --------------------------------------------------------------------------------


def test_a_grant_is_shown_with_use_remaining_dates_and_state(any_platform: Platform) -> None:
    p = any_platform
    info = p.allocations.grant(
        PROJECT, site="local", unit="core-hours", amount=10, ends=dt.date(2099, 1, 1)
    )
    assert (info.project, info.kind, info.resource, info.unit) == (
        PROJECT,
        "site",
        "local",
        "core-hours",
    )
    assert (info.amount, info.used, info.remaining, info.state) == (10.0, 0.0, 10.0, "active")
    assert info.active
    assert info.starts_at == today()  # from today ...
    assert info.ends_at == dt.datetime(2099, 1, 1, tzinfo=dt.UTC)  # ... until the end given
    station = p.allocations.grant(PROJECT, station="electrolyte", unit="instrument-hours", amount=2)
    assert station.ends_at - station.starts_at == dt.timedelta(days=365)  # a year by default
    assert p.allocations.show(PROJECT) == [info, station]
    assert p.allocations.list() == [info, station]
    assert p.allocations.show("other") == []
    assert p.allocations.remaining(PROJECT, "site", "local") == {"core-hours": 10.0}
    assert p.allocations.remaining(PROJECT, "station", "reaction-yield") == {}  # not limited


BASE: dict[str, Any] = {"site": "local", "unit": "core-hours", "amount": 10}


@pytest.mark.parametrize(
    ("project", "changes", "field"),
    [
        ("", {}, "project"),
        ("two words", {}, "project"),
        (" battery-lab", {}, "project"),
        ("x" * 201, {}, "project"),
        (PROJECT, {"site": None}, "site"),  # neither a site nor a station
        (PROJECT, {"station": "electrolyte"}, "site"),  # both
        (PROJECT, {"unit": "gpu-hours"}, "unit"),
        (PROJECT, {"unit": "instrument-hours"}, "unit"),  # not on a site
        (PROJECT, {"site": None, "station": "electrolyte"}, "unit"),  # core-hours of a station
        (PROJECT, {"amount": 0}, "amount"),
        (PROJECT, {"amount": -5}, "amount"),
        (PROJECT, {"amount": math.nan}, "amount"),
        (PROJECT, {"amount": math.inf}, "amount"),
        (PROJECT, {"amount": True}, "amount"),
        (PROJECT, {"amount": "10"}, "amount"),
        (PROJECT, {"starts": dt.datetime(2027, 1, 1)}, "starts"),  # no time zone
        (PROJECT, {"ends": "2027-01-01"}, "ends"),
        (PROJECT, {"starts": dt.date(2027, 1, 1), "ends": dt.date(2026, 1, 1)}, "ends"),
        (PROJECT, {"starts": dt.date(2027, 1, 1), "ends": dt.date(2027, 1, 1)}, "ends"),
        (PROJECT, {"ends": dt.datetime(2000, 1, 1, tzinfo=dt.UTC)}, "ends"),  # before today
    ],
)
def test_bad_grants_are_refused_and_nothing_is_stored(
    any_platform: Platform, project: str, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as error:
        any_platform.allocations.grant(project, **{**BASE, **changes})
    assert error.value.field == field
    assert error.value.problem  # says what is wrong
    assert any_platform.allocations.list() == []


@pytest.mark.parametrize("target", [{"site": "nowhere"}, {"station": "nowhere"}])
def test_a_grant_on_an_unknown_site_or_station_is_refused(
    any_platform: Platform, target: dict[str, str]
) -> None:
    kind = next(iter(target))
    unit = "core-hours" if kind == "site" else "instrument-hours"
    with pytest.raises(NotFound, match=f"{kind} nowhere does not exist"):
        any_platform.allocations.grant(PROJECT, unit=unit, amount=1, **target)
    assert any_platform.allocations.list() == []


def test_registered_sites_and_stations_take_grants(any_platform: Platform) -> None:
    any_platform.sites.add("hpc", "local")
    any_platform.stations.add("cell", "simulated", FAST)
    any_platform.allocations.grant(PROJECT, site="hpc", unit="node-hours", amount=5)
    any_platform.allocations.grant(PROJECT, station="cell", unit="instrument-hours", amount=5)
    assert [(a.resource, a.unit) for a in any_platform.allocations.show(PROJECT)] == [
        ("hpc", "node-hours"),
        ("cell", "instrument-hours"),
    ]


def test_granting_again_changes_amount_and_dates_and_keeps_what_was_used(
    any_platform: Platform,
) -> None:
    p = any_platform
    p.stations.add("cell", "simulated", FAST)
    first = p.allocations.grant(PROJECT, station="cell", unit="instrument-hours", amount=1)
    p.stations.handle("cell", project=PROJECT).run(Operation("op-1", POINT)).result(timeout=10)
    used = allocation(p, "cell", "instrument-hours").used
    assert used == pytest.approx(0.02 * SECOND)
    again = p.allocations.grant(
        PROJECT, station="cell", unit="instrument-hours", amount=3, ends=dt.date(2099, 6, 1)
    )
    assert (again.amount, again.used) == (3.0, used)
    assert again.starts_at == first.starts_at  # not given: kept
    assert again.ends_at == dt.datetime(2099, 6, 1, tzinfo=dt.UTC)
    assert len(p.allocations.list()) == 1


def test_only_operators_grant_and_project_members_read(
    any_platform: Platform, genesis_home: Path
) -> None:
    op = any_platform
    op.orgs.create("alpha")
    op.orgs.add_member("alpha", "alice", role="owner", vetting="vetted")
    with Platform.open(genesis_home, principal=Principal("alice", "alpha")) as alice:
        with pytest.raises(AccessDenied):
            alice.allocations.grant(PROJECT, site="local", unit="core-hours", amount=1)
        assert op.allocations.list() == []
        granted = op.allocations.grant(PROJECT, site="local", unit="core-hours", amount=1)
        assert alice.allocations.show(PROJECT) == []  # not her project
        assert op.allocations.show(PROJECT) == [granted]
        op.projects.create(PROJECT, org="alpha")
        op.projects.add_member(PROJECT, "alice@alpha")
        assert alice._ctx.governance is not None
        alice._ctx.governance.refresh(now=True)  # another platform's change, seen at once
        assert alice.allocations.show(PROJECT) == [granted]
        assert alice.allocations.list() == [granted]
    records = op.audit.list(resource=f"allocation:{PROJECT}", action="administer")
    assert [(r.principal, r.decision) for r in records] == [
        (str(op.principal), "allow"),
        ("alice@alpha", "deny"),
    ]
    assert records[0].detail == {
        "op": "grant",
        "site": "local",
        "unit": "core-hours",
        "amount": 1.0,
    }


# -- charging --------------------------------------------------------------------------------


def test_local_tasks_are_charged_as_they_finish(any_platform: Platform) -> None:
    p = any_platform
    p.allocations.grant(PROJECT, site="local", unit="core-hours", amount=1)
    p.allocations.grant(PROJECT, site="local", unit="node-hours", amount=1)
    futures = [sleeper(p, 0.2) for _ in range(3)]
    for future in futures:
        assert future.result(timeout=60)["slept_s"] == 0.2
    tasks = p.tasks.list()  # written (and charged in the same transactions)
    assert [t.project for t in tasks] == [PROJECT] * 3
    core = sum(t.usage["core_seconds"] for t in tasks) * SECOND
    wall = sum(t.usage["wall_seconds"] for t in tasks) * SECOND
    assert wall >= 0.6 * SECOND
    assert allocation(p, "local", "core-hours").used == pytest.approx(core)
    assert allocation(p, "local", "node-hours").used == pytest.approx(wall)
    assert allocation(p, "local", "node-hours").remaining == pytest.approx(1 - wall)


def test_a_batch_of_charges_is_one_update_per_allocation(any_platform: Platform) -> None:
    p = any_platform
    for unit in ("core-hours", "node-hours"):
        p.allocations.grant(PROJECT, site="local", unit=unit, amount=1)
    usage = {"core_seconds": 36.0, "wall_seconds": 72.0}
    charges = [p.allocations.charge_task(PROJECT, "local", usage, nodes=1) for _ in range(5)]
    assert p.allocations.charge_task("other", "local", usage, nodes=1) is None
    updates: list[tuple[bool, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE ALLOCATIONS"):
            updates.append((many, params))

    event.listen(p._db.engine, "before_cursor_execute", seen)
    try:
        with p._db.engine.begin() as connection:
            p.allocations.apply(connection, [c for c in charges if c is not None])
    finally:
        event.remove(p._db.engine, "before_cursor_execute", seen)
    [(many, params)] = updates
    assert many and len(params) == 2  # one statement, one row per allocation
    assert allocation(p, "local", "core-hours").used == pytest.approx(0.05)
    assert allocation(p, "local", "node-hours").used == pytest.approx(0.1)


def test_failed_tasks_are_charged_too(any_platform: Platform) -> None:
    p = any_platform
    p.allocations.grant(PROJECT, site="local", unit="node-hours", amount=1)
    future = p.tasks.submit(
        function=f"{FUNCTIONS}:always_fails",
        project=PROJECT,
        resources=Resources(walltime_s=60),
    )
    with pytest.raises(TaskFailed, match="always_fails"):
        future.result(timeout=60)
    [task] = p.tasks.list()
    assert task.state == "failed"
    assert allocation(p, "local", "node-hours").used == pytest.approx(
        task.usage.get("wall_seconds", 0.0) * SECOND
    )


def test_work_of_projects_without_allocations_costs_nothing(
    any_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = any_platform
    p.stations.add("cell", "simulated", FAST)
    p.stations.add("cell-2", "simulated", FAST)
    p.sites.add("hpc", "local", {})
    p.allocations.grant(PROJECT, site="hpc", unit="core-hours", amount=1)  # elsewhere
    p.allocations.grant(PROJECT, station="cell-2", unit="instrument-hours", amount=1)
    applied: list[Any] = []
    monkeypatch.setattr(AllocationService, "apply", lambda self, c, charges: applied.append(c))
    for project in ("other", ""):
        sleeper(p, project=project).result(timeout=60)
        handle = p.stations.handle("cell", project=project)
        handle.run(Operation(f"op-{project}", POINT)).result(timeout=10)
    p.tasks.list()
    p.stations.operations()
    assert applied == []  # not one UPDATE
    assert [a.used for a in p.allocations.show(PROJECT)] == [0.0, 0.0]


def test_an_allocated_resource_serves_only_its_projects(any_platform: Platform) -> None:
    p = any_platform
    p.stations.add("cell", "simulated", FAST)
    p.allocations.grant(PROJECT, site="local", unit="core-hours", amount=1)
    p.allocations.grant(PROJECT, station="cell", unit="instrument-hours", amount=1)
    for project in ("other", ""):
        with pytest.raises(AllocationExceeded, match="has no allocation on it"):
            sleeper(p, project=project)
        handle = p.stations.handle("cell", project=project)
        with pytest.raises(AllocationExceeded, match="station cell is allocated to projects"):
            handle.run(Operation(f"op-{project}", POINT)).result(timeout=10)
    assert count(p, TaskRow) == 0


def test_station_operations_are_charged_and_refused_once_nothing_is_left(
    any_platform: Platform,
) -> None:
    p = any_platform
    p.stations.add("cell", "simulated", FAST)
    amount = 0.09 * SECOND  # about 5 operations of 0.02 s
    p.allocations.grant(PROJECT, station="cell", unit="instrument-hours", amount=amount)
    handle = p.stations.handle("cell", project=PROJECT)
    ran = 0
    with pytest.raises(AllocationExceeded) as error:
        for i in range(50):
            handle.run(Operation(f"op-{i}", POINT)).result(timeout=10)
            ran += 1
    assert 4 <= ran <= 6
    message = str(error.value)
    assert f"project {PROJECT} has 0 of 0.000025 instrument-hours left on station cell" in message
    assert "ask an operator for more with `genesis allocation grant`" in message
    assert (error.value.remaining, error.value.field) == (0.0, "allocation")
    ops = p.stations.operations(station="cell", limit=100)
    assert len(ops) == ran  # the refused one was neither queued nor recorded
    used = allocation(p, "cell", "instrument-hours").used
    assert used == pytest.approx(sum(o.instrument_seconds for o in ops) * SECOND)
    assert used >= amount
    assert p.allocations.remaining(PROJECT, "station", "cell") == {"instrument-hours": 0.0}


# -- refusing before anything runs ------------------------------------------------------------


def test_a_task_that_could_exceed_what_is_left_is_refused_before_it_is_stored(
    any_platform: Platform,
) -> None:
    p = any_platform
    p.allocations.grant(
        PROJECT, site="local", unit="core-hours", amount=0.5, ends=dt.date(2099, 1, 1)
    )
    with pytest.raises(AllocationExceeded) as error:
        sleeper(p, walltime_s=3600)
    assert str(error.value) == (
        f"project {PROJECT} has 0.5 of 0.5 core-hours left on site local until 2099-01-01; "
        "this task asks for up to 1 core-hours (1 core \N{MULTIPLICATION SIGN} 1 h walltime); "
        "ask an operator for more with `genesis allocation grant`"
    )
    assert (error.value.remaining, error.value.needs, error.value.unit) == (0.5, 1.0, "core-hours")
    assert count(p, TaskRow) == 0  # nothing stored, nothing submitted
    assert sleeper(p, walltime_s=1800).result(timeout=60)["slept_s"] == 0  # half an hour fits


def test_tasks_still_running_hold_their_worst_case(any_platform: Platform) -> None:
    p = any_platform
    p.allocations.grant(PROJECT, site="local", unit="core-hours", amount=45 * SECOND)
    first = sleeper(p, 1.0, walltime_s=30)  # holds 30 core-seconds
    with pytest.raises(AllocationExceeded) as error:
        sleeper(p, walltime_s=30)
    assert "has 0.004167 of 0.0125 core-hours left" in str(error.value)
    assert "(0.008333 more held by its tasks running here)" in str(error.value)
    first.result(timeout=60)
    p.tasks.list()  # its charge is written: its hold released
    sleeper(p, walltime_s=30).result(timeout=60)
    assert count(p, TaskRow) == 2


def test_a_renewed_hold_keeps_what_the_attempt_used_and_a_refused_one_changes_nothing(
    any_platform: Platform,
) -> None:
    p = any_platform
    p.allocations.grant(PROJECT, site="local", unit="core-hours", amount=100 * SECOND)
    needs = {"core-hours": 60 * SECOND}
    first = p.allocations.hold(PROJECT, "site", "local", needs)
    assert first is not None
    charge, following = p.allocations.renew(first, {"core-hours": 30 * SECOND}, needs)
    spent = charge.hold
    assert spent is not None
    assert charge.used == spent.needs == {"core-hours": pytest.approx(30 * SECOND)}
    with pytest.raises(AllocationExceeded, match=r"0\.025 more held"):  # 30 + 60 core-s
        p.allocations.check(PROJECT, "site", "local", needs={"core-hours": 11 * SECOND})
    with pytest.raises(AllocationExceeded):  # 100 - 30 - 50 left: not another 60
        p.allocations.renew(following, {"core-hours": 50 * SECOND}, needs)
    p.allocations.check(PROJECT, "site", "local", needs={"core-hours": 9 * SECOND})  # as before
    with pytest.raises(AllocationExceeded, match=r"0\.025 more held"):
        p.allocations.check(PROJECT, "site", "local", needs={"core-hours": 11 * SECOND})
    p.allocations.release(spent)
    p.allocations.release(following)
    p.allocations.check(PROJECT, "site", "local", needs={"core-hours": 100 * SECOND})


def test_a_task_without_walltime_counts_at_the_sites_default_or_is_refused(
    any_platform: Platform,
) -> None:
    p = any_platform
    p.sites.add("hpc", "local", {"default_walltime_s": 60})
    p.allocations.grant(PROJECT, site="local", unit="core-hours", amount=1)
    p.allocations.grant(PROJECT, site="hpc", unit="core-hours", amount=90 * SECOND)
    with pytest.raises(AllocationExceeded) as error:
        sleeper(p, walltime_s=None)
    assert error.value.field == "resources.walltime_s"
    assert "gives no walltime" in str(error.value) and "default_walltime_s" in str(error.value)
    sleeper(p, site="hpc", walltime_s=None).result(timeout=60)
    [task] = p.tasks.list()
    assert task.spec.resources.walltime_s == 60  # the site's default is its walltime
    p.allocations.grant(PROJECT, site="hpc", unit="core-hours", amount=30 * SECOND)
    with pytest.raises(AllocationExceeded, match="1 min default walltime of site hpc"):
        sleeper(p, site="hpc", walltime_s=None)
    assert count(p, TaskRow) == 1
    with pytest.raises(AllocationExceeded, match="project other has no allocation on it"):
        sleeper(p, project="other", walltime_s=None)  # no way around the limit


def test_an_allocation_outside_its_dates_refuses(any_platform: Platform) -> None:
    p = any_platform
    with pytest.raises(InvalidInput, match="ends: 2021-01-01 is past"):
        p.allocations.grant(
            PROJECT,
            site="local",
            unit="core-hours",
            amount=10,
            starts=dt.date(2020, 1, 1),
            ends=dt.date(2021, 1, 1),
        )
    p.allocations.grant(
        PROJECT,
        site="local",
        unit="core-hours",
        amount=10,
        starts=dt.date(2020, 1, 1),
        ends=dt.date(2030, 1, 1),
    )
    with p._db.session() as s:  # time passes: the grant ended
        s.execute(update(AllocationRow).values(ends_at=dt.datetime(2021, 1, 1, tzinfo=dt.UTC)))
    p.allocations.grant(
        PROJECT,
        station="electrolyte",
        unit="instrument-hours",
        amount=10,
        starts=dt.date(2099, 1, 1),
        ends=dt.date(2100, 1, 1),
    )
    with pytest.raises(AllocationExceeded) as error:
        sleeper(p)
    assert str(error.value).startswith(
        f"project {PROJECT}'s allocation of 10 core-hours on site local ended on 2021-01-01"
    )
    handle = p.stations.handle("electrolyte", project=PROJECT)
    refused = handle.run(Operation("op-1", POINT))
    with pytest.raises(AllocationExceeded, match="on station electrolyte starts on 2099-01-01"):
        refused.result(timeout=5)
    assert count(p, TaskRow) == 0 and count(p, StationOperationRow) == 0
    states = {a.unit: (a.state, a.active) for a in p.allocations.show(PROJECT)}
    assert states == {"core-hours": ("expired", False), "instrument-hours": ("not started", False)}
    assert p.allocations.remaining(PROJECT, "site", "local") == {"core-hours": 0.0}


def test_a_grant_made_by_another_process_applies_within_a_second(
    any_platform: Platform, genesis_home: Path
) -> None:
    p = any_platform
    sleeper(p).result(timeout=60)  # not limited; the cache is read
    with Platform.open(genesis_home) as other:
        other.allocations.grant(PROJECT, site="local", unit="core-hours", amount=SECOND)
    time.sleep(allocations.REFRESH_S + 0.1)
    with pytest.raises(AllocationExceeded):
        sleeper(p)


# -- campaigns ---------------------------------------------------------------------------------


def campaign_spec(runner: dict[str, Any], trials: int, parallel: int) -> dict[str, Any]:
    return {
        "name": "screen",
        "project": PROJECT,
        "space": {
            "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
            "temperature_c": {"type": "int", "low": 10, "high": 60},
            "solvent": {"type": "choice", "values": ["EC-DMC", "PC"]},
        },
        "objectives": {"conductivity": "max"},
        "planner": "random",
        "runner": runner,
        "budget": {"trials": trials, "parallel": parallel},
        "seed": 3,
    }


def test_a_campaign_whose_station_allocation_runs_out_stops_with_the_reason(
    platform: Platform,
) -> None:
    p = platform
    amount = 0.09 * SECOND
    p.allocations.grant(PROJECT, station="electrolyte", unit="instrument-hours", amount=amount)
    runner = {"station": "electrolyte", "options": {"latency_s": 0.02, "latency_jitter": 0.0}}
    campaign = p.campaigns.create(campaign_spec(runner, trials=30, parallel=1))
    info = campaign.run()
    assert info.state == "stopped"
    assert info.stop_reason.startswith(
        f"allocation exhausted: project {PROJECT} has 0 of 0.000025 instrument-hours left on "
        "station electrolyte"
    )
    assert 3 <= info.n_observed < 30 and info.n_failed == 0 and info.n_canceled == 1
    [canceled] = [t for t in campaign.trials() if t.state == "canceled"]
    assert canceled.error == f"not run: {info.stop_reason}"
    assert allocation(p, "electrolyte", "instrument-hours").used >= amount * 0.99
    # An operator grants more: the campaign goes on to its budget.
    p.allocations.grant(PROJECT, station="electrolyte", unit="instrument-hours", amount=1)
    info = p.campaigns.resume(campaign.id).run()
    assert (info.state, info.n_observed, info.n_failed) == ("completed", 30, 0)


def test_a_campaign_refused_on_its_site_stops_and_runs_nothing_more(platform: Platform) -> None:
    p = platform
    p.sites.add("hpc", "local", {"default_walltime_s": 60})
    p.allocations.grant(PROJECT, site="hpc", unit="core-hours", amount=90 * SECOND)
    runner = {"site": "hpc", "function": f"{FUNCTIONS}:electrolyte_simulation"}
    campaign = p.campaigns.create(campaign_spec(runner, trials=10, parallel=2))
    info = campaign.run()
    # The first trial holds a minute; the second does not fit in the 30 s left.
    assert (info.state, info.n_observed, info.n_failed, info.n_canceled) == ("stopped", 1, 0, 1)
    assert "(0.01667 more held by its tasks running here)" in info.stop_reason
    assert "asks for up to 0.01667 core-hours" in info.stop_reason
    assert "(1 core \N{MULTIPLICATION SIGN} 1 min default walltime of site hpc)" in info.stop_reason
    assert count(p, TaskRow) == 1  # the refused trial's task was never stored


def test_canceled_work_is_charged_for_the_cores_it_held(any_platform: Platform) -> None:
    p = any_platform
    p.allocations.grant(PROJECT, site="local", unit="core-hours", amount=1)
    future = sleeper(p, seconds=30, cores=2)
    deadline = time.monotonic() + 30
    while p.tasks.list()[0].state != "active" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    future.cancel()
    deadline = time.monotonic() + 30
    while allocation(p, "local", "core-hours").used == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    [task] = p.tasks.list()
    assert task.state == "canceled"
    assert task.usage["estimated"] == 1.0 and task.usage["wall_seconds"] >= 1.0
    used = allocation(p, "local", "core-hours").used
    assert used == pytest.approx(2 * task.usage["wall_seconds"] / 3600)  # 2 cores held


def test_a_cancel_while_a_retry_is_being_sent_stops_it_and_charges_once(
    any_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = any_platform
    p.sites.add("flaky", "local", {"retries": 1, "retry_backoff_s": 0.05})
    p.allocations.grant(PROJECT, site="flaky", unit="core-hours", amount=1)
    executor = p.sites.executor("flaky")
    sending, release, sent = threading.Event(), threading.Event(), []

    def slow_second_submit(spec: Any) -> Any:
        if sent:  # the retry: held while the test cancels
            sending.set()
            release.wait(30)
        sent.append(executor_submit(spec))
        return sent[-1]

    executor_submit = executor.submit
    monkeypatch.setattr(executor, "submit", slow_second_submit)
    future = p.tasks.submit(
        "flaky",
        function=f"{FUNCTIONS}:exits_abruptly",
        project=PROJECT,
        resources=Resources(walltime_s=60, cores=2),
    )
    try:
        assert sending.wait(60), "the transient failure was not retried"
        assert future.cancel()
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while not (len(sent) == 2 and sent[1].done()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sent[1].cancelled()  # the retry sent during the cancel was stopped
    [task] = p.tasks.list()
    assert task.state == "canceled"
    assert task.external_id == sent[1].external_id  # the stopped attempt can be found
    used = allocation(p, "flaky", "core-hours").used
    assert used > 0  # the first attempt's cores, for as long as it ran
    assert used == pytest.approx(task.usage["core_seconds"] * SECOND)  # charged once


def failed_attempts(p: Platform, grant_hours: float) -> Any:
    """The record of a task whose every attempt (up to 3) fails transiently after 0.3 s, on
    2 cores x 60 s walltime (120 core-s each at worst), under a grant of ``grant_hours``."""
    p.sites.add("flaky", "local", {"retries": 2, "retry_backoff_s": 0.05})
    p.allocations.grant(PROJECT, site="flaky", unit="core-hours", amount=grant_hours)
    future = p.tasks.submit(
        "flaky",
        function=f"{FUNCTIONS}:sleep_then_exit_abruptly",
        kwargs={"seconds": 0.3},
        project=PROJECT,
        resources=Resources(walltime_s=60, cores=2),
    )
    with pytest.raises(TransientFailure):
        future.result(timeout=120)
    [task] = p.tasks.list()
    assert task.usage["core_seconds"] == pytest.approx(2 * task.usage["wall_seconds"])
    used = allocation(p, "flaky", "core-hours").used
    assert used == pytest.approx(task.usage["core_seconds"] * SECOND)  # all, once
    return task


def test_each_attempt_of_a_retried_task_is_charged_and_needs_a_hold(
    any_platform: Platform,
) -> None:
    # Room for 1.9 attempts' worst case: each retry fits beside what the earlier attempts
    # used, as a finished attempt's own hold is not counted against the next one.
    task = failed_attempts(any_platform, grant_hours=1.9 * 120 * SECOND)
    assert task.attempts == 3
    assert task.usage["wall_seconds"] >= 3 * 0.3  # every attempt, held on 2 cores


def test_a_retry_the_allocation_cannot_hold_is_not_sent(any_platform: Platform) -> None:
    # One attempt's worst case and 0.3 core-s: the first attempt fits and uses at least
    # 0.6 core-s (0.3 s on 2 cores), after which a second one's worst case does not.
    task = failed_attempts(any_platform, grant_hours=120.3 * SECOND)
    assert (task.state, task.attempts) == ("failed", 1)
    assert "not retried" in task.error and "core-hours" in task.error
    assert task.usage["wall_seconds"] >= 0.3


def test_a_charge_that_cannot_be_worked_out_still_finishes_the_task(
    any_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = any_platform
    p.allocations.grant(PROJECT, site="local", unit="core-hours", amount=1)

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the allocations cannot be read")

    monkeypatch.setattr(p.allocations, "charge_task", unreadable)
    assert sleeper(p, 0.1).result(timeout=60)["slept_s"] == 0.1
    [task] = p.tasks.list()
    assert task.state == "completed"
    sleeper(p, 0.1).result(timeout=60)
    assert [t.state for t in p.tasks.list()] == ["completed", "completed"]  # both written
    # and their holds released all the same: the whole grant can be held again
    p.allocations.check(PROJECT, "site", "local", needs={"core-hours": 1 - 1e-6})
