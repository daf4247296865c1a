"""The planner features of a campaign file, end to end through ``p.campaigns``.

Parameter constraints, outcome constraints, several objectives with a reference point,
two fidelities with costs, and a warm start. Each test runs a small campaign on the local
site or the simulated station and checks what was stored against a brute-force recount of
its trials.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select

from genesis_platform import Platform
from genesis_platform.campaigns.service import TrialInfo
from genesis_platform.campaigns.warmstart import load_warm_start
from genesis_platform.catalog.tables import ProvenanceEdge
from genesis_platform.planning.pareto import default_reference_point, hypervolume
from genesis_platform.testing.functions import electrolyte_simulation

FUNCTIONS = "genesis_platform.testing.functions"
HERE = "tests.unit.campaigns.test_planner_features"
ELECTROLYTE = {
    "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
    "temperature_c": {"type": "int", "low": 10, "high": 60},
    "solvent": {"type": "choice", "values": ["EC-DMC", "EC-EMC", "PC"]},
}
BLEND = {
    "ec_fraction": {"type": "real", "low": 0.0, "high": 1.0},
    "dmc_fraction": {"type": "real", "low": 0.0, "high": 1.0},
    "emc_fraction": {"type": "real", "low": 0.0, "high": 1.0},
    "salt_molality": {"type": "real", "low": 0.2, "high": 2.5},
}
BOOST = 100.0
"""What :func:`boosted_electrolyte` adds to the noise-free conductivity, mS/cm."""


def boosted_electrolyte(salt_molality: float, temperature_c: int, solvent: str) -> dict[str, float]:
    """A cheap fidelity that flatters: the simulation plus :data:`BOOST`.

    Its signature takes exactly the space's parameters, so a call with ``fidelity=`` fails.
    """
    value = electrolyte_simulation(salt_molality, temperature_c, solvent)["conductivity"]
    return {"conductivity": value + BOOST}


def _local(function: str) -> dict[str, str]:
    module = HERE if function == "boosted_electrolyte" else FUNCTIONS
    return {"site": "local", "function": f"{module}:{function}"}


def _campaign(platform: Platform, **fields: Any) -> Any:
    spec: dict[str, Any] = {
        "name": "features",
        "space": ELECTROLYTE,
        "objectives": {"conductivity": "max"},
        "planner": "random",
        "runner": _local("electrolyte_simulation"),
        "budget": {"trials": 10, "parallel": 2, "retries": 0},
        "seed": 1,
    }
    spec.update(fields)
    return platform.campaigns.create({k: v for k, v in spec.items() if v is not None})


def _values(trial: TrialInfo) -> dict[str, float]:
    assert trial.values is not None, f"trial {trial.number} has no observation: {trial.error}"
    return trial.values


class _Recorder:
    """Stands in for the progress bar: remembers every best value the loop reported."""

    bests: list[float | None]
    stop_after: int | None = None

    def __init__(self, title: str, objective: str) -> None:
        type(self).bests = []

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def update(self, finished: int, total: int, failed: int, best: float | None) -> None:
        type(self).bests.append(best)
        if self.stop_after is not None and finished >= self.stop_after:
            raise KeyboardInterrupt  # Ctrl-C right after the trial was stored and told


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Recorder]]:
    """Replace the progress bar of ``run(progress=True)`` by a :class:`_Recorder`."""
    monkeypatch.setattr("genesis_platform.campaigns.service.ProgressBar", _Recorder)
    _Recorder.stop_after = None
    yield _Recorder
    _Recorder.stop_after = None


# -- parameter constraints -----------------------------------------------------------------


@pytest.mark.parametrize("planner", ["random", "sobol", "gp"])
def test_every_proposal_satisfies_the_parameter_constraints(
    platform: Platform, planner: str
) -> None:
    constraints = [
        "ec_fraction + dmc_fraction + emc_fraction == 1",
        "dmc_fraction <= 2 * emc_fraction",
        "salt_molality * ec_fraction <= 0.6",
    ]
    campaign = _campaign(
        platform,
        space=BLEND,
        constraints=constraints,
        planner={"kind": planner, "options": {"n_initial": 4}} if planner == "gp" else planner,
        runner=_local("electrolyte_blend_simulation"),
        budget={"trials": 8, "parallel": 2, "retries": 0},
    )
    info = campaign.run()
    trials = campaign.trials()
    assert info.state == "completed" and len(trials) == 8
    for t in trials:
        p = t.params
        total = p["ec_fraction"] + p["dmc_fraction"] + p["emc_fraction"]
        assert abs(total - 1.0) <= 1e-6 * 4, (t.number, p)
        assert p["dmc_fraction"] <= 2 * p["emc_fraction"] + 1e-9, (t.number, p)
        assert p["salt_molality"] * p["ec_fraction"] <= 0.6 + 1e-9, (t.number, p)
        assert all(0.0 <= p[k] <= 1.0 for k in ("ec_fraction", "dmc_fraction", "emc_fraction"))
    # not a degenerate corner: the planner spreads over the simplex
    assert len({round(t.params["emc_fraction"], 3) for t in trials}) == 8


# -- outcome constraints -------------------------------------------------------------------


def test_best_counts_only_observations_meeting_the_outcome_constraints(
    platform: Platform, recorder: type[_Recorder]
) -> None:
    campaign = _campaign(
        platform,
        space=BLEND,
        constraints=["ec_fraction + dmc_fraction + emc_fraction == 1"],
        outcome_constraints=["viscosity <= 1.4"],
        runner=_local("electrolyte_blend_simulation"),
        budget={"trials": 12, "parallel": 2, "retries": 0},
    )
    info = campaign.run(progress=True)
    trials = campaign.trials()
    assert info.state == "completed" and info.n_observed == 12
    feasible = [t for t in trials if _values(t)["viscosity"] <= 1.4]
    infeasible = [t for t in trials if _values(t)["viscosity"] > 1.4]
    best = max(feasible, key=lambda t: _values(t)["conductivity"])
    # the case is constructed: the most conductive blend overall is too viscous
    assert max(_values(t)["conductivity"] for t in infeasible) > _values(best)["conductivity"]
    assert info.best == _values(best)["conductivity"]
    assert info.best_params == best.params
    # the loop's own running best (shown while it runs, used by stop rules) agrees
    assert recorder.bests[-1] == info.best


def test_a_target_reached_only_by_infeasible_observations_does_not_stop(
    platform: Platform,
) -> None:
    campaign = _campaign(
        platform,
        space=BLEND,
        constraints=["ec_fraction + dmc_fraction + emc_fraction == 1"],
        outcome_constraints=["viscosity <= 1.2"],
        runner=_local("electrolyte_blend_simulation"),
        budget={"trials": 10, "parallel": 1, "retries": 0},
        stop={"target": 9.0},
    )
    info = campaign.run()
    values = [_values(t) for t in campaign.trials()]
    assert any(v["conductivity"] >= 9.0 and v["viscosity"] > 1.2 for v in values[:-1])
    assert not any(v["conductivity"] >= 9.0 and v["viscosity"] <= 1.2 for v in values)
    assert info.n_trials == 10 and info.stop_reason == "trial budget of 10 used"
    assert info.best is not None and info.best < 9.0


def test_a_result_without_the_constrained_metric_fails_the_trial(platform: Platform) -> None:
    campaign = _campaign(
        platform,
        outcome_constraints=["viscosity <= 2"],
        budget={"trials": 3, "parallel": 1, "retries": 0},
    )
    info = campaign.run()
    assert (info.state, info.n_failed, info.best) == ("failed", 3, None)
    for t in campaign.trials():
        assert t.state == "failed" and t.values is None
        assert "constrained metric 'viscosity'" in t.error, t.error
        assert "conductivity" in t.error  # says what the result did have


# -- several objectives --------------------------------------------------------------------


def _dominates(a: dict[str, float], b: dict[str, float], objectives: dict[str, str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    sign = {n: 1.0 if d == "max" else -1.0 for n, d in objectives.items()}
    at_least = all(sign[n] * a[n] >= sign[n] * b[n] for n in objectives)
    better = any(sign[n] * a[n] > sign[n] * b[n] for n in objectives)
    return at_least and better


def _area(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area of the union of the boxes ``[ref, p]`` (both objectives maximized), on a grid."""
    inside = [p for p in points if p[0] > ref[0] and p[1] > ref[1]]
    xs = sorted({ref[0], *(p[0] for p in inside)})
    area = 0.0
    for left, right in itertools.pairwise(xs):
        top = max((p[1] for p in inside if p[0] >= right), default=ref[1])
        area += (right - left) * (top - ref[1])
    return area


