"""Several processes registering versions of one model at once."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from genesis_platform import Platform
from genesis_platform.modelhub import service

WORKERS = 4
VERSIONS_EACH = 10


def _register(home: str, worker: int, start: Barrier, errors: Queue[str]) -> None:
    with Platform.open(home) as p:
        start.wait()
        for i in range(VERSIONS_EACH):
            try:
                p.models.register("m", f"{worker}-{i}".encode(), framework="json")
            except Exception as exc:
                errors.put(f"{type(exc).__name__}: {exc}")


def test_concurrent_registrations_create_the_model_once_and_number_each_version_once(
    genesis_home: Path,
) -> None:
    Platform.open(genesis_home).close()
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(WORKERS)
    errors: Queue[str] = ctx.Queue()
    procs = [
        ctx.Process(target=_register, args=(str(genesis_home), w, start, errors))
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * WORKERS
    assert errors.empty(), errors.get()
    with Platform.open(genesis_home) as p:
        [info] = p.models.list()
        assert (info.versions, info.latest) == (WORKERS * VERSIONS_EACH,) * 2
        artifacts = {p.models.artifact("m", v) for v in range(1, WORKERS * VERSIONS_EACH + 1)}
    assert artifacts == {f"{w}-{i}".encode() for w in range(WORKERS) for i in range(VERSIONS_EACH)}


def test_a_version_number_taken_meanwhile_is_retried(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.models.register("m", b"1")
    real = service._next_version
    stale = iter([1, 1])  # twice the number a concurrent writer already took
    monkeypatch.setattr(service, "_next_version", lambda s, i: next(stale, None) or real(s, i))
    assert platform.models.register("m", b"2").version == 2
    assert platform.models.artifact("m", 1) == b"1"
