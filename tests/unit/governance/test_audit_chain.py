"""The audit log is a hash chain: any record edited, inserted or deleted in the database
is found by `verify`, which names the first bad one."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update

from genesis_platform import AccessDenied, Platform
from genesis_platform.catalog.tables import AuditHead, AuditRecord
from genesis_platform.governance import AllowAll, Principal
from genesis_platform.governance.audit import record_hash
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


def sql(platform: Platform, statement: object) -> None:
    with platform._db.session() as s:
        s.execute(statement)  # type: ignore[call-overload]


def test_a_chain_of_ordinary_work_verifies(platform: Platform, tmp_path: Path) -> None:
    fill(platform, tmp_path)
    result = platform.audit.verify()
    assert result.ok and result.problem == ""
    assert result.records == len(platform.audit.list(limit=1000)) == 4 + 1 + 1
    with platform._db.session(write=False) as s:
        head = s.get(AuditHead, 1)
        last = s.scalars(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(1)).one()
    assert head is not None and (head.last_id, head.last_hash) == (last.id, last.hash)


def test_an_edited_record_is_named(platform: Platform, tmp_path: Path) -> None:
    fill(platform, tmp_path)
    sql(platform, update(AuditRecord).where(AuditRecord.id == 3).values(principal="mallory"))
    result = platform.audit.verify()
    assert not result.ok and result.first_bad == 3
    assert "record 3 was edited" in result.problem


def test_an_edited_detail_is_found(platform: Platform, tmp_path: Path) -> None:
    fill(platform, tmp_path)
    sql(platform, update(AuditRecord).where(AuditRecord.id == 2).values(detail={"op": "x"}))
    assert platform.audit.verify().first_bad == 2


def test_a_deleted_record_is_found_at_the_next_one(platform: Platform, tmp_path: Path) -> None:
    fill(platform, tmp_path)
    sql(platform, delete(AuditRecord).where(AuditRecord.id == 2))
    result = platform.audit.verify()
    assert not result.ok and result.first_bad == 3
    assert "does not follow" in result.problem


def test_records_deleted_at_the_end_are_found(platform: Platform, tmp_path: Path) -> None:
    fill(platform, tmp_path)
    with platform._db.session() as s:
        last = s.scalar(select(AuditRecord.id).order_by(AuditRecord.id.desc()).limit(1))
        s.execute(delete(AuditRecord).where(AuditRecord.id == last))
    result = platform.audit.verify()
    assert not result.ok and result.first_bad is None
    assert "head says 6 records" in result.problem


def test_an_inserted_record_is_found(platform: Platform, tmp_path: Path) -> None:
    fill(platform, tmp_path)
    with platform._db.session() as s:
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
    result = platform.audit.verify()  # a well-formed record, but the head does not know it
    assert not result.ok and "head says" in result.problem


def test_a_record_inserted_in_the_middle_is_named(platform: Platform, tmp_path: Path) -> None:
    fill(platform, tmp_path)
    sql(platform, text("UPDATE audit_records SET id = id + 100 WHERE id >= 3"))
    with platform._db.session() as s:
        two = s.get_one(AuditRecord, 2)
        s.execute(
            insert(AuditRecord).values(
                id=3, at=two.at, principal="mallory", action="write", resource_kind="model",
                resource_id="m", decision="allow", detail={}, policies=[],
                prev_hash=two.hash, hash="0" * 64,
            )
        )  # fmt: skip
    result = platform.audit.verify()
    assert not result.ok and result.first_bad == 3


def test_a_denied_request_is_audited(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    platform._ctx.policy = DenyWrites()
    with pytest.raises(AccessDenied):
        platform.datasets.add("d", [tmp_path / "a.csv"])
    with pytest.raises(AccessDenied):  # reading the audit log is administering it
        platform.audit.list()
    platform._ctx.policy = AllowAll()
    [record] = platform.audit.list(action="write")
    assert (record.decision, record.resource, record.policies) == (
        "deny",
        "dataset:d",
        ("deny-writes",),
    )
    assert "writes are closed" in record.detail["reason"]
    assert platform.audit.verify().ok


def _append_many(home: str, worker: int) -> None:
    from genesis_platform import Platform

    with Platform.open(home) as p:
        for i in range(15):
            p.sites.add(f"w{worker}-{i}", "ray", {})


def test_writers_in_several_processes_keep_one_chain(
    platform: Platform, genesis_home: Path
) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(genesis_home), w)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * 4
    result = platform.audit.verify()
    assert result.ok, result.problem
    assert result.records == 60


def test_the_cli_lists_and_verifies(
    capsys: pytest.CaptureFixture[str], platform: Platform, tmp_path: Path
) -> None:
    fill(platform, tmp_path)
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0 and "audit log intact: 6 records" in out
    code, out, _ = run(capsys, "audit", "list", "--resource", "dataset:d1", "--json")
    assert code == 0 and '"resource": "dataset:d1"' in out
    sql(platform, update(AuditRecord).where(AuditRecord.id == 4).values(action="read"))
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1 and "record 4 was edited" in out
    code, _, err = run(capsys, "audit", "list", "--since", "yesterday")
    assert code == 2 and "--since" in err
