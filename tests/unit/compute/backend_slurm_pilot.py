"""The ``slurm_pilot`` backend of the executor contract: a PilotExecutor on a real Slurm.

One pilot job (``pilot_max`` 1) with ``max_workers`` workers runs every task; it leaves
after a short idle timeout, or when its executor shuts down. The cluster is the one
``scripts/slurm start`` runs (see ``backend_slurm``): without one, tests skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import tempfile
from typing import Any

from genesis_platform.compute.pilot import PilotExecutor
from tests.unit.compute.backend_slurm import POLL_INTERVAL_S, _work_root, require_slurm

IDLE_TIMEOUT_S = 5.0
"""A test pilot with nothing to do leaves after this long, s."""


def make_executor(max_workers: int = 2, **options: Any) -> PilotExecutor:
    """A pilot executor with its own work dir: one pilot of ``max_workers`` workers."""
    require_slurm()
    work_dir = tempfile.mkdtemp(prefix="pilot-", dir=_work_root())
    options = {
        "pilot_max": 1,
        "pilot_workers": max_workers,
        "pilot_idle_timeout_s": IDLE_TIMEOUT_S,
        "pilot_address": "127.0.0.1",
        "poll_interval_s": POLL_INTERVAL_S,
        **options,
    }
    return PilotExecutor("slurm", work_dir=work_dir, **options)
