"""The task records' writer: new rows before dispatch, changes batched but never lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from genesis_platform import Platform
from genesis_platform.catalog.tables import TaskRow, utcnow
from genesis_platform.compute import _recorder
from genesis_platform.compute._recorder import Recorder
from genesis_platform.compute._serial import SerialWorker
from tests.catalogs import PostgresServer


def stored_name(platform: Platform, task_id: int) -> str | None:
    """Task ``task_id``'s name as another reader of the catalog sees it now."""
    with platform._db.session(write=False) as s:
        return s.scalar(select(TaskRow.name).where(TaskRow.id == task_id))


def new_task(recorder: Recorder) -> int:
    """Insert one task row through ``recorder``; its id once committed."""
    stored: list[int] = []
    done = threading.Event()

    def then(task_id: int) -> None:
        stored.append(task_id)
        done.set()

    values = {"site": "local", "name": "first", "spec": {}, "owner": "test", "project": ""}
    values |= {"submitted_by": "test", "submitted_at": utcnow()}
    recorder.insert(values, then, lambda error: pytest.fail(f"not stored: {error}"))
    assert done.wait(10), "the new row was not written"
    return stored[0]


def eventually(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def recorder(platform: Platform) -> Any:
    writer = Recorder(platform.tasks._ctx)
    yield writer
    writer.close()


def test_a_change_is_written_without_a_flush(platform: Platform, recorder: Recorder) -> None:
    task_id = new_task(recorder)
    assert stored_name(platform, task_id) == "first"
    recorder.update(task_id, {"name": "second"})
    assert eventually(lambda: stored_name(platform, task_id) == "second")


def test_a_flush_writes_a_delayed_change_at_once(
    platform: Platform, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_recorder, "_UPDATE_DELAY_S", 3600.0)
    task_id = new_task(recorder)
    recorder.update(task_id, {"name": "second"})
    recorder.update(task_id, {"state": "active"})  # merged with the change before it
    recorder.flush()
    with platform._db.session(write=False) as s:
        row = s.scalars(select(TaskRow).where(TaskRow.id == task_id)).one()
        assert (row.name, row.state) == ("second", "active")


def test_a_final_state_does_not_wait_for_the_delay_of_other_changes(
    platform: Platform, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_recorder, "_UPDATE_DELAY_S", 3600.0)
    first, second = new_task(recorder), new_task(recorder)
    recorder.update(first, {"name": "waits"})
    recorder.update(second, {"name": "done"}, soon=True)
    assert eventually(lambda: stored_name(platform, second) == "done")
    assert stored_name(platform, first) == "waits"  # it shared the final state's transaction


def test_a_new_row_is_written_although_changes_wait(
    platform: Platform, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_recorder, "_UPDATE_DELAY_S", 3600.0)
    first = new_task(recorder)
    recorder.update(first, {"name": "waits"})
    second = new_task(recorder)  # would time out if the new row waited with the change
    assert stored_name(platform, second) == "first"


def test_close_writes_what_is_pending(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_recorder, "_UPDATE_DELAY_S", 3600.0)
    writer = Recorder(platform.tasks._ctx)
    task_id = new_task(writer)
    writer.update(task_id, {"name": "last words"})
    writer.close()
    assert stored_name(platform, task_id) == "last words"


def test_the_serial_worker_runs_calls_in_order_past_a_failing_one() -> None:
    worker = SerialWorker("test-serial")
    seen: list[int] = []

    def fail() -> None:
        raise RuntimeError("boom")

    worker.submit(seen.append, 1)
    worker.submit(fail)
    worker.submit(seen.append, 2)
    worker.shutdown(wait=True)
    assert seen == [1, 2]
    with pytest.raises(RuntimeError, match="after shutdown"):
        worker.submit(seen.append, 3)


@pytest.fixture
def pg_platform(
    postgres_server: PostgresServer, genesis_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    url = postgres_server.new_database(migrated=True)
    monkeypatch.setenv("GENESIS_CATALOG_URL", url)
    with Platform.open(genesis_home) as p:
        yield p
    postgres_server.drop_database(url)


def test_a_connection_the_server_ended_is_replaced_and_no_record_is_lost(
    pg_platform: Platform,
) -> None:
    writer = Recorder(pg_platform.tasks._ctx)
    first = new_task(writer)  # the writer keeps its connection
    with pg_platform._db.engine.connect() as connection:  # as a server restart would
        ended = connection.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    assert ended >= 1
    second = new_task(writer)
    assert second > first
    assert stored_name(pg_platform, second) == "first"
    writer.close()
