"""The audit log is a hash chain: any record edited, inserted or deleted in the database
is found by `verify`, which names the first bad one."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update

from genesis_platform import AccessDenied, Platform
from genesis_platform.catalog.tables import AuditHead, AuditRecord
from genesis_platform.governance import AllowAll, Principal
from genesis_platform.governance.audit import AuditLog, record_hash
from genesis_platform.governance.authorize import Action, Decision, Resource
from tests.integration.cli import run


class DenyWrites:
    def decide(self, principal: Principal, action: Action, resource: Resource) -> Decision:
        return Decision(action == "read", ("deny-writes",), "writes are closed")


def fill(platform: Platform, tmp_path: Path, n: int = 4) -> None:
    """``n`` audited mutations of several services."""
    (tmp_path / "a.csv").write_text("x\n1\n")
    for i in range(n):
        platform.datasets.add(f"d{i}", [tmp_path / "a.csv"])
    platform.sites.add("r", "ray", {})
    platform.tasks.submit(function="genesis_platform.testing.functions:noop").result(timeout=60)
    platform._ctx.read_audit.flush()  # allowed reads are appended in batches: append them now


def stored(platform: Platform) -> int:
    """How many audit records the catalog holds."""
    with platform._db.session(write=False) as s:
        return len(s.scalars(select(AuditRecord.id)).all())


def sql(platform: Platform, statement: object) -> None:
    with platform._db.session() as s:
        s.execute(statement)  # type: ignore[call-overload]


def test_a_chain_of_ordinary_work_verifies(any_platform: Platform, tmp_path: Path) -> None:
    fill(any_platform, tmp_path)
    result = any_platform.audit.verify()
    assert result.ok and result.problem == ""
    records = any_platform.audit.list(limit=1000)
    assert result.records == len(records)
    assert len([r for r in records if r.action != "read"]) == 4 + 1 + 1
    with any_platform._db.session(write=False) as s:
        head = s.get(AuditHead, 1)
        last = s.scalars(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(1)).one()
    assert head is not None and (head.last_id, head.last_hash) == (last.id, last.hash)


def test_an_edited_record_is_named(any_platform: Platform, tmp_path: Path) -> None:
    fill(any_platform, tmp_path)
    sql(any_platform, update(AuditRecord).where(AuditRecord.id == 3).values(principal="mallory"))
    result = any_platform.audit.verify()
    assert not result.ok and result.first_bad == 3
    assert "record 3 was edited" in result.problem


def test_an_edited_detail_is_found(any_platform: Platform, tmp_path: Path) -> None:
    fill(any_platform, tmp_path)
    sql(any_platform, update(AuditRecord).where(AuditRecord.id == 2).values(detail={"op": "x"}))
    assert any_platform.audit.verify().first_bad == 2


def test_a_deleted_record_is_found_at_the_next_one(any_platform: Platform, tmp_path: Path) -> None:
    fill(any_platform, tmp_path)
    sql(any_platform, delete(AuditRecord).where(AuditRecord.id == 2))
    result = any_platform.audit.verify()
    assert not result.ok and result.first_bad == 3
    assert "does not follow" in result.problem


def test_records_deleted_at_the_end_are_found(any_platform: Platform, tmp_path: Path) -> None:
    fill(any_platform, tmp_path)
    n = stored(any_platform)
    with any_platform._db.session() as s:
        last = s.scalar(select(AuditRecord.id).order_by(AuditRecord.id.desc()).limit(1))
        s.execute(delete(AuditRecord).where(AuditRecord.id == last))
    result = any_platform.audit.verify()
    assert not result.ok and result.first_bad is None
    assert f"head says {n} records" in result.problem


def test_an_inserted_record_is_found(any_platform: Platform, tmp_path: Path) -> None:
    fill(any_platform, tmp_path)
    with any_platform._db.session() as s:
        last = s.scalars(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(1)).one()
        at = dt.datetime.now(dt.UTC)
        forged = record_hash(last.hash, at, "mallory", "write", "dataset", "d0", "allow", {}, [])
        s.execute(
            insert(AuditRecord).values(
                id=last.id + 1, at=at, principal="mallory", action="write",
                resource_kind="dataset", resource_id="d0", decision="allow", detail={},
                policies=[], prev_hash=last.hash, hash=forged,
            )
        )  # fmt: skip
    result = any_platform.audit.verify()  # a well-formed record, but the head does not know it
    assert not result.ok and "head says" in result.problem


def test_a_record_inserted_in_the_middle_is_named(any_platform: Platform, tmp_path: Path) -> None:
    fill(any_platform, tmp_path)
    sql(any_platform, text("UPDATE audit_records SET id = id + 100 WHERE id >= 3"))
    with any_platform._db.session() as s:
        two = s.get_one(AuditRecord, 2)
        s.execute(
            insert(AuditRecord).values(
                id=3, at=two.at, principal="mallory", action="write", resource_kind="model",
                resource_id="m", decision="allow", detail={}, policies=[],
                prev_hash=two.hash, hash="0" * 64,
            )
        )  # fmt: skip
    result = any_platform.audit.verify()
    assert not result.ok and result.first_bad == 3


def test_a_denied_request_is_audited(any_platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    any_platform._ctx.policy = DenyWrites()
    with pytest.raises(AccessDenied):
        any_platform.datasets.add("d", [tmp_path / "a.csv"])
    with pytest.raises(AccessDenied):  # reading the audit log is administering it
        any_platform.audit.list()
    any_platform._ctx.policy = AllowAll()
    [record] = any_platform.audit.list(action="write")
    assert (record.decision, record.resource, record.policies) == (
        "deny",
        "dataset:d",
        ("deny-writes",),
    )
    assert "writes are closed" in record.detail["reason"]
    assert any_platform.audit.verify().ok


def test_an_appender_waits_for_the_transaction_holding_the_head(any_platform: Platform) -> None:
    # The head row serializes appenders: SQLite's write lock (BEGIN IMMEDIATE) and, on
    # PostgreSQL, the head's row lock (SELECT ... FOR UPDATE). Without it the second appender
    # would chain to the head it read before the first committed, and collide on its id.
    db, who, log = any_platform._db, any_platform.principal, AuditLog()
    appended, events = threading.Event(), []

    def second() -> None:
        appended.wait()
        with db.session() as s:
            log.append(s, who, "write", Resource("dataset", "second"))
            events.append("second appended")

    thread = threading.Thread(target=second)
    thread.start()
    with db.session() as s:
        log.append(s, who, "write", Resource("dataset", "first"))
        appended.set()
        time.sleep(0.5)
        events.append("first commits")
    thread.join(timeout=60)
    assert events == ["first commits", "second appended"]
    result = any_platform.audit.verify()
    assert result.ok and result.records == 2, result.problem


def _append_many(home: str, worker: int) -> None:
    from genesis_platform import Platform

    with Platform.open(home) as p:
        for i in range(15):
            p.sites.add(f"w{worker}-{i}", "ray", {})


def test_writers_in_several_processes_keep_one_chain(
    any_platform: Platform, genesis_home: Path
) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(genesis_home), w)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * 4
    result = any_platform.audit.verify()
    assert result.ok, result.problem
    records = any_platform.audit.list(limit=10_000)
    assert result.records == len(records)
    assert len([r for r in records if r.action != "read"]) == 60


def test_the_cli_lists_and_verifies(
    capsys: pytest.CaptureFixture[str], any_platform: Platform, tmp_path: Path
) -> None:
    fill(any_platform, tmp_path)
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0 and f"audit log intact: {stored(any_platform)} records" in out
    code, out, _ = run(capsys, "audit", "list", "--resource", "dataset:d1", "--json")
    assert code == 0 and '"resource": "dataset:d1"' in out
    sql(any_platform, update(AuditRecord).where(AuditRecord.id == 4).values(action="read"))
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1 and "record 4 was edited" in out
    code, _, err = run(capsys, "audit", "list", "--since", "yesterday")
    assert code == 2 and "--since" in err