@pytest.mark.parametrize("reference_point", [{"conductivity": 2.0, "cost": 60.0}, None])
def test_pareto_front_and_hypervolume_of_two_objectives(
    platform: Platform, reference_point: dict[str, float] | None
) -> None:
    objectives = {"conductivity": "max", "cost": "min"}
    campaign = _campaign(
        platform,
        objectives=objectives,
        reference_point=reference_point,
        runner=_local("electrolyte_cost_simulation"),
        budget={"trials": 12, "parallel": 2, "retries": 0},
    )
    info = campaign.run()
    trials = campaign.trials()
    assert info.state == "completed" and info.n_observed == 12
    assert info.best is None or info.best == max(_values(t)["conductivity"] for t in trials)

    front = [
        t for t in trials if not any(_dominates(_values(o), _values(t), objectives) for o in trials)
    ]
    assert 1 < len(front) < len(trials)  # a real trade-off, and some trials dominated
    assert sorted(row["trial"] for row in info.pareto) == [t.number for t in front]
    for row in info.pareto:
        trial = trials[row["trial"] - 1]
        assert row["params"] == trial.params and row["values"] == trial.values

    # max stays, min is negated; so is the reference point
    y = np.array([[_values(t)["conductivity"], -_values(t)["cost"]] for t in trials])
    if reference_point is None:
        ref = default_reference_point(y)
    else:
        ref = np.array([reference_point["conductivity"], -reference_point["cost"]])
    assert info.hypervolume == pytest.approx(hypervolume(y, ref), rel=1e-12)
    by_hand = _area([(float(a), float(b)) for a, b in y], (float(ref[0]), float(ref[1])))
    assert info.hypervolume == pytest.approx(by_hand, rel=1e-9)
    assert info.hypervolume > 0


