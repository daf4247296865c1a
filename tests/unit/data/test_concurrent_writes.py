"""Several processes writing the same dataset at once, each through its own platform, on
every catalog backend (the processes inherit ``GENESIS_CATALOG_URL`` from ``catalog_env``)."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from genesis_platform import CatalogError, InvalidInput, Platform
from genesis_platform.data import service

WORKERS = 4
VERSIONS_EACH = 15


def _add_versions(home: str, worker: int, start: Barrier, errors: Queue[str]) -> None:
    folder = Path(home) / f"worker-{worker}"
    folder.mkdir()
    with Platform.open(home) as p:
        start.wait()
        for i in range(VERSIONS_EACH):
            path = folder / "part.csv"
            path.write_text(f"worker,i\n{worker},{i}\n")
            try:
                p.datasets.add_version("shared", [path], message=f"{worker}-{i}")
            except Exception as exc:
                errors.put(f"{type(exc).__name__}: {exc}")


def _add_fresh(home: str, worker: int, start: Barrier, errors: Queue[str]) -> None:
    path = Path(home) / f"fresh-{worker}.csv"
    path.write_text(f"worker\n{worker}\n")
    with Platform.open(home) as p:
        start.wait()
        try:
            p.datasets.add("fresh", [path])
            errors.put("created")
        except Exception as exc:
            errors.put(f"{type(exc).__name__}: {exc}")


def _run(target: object, home: Path, workers: int) -> list[str]:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(workers)
    errors: Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(str(home), w, start, errors)) for w in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * workers
    out = []
    while not errors.empty():
        out.append(errors.get())
    return out


def test_concurrent_versions_are_numbered_once_each(
    genesis_home: Path, tmp_path: Path, catalog_env: str
) -> None:
    (tmp_path / "seed.csv").write_text("worker,i\n-1,-1\n")
    with Platform.open(genesis_home) as p:
        p.datasets.add("shared", [tmp_path / "seed.csv"])
    errors = _run(_add_versions, genesis_home, WORKERS)
    assert errors == []
    with Platform.open(genesis_home) as p:
        versions = [p.datasets.get("shared", v) for v in range(1, WORKERS * VERSIONS_EACH + 2)]
        assert p.datasets.list()[0].versions == WORKERS * VERSIONS_EACH + 1
        messages = {v.message for v in versions[1:]}
        assert messages == {f"{w}-{i}" for w in range(WORKERS) for i in range(VERSIONS_EACH)}
        # every version's file is readable and matches its message
        for v in versions[1:]:
            row = p.datasets.read_table("shared", v.version).to_pylist()[0]
            assert f"{row['worker']}-{row['i']}" == v.message


def test_concurrent_add_of_one_name_creates_it_once(genesis_home: Path, catalog_env: str) -> None:
    Platform.open(genesis_home).close()
    outcomes = _run(_add_fresh, genesis_home, 6)
    taken = "InvalidInput: name: dataset 'fresh' already exists (add a version with add_version)"
    assert sorted(outcomes) == sorted(["created"] + [taken] * 5)
    with Platform.open(genesis_home) as p:
        assert p.datasets.list()[0].versions == 1


# -- the retry path that PostgreSQL takes: another writer commits between read and insert --


def test_a_version_number_taken_meanwhile_is_retried(
    any_platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    any_platform.datasets.add("d", [tmp_path / "a.csv"])
    real = service._next_version
    stale = iter([1, 1])  # twice the number a concurrent writer already took
    monkeypatch.setattr(service, "_next_version", lambda s, i: next(stale, None) or real(s, i))
    info = any_platform.datasets.add_version("d", [tmp_path / "a.csv"], message="after retries")
    assert info.version == 2
    versions = [any_platform.datasets.get("d", 1), any_platform.datasets.get("d")]
    assert [v.version for v in versions] == [1, 2]


def test_a_name_taken_meanwhile_is_reported_as_taken(
    any_platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    any_platform.datasets.add("d", [tmp_path / "a.csv"])
    real = service._dataset_id
    misses = iter([None])  # the first look misses the row another writer just committed
    monkeypatch.setattr(service, "_dataset_id", lambda s, n: next(misses, 0) or real(s, n))
    with pytest.raises(InvalidInput) as info:
        any_platform.datasets.add("d", [tmp_path / "a.csv"])
    assert str(info.value) == ("name: dataset 'd' already exists (add a version with add_version)")


def test_endless_conflicts_end_in_a_catalog_error_without_sql(
    any_platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    any_platform.datasets.add("d", [tmp_path / "a.csv"])
    monkeypatch.setattr(service, "_next_version", lambda s, i: 1)
    with pytest.raises(CatalogError) as info:
        any_platform.datasets.add_version("d", [tmp_path / "a.csv"])
    message = str(info.value)
    assert "another writer" in message and "try again" in message
    assert "SQL" not in message and "INSERT" not in message
    assert any_platform.datasets.list()[0].versions == 1
