"""The closed loop on the embedded platform: budgets, failures, stopping, records."""

from typing import Any

import pytest

from genesis_platform import CampaignSpecError, Platform
from genesis_platform.catalog.tables import AuditRecord, ObservationRow, Trial

SPACE = {
    "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
    "temperature_c": {"type": "int", "low": 10, "high": 60},
    "solvent": {"type": "choice", "values": ["EC-DMC", "EC-EMC", "PC"]},
}


def _create(platform: Platform, **changes: Any) -> Any:
    spec: dict[str, Any] = {
        "name": "loop",
        "space": SPACE,
        "objectives": {"conductivity": "max"},
        "planner": "random",
        "runner": {"station": "electrolyte", "options": {"latency_s": 0.0}},
        "budget": {"trials": 12, "parallel": 2},
        "snapshot_every": 5,
        "seed": 3,
    }
    spec.update(changes)
    return platform.campaigns.create(spec)


def test_campaign_runs_the_budget_and_records_everything(platform: Platform) -> None:
    info = _create(platform).run()
    assert info.state == "completed"
    assert (info.n_trials, info.n_observed, info.n_failed) == (12, 12, 0)
    trials = platform.campaigns.get(info.id).trials()
    assert [t.number for t in trials] == list(range(1, 13))
    assert all(t.state == "observed" and t.values and t.external_id for t in trials)
    assert info.best == max(t.values["conductivity"] for t in trials)  # type: ignore[index]
    # snapshots at 5 and 10 observations, and at the end
    assert info.dataset == f"loop-{info.id}-observations@3"
    assert platform.datasets.read_table(f"loop-{info.id}-observations").num_rows == 12
    assert info.model is None  # the random planner keeps no surrogate


def test_gp_campaign_registers_a_loadable_surrogate(platform: Platform) -> None:
    info = _create(platform, planner="gp", budget={"trials": 10, "parallel": 2}).run()
    assert info.model is not None
    name, version = info.model.split("@")
    model = platform.models.get(name)
    assert model.trained_on == info.dataset
    surrogate = platform.models.load(name)
    mean, std = surrogate.predict([info.best_params])
    assert abs(mean[0] - info.best) < 3.0 and std[0] >= 0
    lineage = platform.lineage.text("model", name, int(version))
    assert "dataset" in lineage and "trial" in lineage and "observation" in lineage


def test_failures_are_retried_then_recorded_and_told(platform: Platform) -> None:
    runner = {"station": "electrolyte", "options": {"latency_s": 0.0, "failure_rate": 1.0}}
    info = _create(platform, runner=runner, budget={"trials": 3, "retries": 2}).run()
    assert info.state == "failed"
    trials = platform.campaigns.get(info.id).trials()
    assert all(t.state == "failed" and t.attempts == 3 for t in trials)
    assert all("OperationFailed" in t.error for t in trials)


def test_some_failures_still_complete(platform: Platform) -> None:
    runner = {"station": "electrolyte", "options": {"latency_s": 0.0, "failure_rate": 0.3}}
    info = _create(platform, runner=runner, budget={"trials": 20, "retries": 0}).run()
    assert info.state == "completed"
    assert info.n_observed + info.n_failed == 20
    assert 0 < info.n_failed < 20


def test_target_stops_the_campaign_early(platform: Platform) -> None:
    info = _create(platform, stop={"target": 9.0}, budget={"trials": 200, "parallel": 1}).run()
    assert info.state == "completed"
    assert "target conductivity = 9.0 reached" in info.stop_reason
    values = [t.values["conductivity"] for t in platform.campaigns.get(info.id).trials()]  # type: ignore[index]
    assert values[-1] >= 9.0 and max(values[:-1], default=0.0) < 9.0  # stopped at the first hit
    assert info.n_trials < 200


def test_no_improvement_rule(platform: Platform) -> None:
    info = _create(
        platform, stop={"no_improvement": 3}, budget={"trials": 200, "parallel": 1}
    ).run()
    assert info.n_trials < 200
    assert "no improvement in 3" in info.stop_reason
    values = [t.values["conductivity"] for t in platform.campaigns.get(info.id).trials()]  # type: ignore[index]
    best_at = values.index(max(values))
    assert len(values) - 1 - best_at == 3  # exactly three trials after the best, none better


def test_site_runner_runs_a_function(platform: Platform) -> None:
    runner = {
        "site": "local",
        "function": "genesis_platform.testing.functions:electrolyte_simulation",
    }
    info = _create(platform, runner=runner, budget={"trials": 4, "parallel": 2}).run()
    assert info.state == "completed" and info.n_observed == 4


def test_loop_invariant_rows_and_audit(platform: Platform) -> None:
    info = _create(platform, budget={"trials": 4, "parallel": 1}).run()
    with platform._db.session() as s:
        trials = s.query(Trial).filter_by(campaign_id=info.id).all()
        observations = s.query(ObservationRow).count()
        audit = s.query(AuditRecord).filter_by(resource_kind="campaign").all()
    assert observations == 4
    for trial in trials:
        assert trial.proposed_at <= trial.dispatched_at <= trial.finished_at  # type: ignore[operator]
    proposed = sum(a.detail["n"] for a in audit if a.detail.get("op") == "propose")
    observed = [a.detail["trial"] for a in audit if a.detail.get("op") == "observe"]
    assert proposed == 4
    assert sorted(observed) == sorted(t.id for t in trials)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"planner": "annealing"}, "planner"),
        ({"runner": {"station": "spectrometer"}}, "runner.station"),
        ({"objectives": {"yield": "max"}}, "objectives.yield"),
        ({"space": {**SPACE, "pressure": {"type": "real", "low": 1, "high": 2}}}, "space.pressure"),
        ({"runner": {"site": "local", "function": "no_such_module:f"}}, "runner.function"),
        ({"runner": {"site": "hpc", "function": "math:sqrt"}}, "runner.site"),
    ],
)
def test_bad_campaigns_are_refused_and_nothing_is_stored(
    platform: Platform, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(Exception) as info:
        _create(platform, **changes)
    assert getattr(info.value, "field", "") == field, str(info.value)
    assert isinstance(info.value, ValueError)
    assert platform.campaigns.list() == []


def test_completed_campaign_cannot_be_resumed(platform: Platform) -> None:
    info = _create(platform, budget={"trials": 2}).run()
    from genesis_platform import CampaignError

    with pytest.raises(CampaignError, match="completed"):
        platform.campaigns.resume(info.id)
    with pytest.raises(CampaignSpecError, match="not a campaign id"):
        platform.campaigns.get("abc")


def test_a_campaign_never_run_is_listed_as_stopped(platform: Platform) -> None:
    campaign = _create(platform)
    [listed] = platform.campaigns.list()
    assert (listed.id, listed.state) == (campaign.id, "stopped")
    assert "never run" in listed.stop_reason
    assert platform.campaigns.resume(campaign.id).run().state == "completed"
