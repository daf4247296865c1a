"""The Ray backend of the executor contract: one local Ray, started once per test session."""

from __future__ import annotations

from genesis_platform.compute.protocols import Executor
from tests.requires import require_extra

LOCAL_CPUS = 4
"""Logical CPUs of the test session's local Ray (more than the machine may have: tasks sleep)."""


def make_executor(max_workers: int) -> Executor:
    require_extra("ray", "ray")
    import ray

    from genesis_platform.compute.ray import RayExecutor

    if not ray.is_initialized():
        # Started here, not by an executor, so it outlives each test's executors; Ray stops
        # it when the test session's process exits.
        ray.init(address="local", num_cpus=LOCAL_CPUS, include_dashboard=False, log_to_driver=False)
    return RayExecutor(max_workers=max_workers)


def blocking_cores() -> int:
    """Cores of the tests' local Ray: a task asking for them all leaves no room for another."""
    return LOCAL_CPUS
