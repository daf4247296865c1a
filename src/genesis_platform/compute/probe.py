"""The trivial task a site check runs (``genesis site check``)."""

from __future__ import annotations

import os
import platform
import socket
import sys

from genesis_platform.compute.local import usable_cpus

__all__ = ["ping"]


def ping() -> dict[str, object]:
    """Where this ran: host, process, Python version and the CPUs it may use."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "cpus": usable_cpus(),
    }
