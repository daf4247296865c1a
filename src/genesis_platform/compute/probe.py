"""The trivial task a site check runs (``genesis site check``)."""

from __future__ import annotations

import os
import platform
import socket
import sys

__all__ = ["ping"]


def ping() -> dict[str, object]:
    """Where this ran: host, process, Python version and the CPUs it may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "cpus": cpus,
    }
