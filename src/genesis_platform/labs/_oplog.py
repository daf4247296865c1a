"""Station operation records, written by one thread in batches.

A station's scheduler records each operation three times: queued, handed to the driver,
ended. Writing each in its own transaction on the caller's thread put two commits on the
path of every operation. Here the first two are queued for a writer thread, which writes
everything pending in one transaction (with the audit records of new operations); the end
of an operation, and a refusal, wait until written, so whoever learns the outcome can read
it in the catalog.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, update

from genesis_platform.catalog.tables import StationOperationRow, utcnow
from genesis_platform.governance import Resource, ServiceContext
from genesis_platform.governance.audit import AuditEntry
from genesis_platform.labs.protocols import Measurement, Operation

__all__ = ["OperationRecords"]

_log = logging.getLogger(__name__)
_OPS = cast(Table, StationOperationRow.__table__)


@dataclass
class _Write:
    apply: Callable[[Connection], object]
    audit: AuditEntry | None = None
    done: threading.Event = field(default_factory=threading.Event)


class OperationRecords:
    """The ``OperationLog`` of every scheduler of one station service."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._tokens = itertools.count(1)
        self._ids: dict[int, int] = {}  # token -> row id (only the writer thread writes it)
        self._pending: list[_Write] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="genesis-station-ops", daemon=True)
        self._thread.start()

    # -- the OperationLog protocol -------------------------------------------------------

    def queued(self, station: str, op: Operation, project: str, priority: int) -> int:
        token = next(self._tokens)
        values = self._row(station, op, project, priority, "queued")

        def write(connection: Connection) -> None:
            self._ids[token] = int(connection.scalar(insert(_OPS).returning(_OPS.c.id), values))

        detail = {"operation": op.id, "project": project}
        self._put(_Write(write, AuditEntry("run", Resource("station", station), detail)))
        return token

    def refused(
        self, station: str, op: Operation, project: str, priority: int, reason: str
    ) -> None:
        values = self._row(station, op, project, priority, "refused")
        values.update(error=reason, finished_at=utcnow())
        detail = {"operation": op.id, "project": project, "refused": reason}
        entry = AuditEntry("run", Resource("station", station), detail)
        self._put(_Write(lambda c: c.execute(insert(_OPS), values), entry), wait=True)

    def started(self, record_id: int) -> None:
        self._put(_Write(self._update(record_id, state="running", started_at=utcnow())))

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
        self._put(_Write(self._update(record_id, **values)), wait=True)

    # -- writing ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Block until everything recorded so far is written."""
        self._put(_Write(lambda _: None), wait=True)

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

    def _update(self, token: int, **values: Any) -> Callable[[Connection], None]:
        def write(connection: Connection) -> None:
            row_id = self._ids.pop(token, None) if values.get("finished_at") else None
            row_id = row_id if row_id is not None else self._ids.get(token)
            if row_id is None:
                return  # its insert failed (logged): nothing to change
            connection.execute(update(_OPS).where(_OPS.c.id == row_id).values(**values))

        return write

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
            for write in batch:
                write.apply(connection)
            entries = [w.audit for w in batch if w.audit is not None]
            self._ctx.audit.append_entries(connection, self._ctx.principal, entries)
