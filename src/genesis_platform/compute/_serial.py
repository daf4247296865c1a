"""A thread that runs calls one after another, in the order they were submitted.

Like ``ThreadPoolExecutor(1)`` without a future per call: the task service hands it a call
for every task it dispatches, at thousands a second, and needs no result back.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SerialWorker"]

_log = logging.getLogger(__name__)


class SerialWorker:
    """Runs ``submit``-ted calls in order on one daemon thread; a failed call is logged.

    Args:
        name: The thread's name.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., object], tuple[Any, ...]] | None]
        self._calls = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        atexit.register(self.shutdown)  # a daemon thread: run what was submitted before exit

    def submit(self, call: Callable[..., object], *args: Any) -> None:
        """Run ``call(*args)`` after the calls submitted before it.

        Raises:
            RuntimeError: the worker is shut down (as ``ThreadPoolExecutor.submit``).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot run a call after shutdown")
            self._calls.put((call, args))

    def shutdown(self, wait: bool = True) -> None:
        """Accept no more calls; the ones submitted still run. With ``wait``, block until done."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._calls.put(None)
                atexit.unregister(self.shutdown)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while (item := self._calls.get()) is not None:
            call, args = item
            try:
                call(*args)
            except Exception:
                _log.exception("a call on %s failed", self._thread.name)
