"""Batched writes of task records: one transaction per batch, from one thread.

Recording every task in the catalog must not cap throughput at one SQLite commit per state
change. The recorder queues new records and state changes; its thread drains the queue and
writes everything pending in one transaction (new rows with their audit records first,
then the updates, coalesced per task). A new task is dispatched only after the transaction
holding its record committed, so a task is never running without a record: new rows are
written at once. A state change waits a moment for others to share its transaction (a
transaction costs more than the rows in it): a task's final state and a batch job's id
``_SOON_S``, others (``queued``, ``active``) up to ``_UPDATE_DELAY_S``, unless something due
comes first.
Readers of the task service flush before they read.

A finished task's charge to its project's allocation
(:mod:`~genesis_platform.governance.allocations`) is written in the transaction of its final
state, and its hold released once that committed; a task of a project without allocations
has no charge.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, Update, bindparam, insert, update
from sqlalchemy.exc import DBAPIError

from genesis_platform.catalog.tables import TaskRow
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.governance.allocations import AllocationService, Charge

__all__ = ["Recorder"]

_log = logging.getLogger(__name__)
_RETRY_S = 0.5
"""After a failed write (e.g. the database is locked), wait this long before the next."""
_GATHER_S = 0.002
"""While tasks come in faster than one per transaction, how long new rows may gather."""
_UPDATE_DELAY_S = 0.05
"""How long a state change may wait for others to share its transaction."""
_SOON_S = 0.002
"""The same for an urgent change (a final state): long enough not to slow its waiter's wake-up."""


@dataclass
class _Insert:
    values: dict[str, Any]
    then: Callable[[int], None]
    fail: Callable[[BaseException], object]