def test_pareto_front_leaves_out_observations_breaking_an_outcome_constraint(
    platform: Platform,
) -> None:
    objectives = {"conductivity": "max", "cost": "min"}
    campaign = _campaign(
        platform,
        objectives=objectives,
        outcome_constraints=["cost <= 40"],
        reference_point={"conductivity": 0.0, "cost": 80.0},
        runner=_local("electrolyte_cost_simulation"),
        budget={"trials": 12, "parallel": 2, "retries": 0},
    )
    info = campaign.run()
    trials = campaign.trials()
    feasible = [t for t in trials if _values(t)["cost"] <= 40]
    assert 0 < len(feasible) < len(trials)
    front = [
        t
        for t in feasible
        if not any(_dominates(_values(o), _values(t), objectives) for o in feasible)
    ]
    assert sorted(row["trial"] for row in info.pareto) == [t.number for t in front]
    y = np.array([[_values(t)["conductivity"], -_values(t)["cost"]] for t in feasible])
    assert info.hypervolume == pytest.approx(hypervolume(y, np.array([0.0, -80.0])))


# -- fidelities ----------------------------------------------------------------------------


def _fidelities(cheap: str = "boosted_electrolyte") -> dict[str, Any]:
    return {
        "simulation": {"cost": 1, "runner": _local(cheap)},
        "robot": {"cost": 10, "runner": {"station": "electrolyte", "options": {"latency_s": 0}}},
    }


