"""The seams later issues plug into: one authorize hook, one audited mutation path."""

from pathlib import Path

import pytest

from genesis_platform import AccessDenied, Platform
from genesis_platform.catalog.tables import AuditRecord
from genesis_platform.governance import Principal
from genesis_platform.governance.authorize import Action, Decision, Resource


class DenyWrites:
    def decide(self, principal: Principal, action: Action, resource: Resource) -> Decision:
        return Decision(action == "read", ("deny-writes",), "writes are closed")


def test_local_principal_is_the_configured_user(genesis_home: Path, catalog_env: str) -> None:
    (genesis_home).mkdir(parents=True, exist_ok=True)
    (genesis_home / "genesis.toml").write_text('user = "ada"\n')
    with Platform.open() as p:
        assert str(p.principal) == "ada@local"


def test_every_mutation_is_audited(any_platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    any_platform.datasets.add("d", [tmp_path / "a.csv"])
    any_platform.models.register("m", b"{}", framework="json")
    with any_platform._db.session() as s:
        records = s.query(AuditRecord).order_by(AuditRecord.id).all()
    assert [(r.action, r.resource_kind, r.resource_id) for r in records] == [
        ("write", "dataset", "d"),
        ("write", "model", "m"),
    ]
    assert all(r.principal == str(any_platform.principal) for r in records)


def test_a_policy_can_deny_and_nothing_is_stored(any_platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    any_platform._ctx.policy = DenyWrites()
    with pytest.raises(AccessDenied, match="may not write dataset:d: writes are closed"):
        any_platform.datasets.add("d", [tmp_path / "a.csv"])
    assert any_platform.datasets.list() == []
