"""Cost of governance: one policy decision at scale, and the facade read path with it on.

1. ``authorize`` with 10,000 organizations' worth of entities loaded (10,000 orgs, 20,000
   members, 10,000 gated datasets, 10,000 data-use agreements): the median cost of one
   decision through Genesis (``CedarPolicy.decide``: the member, the asset, the agreements
   between the two orgs, one Cedar call), next to a bare ``cedarpy.is_authorized`` call on
   the same parsed policy set and entity handle. Target: at most 100 µs per decision.
   Decisions are not reused here (Genesis reuses one for up to a second while nothing
   changes); every one is evaluated.
2. The facade read path (``p.datasets.get``) with policy and audit on, against the same
   catalog with governance off, interleaved in one run. Target: at most 1.2x. Printed as
   Genesis runs (a decision reused for up to a second while nothing changes) and with
   every decision evaluated.

    python benchmarks/governance.py [--orgs 10000] [--reads 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

import cedarpy
from sqlalchemy import insert

from genesis_platform import Platform
from genesis_platform.catalog.tables import (
    AgreementPartyRow,
    AgreementRow,
    AssetRow,
    MemberRow,
    OrgRow,
    utcnow,
)
from genesis_platform.config import Settings
from genesis_platform.governance import Principal, Resource, cedar
from genesis_platform.governance.cedar import CedarPolicy, _uid

TARGET_US = 100.0
TARGET_RATIO = 1.2


def populate(p: Platform, orgs: int) -> None:
    """``orgs`` organizations, two members each, a gated dataset each, and agreements."""
    now = utcnow()
    with p._db.engine.begin() as c:
        c.execute(insert(OrgRow), [{"name": f"org{i}", "display_name": ""} for i in range(orgs)])
        c.execute(
            insert(MemberRow),
            [
                {"org": f"org{i}", "user": u, "role": "member", "vetting": "vetted"}
                for i in range(orgs)
                for u in ("ana", "ben")
            ],
        )
        c.execute(
            insert(AssetRow),
            [
                {"kind": "dataset", "name": f"data{i}", "owner_org": f"org{i}", "access": "gated"}
                for i in range(orgs)
            ],
        )
        c.execute(
            insert(AgreementRow),
            [
                {
                    "name": f"du{i}",
                    "kind": "data-use",
                    "state": "active",
                    "terms": {"permitted_uses": ["research"]},
                    "covers": [f"dataset:data{i}"],
                    "starts_at": now - dt.timedelta(days=1),
                    "expires_at": now + dt.timedelta(days=365),
                    "created_by": f"ana@org{i}",
                }
                for i in range(orgs)
            ],
        )
        ids = dict(
            c.execute(
                AgreementRow.__table__.select().with_only_columns(
                    AgreementRow.name, AgreementRow.id
                )
            ).all()
        )  # type: ignore[attr-defined]
        c.execute(
            insert(AgreementPartyRow),
            [
                {
                    "agreement_id": ids[f"du{i}"],
                    "org": f"org{j}",
                    "signed_by": "x",
                    "signed_at": now,
                }
                for i in range(orgs)
                for j in (i, (i + 1) % orgs)
            ],
        )


def decisions(
    policy: CedarPolicy, orgs: int, n: int
) -> tuple[list[float], list[float], dict[str, int]]:
    """Per-decision seconds through Genesis and through bare cedarpy, and the outcomes."""
    rng = random.Random(7)
    genesis_s: list[float] = []
    bare_s: list[float] = []
    outcomes = {"allow": 0, "deny": 0}
    entities = policy.entities.handle_for(["org/org0"])
    assert entities is not None, "the entity handle was not built"
    for _ in range(n):
        i = rng.randrange(orgs)
        owner = rng.choice((i, (i - 1) % orgs, rng.randrange(orgs)))  # own, agreement, other
        who = Principal(rng.choice(("ana", "ben")), f"org{i}")
        resource = Resource("dataset", f"data{owner}")
        policy._decisions.clear()  # measure real decisions, not the reuse of one
        t0 = time.perf_counter()
        decision = policy.decide(who, "read", resource)
        genesis_s.append(time.perf_counter() - t0)
        outcomes["allow" if decision.allowed else "deny"] += 1
        request = {
            "principal": _uid("User", f"{who.name}@{who.org}"),
            "action": _uid("Action", "read"),
            "resource": _uid("Asset", f"dataset:data{owner}"),
            "context": {
                "now": int(time.time()),
                "purpose": "research",
                "operator": {"__entity": _uid("Org", "local")},
            },
        }
        t0 = time.perf_counter()
        cedarpy.is_authorized(request, policy.files.policies, entities)
        bare_s.append(time.perf_counter() - t0)
    return genesis_s, bare_s, outcomes


def read_path(home: Path, reads: int) -> tuple[float, float]:
    """Median seconds of ``p.datasets.get`` with governance on and off, interleaved."""
    on = Platform.open(home)
    off = Platform(dataclasses.replace(Settings.load(home), governance=False))
    (home / "a.csv").write_text("x\n1\n")
    on.datasets.add("spectra", [home / "a.csv"])
    times: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for _ in range(3):  # warm both
            on.datasets.get("spectra")
            off.datasets.get("spectra")
        for _ in range(reads):
            for label, p in (("on", on), ("off", off)):
                t0 = time.perf_counter()
                p.datasets.get("spectra")
                times[label].append(time.perf_counter() - t0)
    finally:
        on.close()
        off.close()
    return statistics.median(times["on"]), statistics.median(times["off"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=5_000)
    parser.add_argument("--reads", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with Platform.open(home) as p:
            t0 = time.perf_counter()
            populate(p, args.orgs)
            loaded = time.perf_counter() - t0
        with Platform.open(home) as p:
            policy = p._ctx.policy
            assert isinstance(policy, CedarPolicy)
            t0 = time.perf_counter()
            policy.entities.build_now()
            built = time.perf_counter() - t0
            genesis_s, bare_s, outcomes = decisions(policy, args.orgs, args.decisions)
        on, off = read_path(Path(tmp) / "reads", args.reads)
        reuse, cedar.DECISION_TTL_S = cedar.DECISION_TTL_S, 0.0
        fresh_on, fresh_off = read_path(Path(tmp) / "fresh", args.reads)
        cedar.DECISION_TTL_S = reuse
    g_us = statistics.median(genesis_s) * 1e6
    b_us = statistics.median(bare_s) * 1e6
    print(
        f"catalog: {args.orgs:,} orgs, {2 * args.orgs:,} members, {args.orgs:,} gated datasets, "
        f"{args.orgs:,} agreements (stored in {loaded:.1f} s, entity handle built in {built:.2f} s)"
    )
    print(
        f"authorize: median {g_us:.1f} µs per decision through Genesis, "
        f"{b_us:.1f} µs bare cedarpy ({g_us / b_us:.2f}x); "
        f"p90 {statistics.quantiles(genesis_s, n=10)[-1] * 1e6:.1f} µs; "
        f"{outcomes['allow']} allowed, {outcomes['deny']} denied; "
        f"target ≤ {TARGET_US:.0f} µs: {'met' if g_us <= TARGET_US else 'NOT MET'}"
    )
    ratio = on / off
    print(
        f"read path (p.datasets.get): {on * 1e3:.3f} ms governed, {off * 1e3:.3f} ms off: "
        f"{ratio:.2f}x; target ≤ {TARGET_RATIO}x: {'met' if ratio <= TARGET_RATIO else 'NOT MET'}"
    )
    print(
        f"  the same with every decision evaluated (none reused): {fresh_on * 1e3:.3f} ms "
        f"governed, {fresh_off * 1e3:.3f} ms off: {fresh_on / fresh_off:.2f}x"
    )


if __name__ == "__main__":
    main()