def test_fidelity_routes_trials_and_best_counts_only_the_target(
    platform: Platform, recorder: type[_Recorder]
) -> None:
    campaign = _campaign(
        platform,
        runner=None,
        fidelities=_fidelities(),
        target_fidelity="robot",
        budget={"trials": 12, "parallel": 2, "retries": 0},
    )
    info = campaign.run(progress=True)
    trials = campaign.trials()
    # the cheap function takes exactly the space's parameters: no trial failed on fidelity=
    assert (info.state, info.n_observed, info.n_failed) == ("completed", 12, 0)
    levels = {t.params["fidelity"] for t in trials}
    assert levels == {"simulation", "robot"}
    cheap = [t for t in trials if t.params["fidelity"] == "simulation"]
    robot = [t for t in trials if t.params["fidelity"] == "robot"]
    for t in cheap:  # routed to the function, which got the parameters without fidelity
        rest = {k: v for k, v in t.params.items() if k != "fidelity"}
        assert _values(t) == boosted_electrolyte(**rest)
    for t in robot:  # routed to the station: noisy, never boosted
        assert _values(t)["conductivity"] < BOOST
    best = max(robot, key=lambda t: _values(t)["conductivity"])
    assert max(_values(t)["conductivity"] for t in cheap) > _values(best)["conductivity"]
    assert info.best == _values(best)["conductivity"]
    assert info.best_params == best.params and info.best_params["fidelity"] == "robot"
    assert recorder.bests[-1] == info.best


def test_a_target_reached_only_at_the_cheap_fidelity_does_not_stop(platform: Platform) -> None:
    campaign = _campaign(
        platform,
        runner=None,
        fidelities=_fidelities(),
        budget={"trials": 8, "parallel": 1, "retries": 0},
        stop={"target": BOOST},  # every cheap result beats it; no station result can
    )
    info = campaign.run()
    trials = campaign.trials()
    assert any(t.params["fidelity"] == "simulation" for t in trials[:-1])
    assert info.n_trials == 8 and info.stop_reason == "trial budget of 8 used"
    assert campaign.spec.target == "robot"  # the costliest level by default
    assert info.best is not None and info.best < BOOST


@pytest.mark.parametrize("parallel", [1, 3])
def test_cost_budget_stops_new_trials(platform: Platform, parallel: int) -> None:
    budget = 25.0
    campaign = _campaign(
        platform,
        runner=None,
        fidelities=_fidelities("electrolyte_simulation"),
        budget={"trials": 60, "parallel": parallel, "retries": 0, "cost": budget},
    )
    info = campaign.run()
    costs = [1.0 if t.params["fidelity"] == "simulation" else 10.0 for t in campaign.trials()]
    assert info.state == "completed" and info.n_failed == 0
    assert info.stop_reason == "cost budget of 25 used"
    assert info.n_trials < 60
    # reached, and overshot by at most what was in flight: parallel x the costliest level
    assert budget <= sum(costs) <= budget + parallel * 10.0
    # the last batch (at most `parallel` trials) was started while the budget was not reached
    assert sum(costs[:-parallel]) < budget


# -- warm start ----------------------------------------------------------------------------

GRID = {
    "x": {"type": "int", "low": 0, "high": 4},
    "y": {"type": "choice", "values": ["a", "b"]},
}
"""Ten points: a warm start can cover most of them."""
WARM = [(0, "a"), (1, "a"), (2, "a"), (0, "b"), (3, "b"), (4, "b")]


def _table(rows: list[tuple[Any, Any, Any]]) -> pa.Table:
    xs, ys, values = zip(*rows, strict=True)
    return pa.table(
        {
            "x": pa.array(xs, pa.int64()),
            "y": pa.array(ys, pa.string()),
            "value": pa.array(values, pa.float64()),
        }
    )


def _quadratic(x: int) -> float:
    return (x - 0.3) ** 2


def _grid_campaign(platform: Platform, warm_start: str | None, trials: int) -> Any:
    return _campaign(
        platform,
        name="warm",
        space=GRID,
        objectives={"value": "min"},
        runner=_local("quadratic"),
        warm_start=warm_start,
        budget={"trials": trials, "parallel": 1, "retries": 0},
    )


