"""The loop invariant, checked from inside: a spy runner looks at the catalog when it is
asked to start an attempt, a spy planner when it is told an observation."""

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy import select

from genesis_platform import Platform
from genesis_platform.campaigns.engine import CampaignEngine
from genesis_platform.campaigns.runners import Outcome, make_runner
from genesis_platform.campaigns.spec import CampaignSpec
from genesis_platform.catalog.tables import Campaign, ObservationRow, Trial
from genesis_platform.planning.protocols import Observation, Params, Planner, Surrogate
from genesis_platform.planning.registry import make_planner

SPEC = {
    "name": "spy",
    "space": {
        "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
        "temperature_c": {"type": "int", "low": 10, "high": 60},
        "solvent": {"type": "choice", "values": ["EC-DMC", "PC"]},
    },
    "objectives": {"conductivity": "max"},
    "planner": "sobol",
    "runner": {"station": "electrolyte", "options": {"latency_s": 0.0, "failure_rate": 0.4}},
    "budget": {"trials": 10, "parallel": 2, "retries": 1},
    "snapshot_every": 4,
}


class SpyRunner:
    def __init__(self, inner: Any, platform: Platform) -> None:
        self.inner, self.platform, self.label = inner, platform, inner.label
        self.started: list[str] = []

    def slots(self) -> int:
        return int(self.inner.slots())

    def external_id(self, trial_id: int, attempt: int) -> str:
        return str(self.inner.external_id(trial_id, attempt))

    def start(self, external_id: str, params: Mapping[str, Any]) -> Future[Outcome]:
        with self.platform._db.session() as s:
            row = s.scalar(select(Trial).where(Trial.external_id == external_id))
        assert row is not None, "started before the trial was stored"
        assert row.state == "running" and dict(row.params) == dict(params)
        assert external_id not in self.started, "an attempt started twice"
        self.started.append(external_id)
        return self.inner.start(external_id, params)  # type: ignore[no-any-return]

    def reattach(self, external_id: str) -> None:
        return None

    def close(self, abort: bool = False) -> None:
        self.inner.close(abort)


class SpyPlanner:
    def __init__(self, inner: Planner, platform: Platform) -> None:
        self.inner, self.platform, self.told = inner, platform, 0

    def ask(self, n: int, pending: Sequence[Params] = ()) -> list[Params]:
        return self.inner.ask(n, pending)

    def tell(self, observations: Sequence[Observation]) -> None:
        with self.platform._db.session(write=False) as s:
            rows = s.execute(
                select(Trial.params, Trial.state, ObservationRow.values).outerjoin(
                    ObservationRow, ObservationRow.trial_id == Trial.id
                )
            ).all()
        stored = {json.dumps(dict(p), sort_keys=True): (state, v) for p, state, v in rows}
        for obs in observations:
            state, values = stored[json.dumps(dict(obs.params), sort_keys=True)]
            if obs.failed:
                assert state == "failed", "told of a failure before it was stored"
            else:
                assert state == "observed" and values == dict(obs.values), "told before stored"
        self.told += len(observations)
        self.inner.tell(observations)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def surrogate(self) -> Surrogate | None:
        return self.inner.surrogate()


def test_stored_before_started_and_before_told(platform: Platform) -> None:
    campaign = platform.campaigns.create(SPEC)
    spec = CampaignSpec.from_dict(SPEC)
    planner = SpyPlanner(
        make_planner("sobol", spec.build_space(), spec.objectives, seed=0), platform
    )
    runner = SpyRunner(make_runner(spec, platform.tasks, platform.stations), platform)
    engine = CampaignEngine(
        platform._ctx,
        campaign.id,
        spec,
        planner,
        runner,  # type: ignore[arg-type]
        platform.datasets,
        platform.models,
    )
    assert engine.run() == "completed"
    info = campaign.info(with_trials=True)
    assert info.n_observed + info.n_failed == 10
    assert planner.told == 10
    attempts = sum(t.attempts for t in info.trials)
    assert len(runner.started) == attempts > 10  # some retries happened, each started once


def test_wall_budget_counts_earlier_runs(platform: Platform) -> None:
    spec = {**SPEC, "budget": {"trials": 50, "parallel": 1, "wall": "100s"}}
    campaign = platform.campaigns.create(spec)
    with platform._db.session() as s:
        s.get_one(Campaign, campaign.id).wall_seconds = 100.0  # as if an earlier run used it
    info = campaign.run()
    assert "wall-time budget" in info.stop_reason
    assert info.n_trials == 0
    assert info.wall_seconds >= 100.0
