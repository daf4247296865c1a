"""The ``slurm`` backend of the executor contract: a PsijExecutor on a real Slurm cluster.

It uses the cluster ``scripts/slurm start`` runs (``SLURM_CONF``, else the default state
folder ``$GENESIS_SLURM_DIR`` or ``/tmp/genesis-slurm``). Without one, tests skip, except
under ``CI=true``, where they fail.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from genesis_platform.compute.psij import PsijExecutor

POLL_INTERVAL_S = 0.2
"""Queue polling in tests: a finished job is seen within this many seconds."""
HOW_TO_START = "start it with scripts/slurm start (needs root)"
_UP_STATES = {"idle", "mixed", "allocated", "completing"}


def require_slurm() -> str:
    """The running cluster's ``SLURM_CONF`` (also set in ``os.environ``); skip or fail if none."""
    conf, problem = _find_slurm()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Slurm is required under CI=true: {problem}; {HOW_TO_START}")
        pytest.skip(f"no Slurm cluster: {problem}; {HOW_TO_START}")
    os.environ["SLURM_CONF"] = conf
    return conf


def make_executor(max_workers: int = 2, **options: Any) -> PsijExecutor:
    """A Slurm executor with its own work dir, polling every :data:`POLL_INTERVAL_S`."""
    require_slurm()
    work_dir = tempfile.mkdtemp(prefix="work-", dir=_work_root())
    options = {"poll_interval_s": POLL_INTERVAL_S, **options}
    return PsijExecutor("slurm", work_dir=work_dir, max_workers=max_workers, **options)


@functools.cache
def _find_slurm() -> tuple[str, str]:
    """(SLURM_CONF, "") for a cluster whose node is up, or ("", what is wrong)."""
    state_dir = Path(os.environ.get("GENESIS_SLURM_DIR", "/tmp/genesis-slurm"))
    conf = os.environ.get("SLURM_CONF") or str(state_dir / "etc" / "slurm.conf")
    if not Path(conf).is_file():
        return "", f"{conf} does not exist"
    if shutil.which("sinfo") is None:
        return "", "sinfo is not installed"
    try:
        answer = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"],
            env={**os.environ, "SLURM_CONF": conf},
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        return "", "sinfo did not answer in 15 s"
    states = set(answer.stdout.split())
    if answer.returncode != 0 or not states & _UP_STATES:
        reply = (answer.stdout + answer.stderr).strip() or "nothing"
        return "", f"sinfo (SLURM_CONF={conf}) shows no node up: {reply}"
    return conf, ""


@functools.cache
def _work_root() -> str:
    """One temporary folder for every test executor's work dir, removed at exit."""
    root = tempfile.mkdtemp(prefix="genesis-slurm-tests-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def blocking_cores() -> int:
    """CPUs of the cluster's node (``sinfo``): a job asking for them all leaves no room."""
    require_slurm()
    answer = subprocess.run(
        ["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, timeout=30, check=True
    )
    return max(int(line.rstrip("+")) for line in answer.stdout.split())
