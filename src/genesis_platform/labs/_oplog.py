"""Station operation records, written by one thread in batches.

A station's scheduler records each operation three times: queued, handed to the driver,
ended. Writing each in its own transaction on the caller's thread put three commits on
the path of every operation. Here the first two are queued for a writer thread, which
writes everything pending in one transaction (with the audit records of new operations);
the end of an operation is written on the thread that learns it, and a refusal waits for
the writer, so whoever learns the outcome can read it in the catalog.

An operation's instrument time is charged to its project's allocation on the station
(:mod:`~genesis_platform.governance.allocations`) in the transaction that writes its end:
one UPDATE per allocation per batch, and nothing for a project without allocations.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, update

from genesis_platform.catalog.tables import StationOperationRow, utcnow
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.governance.allocations import AllocationService, Charge
from genesis_platform.governance.audit import AuditEntry
from genesis_platform.labs.protocols import Measurement, Operation

__all__ = ["OperationRecords"]

_log = logging.getLogger(__name__)
_OPS = cast(Table, StationOperationRow.__table__)


@dataclass
class _Write:
    apply: Callable[[Connection], AuditEntry | None]
    urgent: bool = False
    done: threading.Event = field(default_factory=threading.Event)


_GATHER_S = 0.05
"""How long a new operation's record may wait for others (and for its own end) to share a
transaction; an operation that ends sooner is written once, complete."""


class OperationRecords:
    """The ``OperationLog`` of the schedulers of one station service.

    Args:
        ctx: The service's context.
        ends_wait: Write an operation's end before the scheduler settles its future (so
            another process reading the catalog sees it). Without it, the end joins the
            writer's next batch (within ``_GATHER_S``): for a campaign's private station,
            whose outcome only that campaign awaits.
        allocations: Where operations' instrument time is charged (None: nowhere).
    """

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        ends_wait: bool = True,
        allocations: AllocationService | None = None,
    ) -> None:
        self._ctx = ctx
        self._ends_wait = ends_wait
        self._allocations = allocations
        self._who: dict[int, tuple[str, str]] = {}  # token -> (station, project), until its end
        self._charges: dict[int, Charge] = {}  # token -> the charge its unwritten row carries
        self._batch: list[Charge] | None = None  # the writer's batch's charges, while writing
        self._tokens = itertools.count(1)
        self._ids: dict[int, int] = {}  # token -> row id (the writer adds, the end removes)
        self._unwritten: dict[int, tuple[dict[str, Any], AuditEntry]] = {}  # token -> new row
        self._started: dict[int, Any] = {}  # token -> when it was handed to the driver
        self._pending: list[_Write] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="genesis-station-ops", daemon=True)
        self._thread.start()

    # -- the OperationLog protocol -------------------------------------------------------

    def queued(self, station: str, op: Operation, project: str, priority: int) -> int:
        token = next(self._tokens)
        values = self._row(station, op, project, priority, "queued")
        detail = {"operation": op.id, "project": project}
        entry = AuditEntry("run", Resource("station", station), detail)

        def write(connection: Connection) -> AuditEntry | None:
            with self._cond:
                claimed = self._unwritten.pop(token, None)
                charge = self._charges.pop(token, None)
            if claimed is None:
                return None  # it ended first and was written complete
            row, audit = claimed
            self._ids[token] = int(connection.scalar(insert(_OPS).returning(_OPS.c.id), row))
            if charge is not None:  # it ended too: the row is complete
                self._charge(connection, charge)
            return audit

        if self._allocations is not None:
            self._who[token] = (station, project)
        with self._cond:
            self._unwritten[token] = (values, entry)
        self._put(_Write(write))
        return token

    def refused(
        self, station: str, op: Operation, project: str, priority: int, reason: str
    ) -> None:
        values = self._row(station, op, project, priority, "refused")
        values.update(error=reason, finished_at=utcnow())
        detail = {"operation": op.id, "project": project, "refused": reason}
        entry = AuditEntry("run", Resource("station", station), detail)

        def write(connection: Connection) -> AuditEntry:
            connection.execute(insert(_OPS), values)
            return entry

        self._put(_Write(write, urgent=True), wait=True)

    def started(self, record_id: int) -> None:
        values: dict[str, Any] = {"state": "running", "started_at": utcnow()}
        self._started[record_id] = values["started_at"]
        with self._cond:
            unwritten = self._unwritten.get(record_id)
            if unwritten is not None:
                unwritten[0].update(values)
                return
        self._put(_Write(self._update(record_id, **values)))

    def finished(
        self,
        record_id: int,
        state: str,
        *,
        seconds: float,
        measurement: Measurement | None = None,
        error: str = "",
    ) -> None:
        values: dict[str, Any] = {
            "state": state,
            "finished_at": utcnow(),
            "instrument_seconds": seconds,
            "error": error,
        }
        if measurement is not None:
            values["values"] = {k: float(v) for k, v in measurement.values.items()}
            values["external_id"] = measurement.external_id
        started_at = self._started.pop(record_id, None)
        if started_at is not None:  # the start's own write may still be pending
            values["started_at"] = started_at
        charge = None
        if self._allocations is not None:
            station, project = self._who.pop(record_id, ("", ""))
            charge = self._allocations.charge_operation(project, station, seconds)
        if not self._ends_wait:
            with self._cond:
                unwritten = self._unwritten.get(record_id)
                if unwritten is not None:  # written once, complete, with the next batch
                    unwritten[0].update(values)
                    self._started.pop(record_id, None)
                    if charge is not None:
                        self._charges[record_id] = charge
                    return
            self._put(_Write(self._update(record_id, charge, **values)))
            return
        with self._cond:
            unwritten = self._unwritten.pop(record_id, None)
        # Written on this thread: a hand-off to the writer costs more than the write when the
        # process is busy (the writer waits for the interpreter lock).
        if unwritten is not None:  # not written yet: one complete row
            row, entry = unwritten
            with self._ctx.db.engine.begin() as connection:
                connection.execute(insert(_OPS), {**row, **values})
                if charge is not None:  # before the audit head, as grants lock them
                    self._charge(connection, charge)
                self._ctx.audit.append_entries(connection, self._ctx.principal, [entry])
            return
        if record_id not in self._ids:
            self.flush()  # the writer is writing its row right now
        with self._ctx.db.engine.begin() as connection:
            self._update(record_id, charge, **values)(connection)

    # -- writing ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Block until everything recorded so far is written."""
        self._put(_Write(lambda _: None, urgent=True), wait=True)

    def close(self) -> None:
        """Write what is pending, then stop the writer."""
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _row(
        self, station: str, op: Operation, project: str, priority: int, state: str
    ) -> dict[str, Any]:
        return {
            "station": station,
            "operation_id": op.id,
            "project": project,
            "priority": priority,
            "params": dict(op.params),
            "state": state,
            "submitted_by": str(self._ctx.principal),
            "submitted_at": utcnow(),
        }

    def _update(
        self, token: int, charge: Charge | None = None, **values: Any
    ) -> Callable[[Connection], None]:
        """A change of row ``token``; a start does not overwrite an end written before it.

        An end's ``charge`` to the project's allocation is written with it.
        """
        final = "finished_at" in values

        def write(connection: Connection) -> None:
            row_id = self._ids.pop(token, None) if final else self._ids.get(token)
            if row_id is None:
                return  # its insert failed (logged), or it has ended: nothing to change
            statement = update(_OPS).where(_OPS.c.id == row_id)
            if not final:
                statement = statement.where(_OPS.c.finished_at.is_(None))
            connection.execute(statement.values(**values))
            if charge is not None:
                self._charge(connection, charge)

        return write

    def _charge(self, connection: Connection, charge: Charge) -> None:
        """Charge in ``connection``'s transaction: with the writer's batch, or now."""
        assert self._allocations is not None
        if self._batch is not None and threading.current_thread() is self._thread:
            self._batch.append(charge)  # one UPDATE per allocation for the whole batch
        else:
            self._allocations.apply(connection, [charge])

    def _put(self, write: _Write, wait: bool = False) -> None:
        with self._cond:
            if self._closed or not self._thread.is_alive():
                write.done.set()
                return
            self._pending.append(write)
            self._cond.notify()
        if wait:
            write.done.wait(30)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._closed):
                    self._cond.wait()
                deadline = time.monotonic() + _GATHER_S
                while not self._closed and not any(w.urgent for w in self._pending):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed and not self._pending:
                    return
                batch, self._pending = self._pending, []
            try:
                self._write(batch)
            except Exception:  # e.g. the catalog is locked for too long: records are lost
                _log.exception("%d station operation records not written", len(batch))
            for write in batch:
                write.done.set()

    def _write(self, batch: list[_Write]) -> None:
        with self._ctx.db.engine.begin() as connection:
            self._batch = []
            try:
                entries = [e for write in batch if (e := write.apply(connection)) is not None]
                if self._batch and self._allocations is not None:  # before the audit head
                    self._allocations.apply(connection, self._batch)
            finally:
                self._batch = None
            self._ctx.audit.append_entries(connection, self._ctx.principal, entries)
