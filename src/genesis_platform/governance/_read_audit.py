"""Allowed reads are audited in batches, off the request's path.

A read that policy allowed is queued here and appended, with the others queued in the same
50 ms, in one transaction by one thread. A mutation's record is appended in the mutation's
own transaction instead (see :class:`~genesis_platform.governance.context.ServiceContext`),
and a denial in a transaction of its own before the error is raised: only allowed reads
wait. A process that is killed loses at most the reads of its last 50 ms from the log.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref

from genesis_platform.catalog.database import Database
from genesis_platform.governance.audit import AuditEntry, AuditLog
from genesis_platform.governance.principal import Principal

__all__ = ["ReadAuditor"]

_BATCH_S = 0.05
_RETRY_S = 1.0
_log = logging.getLogger(__name__)
_OPEN: weakref.WeakSet[ReadAuditor] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for auditor in list(_OPEN):
        try:
            auditor.close()
        except Exception:
            _log.error("audit records of the last reads could not be written", exc_info=True)


class ReadAuditor:
    """Appends queued allowed-read records every 50 ms on one daemon thread."""

    def __init__(self, db: Database, audit: AuditLog, principal: Principal) -> None:
        self._db = db
        self._audit = audit
        self._principal = principal
        self._queue: list[AuditEntry] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        _OPEN.add(self)

    def add(self, entry: AuditEntry) -> None:
        """Queue one record."""
        with self._lock:
            if self._closed:
                return
            self._queue.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="genesis-read-audit", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def flush(self) -> None:
        """Append everything queued now, on this thread."""
        with self._lock:
            entries, self._queue = self._queue, []
        if not entries:
            return
        try:
            with self._db.engine.begin() as connection:
                self._audit.append_entries(connection, self._principal, entries)
        except Exception:
            with self._lock:  # keep them, in order, for the next try
                self._queue[:0] = entries
            raise

    def close(self) -> None:
        """Append what is queued and stop the thread (raises if the catalog refuses them)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._closed:
                return
            self._wake.clear()
            threading.Event().wait(_BATCH_S)
            try:
                self.flush()
            except Exception:  # the catalog is busy or gone for a moment: try again later
                _log.warning("audit records of reads not written yet; retrying", exc_info=True)
                threading.Event().wait(_RETRY_S)
                self._wake.set()