class Recorder:
    """Writes task records for one task service."""

    def __init__(self, ctx: ServiceContext, allocations: AllocationService | None = None) -> None:
        self._ctx = ctx
        self._allocations = allocations
        self._inserts: list[_Insert] = []
        self._updates: dict[int, dict[str, Any]] = {}
        self._charges: list[Charge] = []
        self._updates_due = 0.0  # monotonic time by which the pending updates are written
        self._cond = threading.Condition()
        self._written = 0  # batches written
        self._queued = 0  # batches asked for (a flush waits for this one)
        self._closed = False
        self._busy = False  # the last batch had more than one change
        self._connection: Connection | None = None  # the writer thread's
        self._thread = threading.Thread(target=self._loop, name="genesis-task-records", daemon=True)
        self._thread.start()

    def insert(
        self,
        values: Mapping[str, Any],
        then: Callable[[int], None],
        fail: Callable[[BaseException], object],
    ) -> None:
        """Store a new task row; call ``then(task_id)`` after it committed (or ``fail``)."""
        with self._cond:
            self._inserts.append(_Insert(dict(values), then, fail))
            self._cond.notify()

    def update(
        self,
        task_id: int,
        values: Mapping[str, Any],
        *,
        soon: bool = False,
        charge: Charge | None = None,
    ) -> None:
        """Change task ``task_id``'s row (merged with earlier changes not yet written).

        Args:
            task_id: The row.
            values: Columns and their new values.
            soon: Written within ``_SOON_S``, not ``_UPDATE_DELAY_S``: a task's final
                state, or the id of a batch job that recovery needs.
            charge: The finished task's charge to its project's allocation, written in
                the same transaction.
        """
        due = time.monotonic() + (_SOON_S if soon else _UPDATE_DELAY_S)
        with self._cond:
            if charge is not None:
                self._charges.append(charge)
            if not self._updates or due < self._updates_due:
                self._updates_due = due
                self._cond.notify()
            self._updates.setdefault(task_id, {}).update(values)

    def is_writer_thread(self) -> bool:
        """Whether the calling thread is the one that writes (its callbacks run there)."""
        return threading.current_thread() is self._thread

    def flush(self) -> None:
        """Block until everything queued before this call is written.

        From the writer's own thread (a callback of a write), return at once: what is
        queued is written right after.
        """
        if threading.current_thread() is self._thread:
            return
        with self._cond:
            self._queued += 1
            target = self._queued
            self._cond.notify()
            while self._written < target and self._thread.is_alive():
                self._cond.wait(0.1)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while (wait := self._wait_s()) is not None:
                    self._cond.wait(wait)
                if self._closed and not (self._inserts or self._updates):
                    self._disconnect()
                    return
                if self._busy and self._inserts and self._written >= self._queued:
                    # Under load, let new rows gather: fewer, larger transactions.
                    self._cond.wait(_GATHER_S)
                inserts, self._inserts = self._inserts, []
                updates, self._updates = self._updates, {}
                charges, self._charges = self._charges, []
                target = self._queued
            written = self._write(inserts, updates, charges)
            self._busy = len(inserts) > 1
            if not written:  # put the changes back (newer ones win) and try again soon
                with self._cond:
                    if updates and not self._updates:
                        self._updates_due = time.monotonic()
                    for task_id, values in updates.items():
                        self._updates[task_id] = {**values, **self._updates.get(task_id, {})}
                    self._charges[:0] = charges
                time.sleep(_RETRY_S)
                continue
            with self._cond:
                self._written = max(self._written, target)
                self._cond.notify_all()

    def _wait_s(self) -> float | None:
        """How long the writer may still wait (None: write now); call holding the lock."""
        if self._inserts or self._closed or self._written < self._queued:
            return None
        if not self._updates:
            return 60.0  # nothing to write: sleep until notified
        left = self._updates_due - time.monotonic()
        return left if left > 0 else None

    def _connect(self) -> Connection:
        """The writer thread's connection, kept between batches.

        A checkout from the pool costs more than a small batch's statements.
        """
        if self._connection is None or self._connection.invalidated:
            self._disconnect()
            self._connection = self._ctx.db.engine.connect()
        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.close()
            except Exception:
                _log.exception("closing the task records' connection failed")

    def _write(
        self, inserts: list[_Insert], updates: dict[int, dict[str, Any]], charges: list[Charge]
    ) -> bool:
        """One transaction; False (changes not written, to be retried) if it failed.

        New rows that could not be written fail their tasks instead: those never ran. A
        connection the database dropped while idle (e.g. a PostgreSQL restart) is replaced
        and the transaction tried once more, as the pool's pre-ping would have; only when a
        statement failed, never the commit (which the server may have done).
        """
        if not (inserts or updates):
            return True
        try:
            try:
                ids = self._transaction(inserts, updates, charges)
            except DBAPIError as exc:
                if not exc.connection_invalidated or exc.statement is None:
                    raise
                _log.warning("the task records' connection was lost (%s); reconnecting", exc.orig)
                self._disconnect()
                ids = self._transaction(inserts, updates, charges)
        except Exception as exc:
            _log.exception(
                "task records not written: %d new, %d changed", len(inserts), len(updates)
            )
            self._disconnect()  # the next batch starts on a fresh connection
            for pending in inserts:
                _call(pending.fail, exc)
            return not updates
        if charges and self._allocations is not None:
            self._allocations.settle(charges)
        for pending, task_id in zip(inserts, ids, strict=True):
            _call(pending.then, task_id)
        return True

    def _transaction(
        self, inserts: list[_Insert], updates: dict[int, dict[str, Any]], charges: list[Charge]
    ) -> list[int]:
        """Write the batch in one transaction; the new rows' ids."""
        ids: list[int] = []
        connection = self._connect()
        with connection.begin():
            if charges and self._allocations is not None:
                # First: allocation rows are locked before the audit head, as grants do.
                self._allocations.apply(connection, charges)
            if inserts:
                rows = [i.values for i in inserts]
                if len(rows) == 1:  # the usual case when idle: on SQLite, no RETURNING
                    key = connection.execute(_INSERT_TASK, rows[0]).inserted_primary_key
                    assert key is not None  # an INSERT of one row
                    ids = [int(key[0])]
                else:
                    ids = list(connection.scalars(_INSERT_TASKS, rows))
                self._ctx.audit.append_many(
                    connection,
                    self._ctx.principal,
                    [
                        ("run", Resource("site", row["site"]), {"task": task_id})
                        for row, task_id in zip(rows, ids, strict=True)
                    ],
                )
            for keys, group in _by_keys(updates).items():  # an executemany per column set
                connection.execute(_update_statement(keys), group)
        return ids


def _call(callback: Callable[[Any], object], argument: Any) -> None:
    """Run a write's callback; its failure must not stop the writer."""
    try:
        callback(argument)
    except Exception:
        _log.exception("a task record callback failed")


_Rows = list[dict[str, Any]]
_TASKS = cast(Table, TaskRow.__table__)
# Core statements, not the ORM's bulk paths: at thousands of tasks a second, the ORM's
# per-row bookkeeping costs more than SQLite itself; built once, as building one costs more
# than running it.
_INSERT_TASKS = insert(_TASKS).returning(_TASKS.c.id, sort_by_parameter_order=True)
_INSERT_TASK = insert(_TASKS)


def _by_keys(updates: Mapping[int, Mapping[str, Any]]) -> dict[frozenset[str], _Rows]:
    """Updates grouped by the columns they set, each with its primary key as ``task_id``."""
    groups: dict[frozenset[str], _Rows] = {}
    for task_id, values in updates.items():
        groups.setdefault(frozenset(values), []).append({"task_id": task_id, **values})
    return groups


@functools.lru_cache(maxsize=64)
def _update_statement(keys: frozenset[str]) -> Update:
    """``UPDATE tasks SET k = :k, ... WHERE id = :task_id`` for the columns ``keys``."""
    return (
        update(_TASKS)
        .where(_TASKS.c.id == bindparam("task_id"))
        .values({key: bindparam(key, type_=_TASKS.c[key].type) for key in sorted(keys)})
    )