def test_warm_start_is_pinned_told_first_and_skips_unusable_rows(platform: Platform) -> None:
    platform.datasets.add_table("screen", _table([(x, "a", 9.0) for x in range(5)]))
    bad = [(7, "a", 1.0), (1, "c", 1.0), (2, "b", None), (1, "b", math.nan)]
    good = [(x, y, _quadratic(x)) for x, y in WARM]
    platform.datasets.add_table("screen", _table(good[:3] + bad + good[3:]))

    campaign = _grid_campaign(platform, "screen", trials=4)
    assert campaign.spec.warm_start == "screen@2"
    assert platform.campaigns.get(campaign.id).spec.warm_start == "screen@2"
    warm = load_warm_start(campaign.spec, platform.datasets)
    assert warm is not None and (warm.ref, warm.skipped) == ("screen@2", 4)
    assert [(o.params["x"], o.params["y"]) for o in warm.observations] == WARM

    info = campaign.run()
    assert info.warm_start == "screen@2" and info.n_observed == 4
    proposed = {(t.params["x"], t.params["y"]) for t in campaign.trials()}
    # the planner knew the six warm points: its four proposals are exactly the rest
    everything = set(itertools.product(range(5), ["a", "b"]))
    assert proposed == everything - set(WARM)
    # best counts the campaign's own observations, not the warm start's (x=0 is warm)
    assert info.best == pytest.approx(_quadratic(1))


def test_a_campaign_warm_starts_from_another_campaigns_observations(platform: Platform) -> None:
    first = _grid_campaign(platform, None, trials=6).run()
    assert first.dataset is not None
    name = first.dataset.split("@")[0]
    second = _campaign(
        platform,
        name="second",
        space=GRID,
        objectives={"value": "min"},
        runner=_local("quadratic"),
        warm_start=name,
        budget={"trials": 4, "parallel": 2, "retries": 0},
    )
    assert second.spec.warm_start == first.dataset
    second.run()
    seen = {(t.params["x"], t.params["y"]) for t in platform.campaigns.get(first.id).trials()}
    proposed = {(t.params["x"], t.params["y"]) for t in second.trials()}
    assert len(seen) == 6 and len(proposed) == 4
    assert not seen & proposed


def test_interrupted_warm_started_campaign_resumes_from_the_pinned_version(
    platform: Platform, recorder: type[_Recorder]
) -> None:
    platform.datasets.add_table("screen", _table([(x, y, _quadratic(x)) for x, y in WARM]))
    campaign = _grid_campaign(platform, "screen", trials=4)

    recorder.stop_after = 2
    with pytest.raises(KeyboardInterrupt):
        campaign.run(progress=True)
    recorder.stop_after = None
    stopped = campaign.info()
    assert (stopped.state, stopped.n_observed) == ("stopped", 2)

    # a newer version that covers the whole grid must not leak into the resumed run
    everything = set(itertools.product(range(5), ["a", "b"]))
    platform.datasets.add_table("screen", _table([(x, y, 0.0) for x, y in sorted(everything)]))

    info = platform.campaigns.resume(campaign.id).run()
    assert (info.state, info.n_trials, info.n_observed) == ("completed", 4, 4)
    assert info.warm_start == "screen@1"
    proposed = [(t.params["x"], t.params["y"]) for t in campaign.trials()]
    assert len(set(proposed)) == 4, f"a point was proposed twice: {proposed}"
    assert set(proposed) == everything - set(WARM)


def test_warm_start_records_that_the_campaign_used_the_dataset_version(
    platform: Platform,
) -> None:
    platform.datasets.add_table("screen", _table([(x, y, _quadratic(x)) for x, y in WARM]))
    version = platform.datasets.get("screen", 1)
    campaign = _grid_campaign(platform, "screen@1", trials=2)
    with platform._db.session(write=False) as s:
        edges = s.scalars(
            select(ProvenanceEdge).where(
                ProvenanceEdge.subject_kind == "campaign",
                ProvenanceEdge.subject_id == campaign.id,
            )
        ).all()
    assert [(e.relation, e.object_kind, e.object_id) for e in edges] == [
        ("used", "dataset_version", version.id)
    ]
    info = campaign.run()
    assert info.dataset is not None
    name, number = info.dataset.split("@")
    # observations <- trial <- campaign <- the warm-start version
    lineage = platform.lineage.text("dataset", name, int(number))
    assert "used: dataset screen@1" in lineage, lineage
