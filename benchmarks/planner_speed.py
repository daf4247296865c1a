"""How long the gp planner takes to propose, at 50 observations of Hartmann-6.

Runs the gp planner on Hartmann-6 for 50 evaluations with several seeds and times the
proposal made right after the 50th observation is told, as the closed loop would:

- ``ask(1)``: one point (hyperparameter fit, warm-started, plus acquisition);
- ``ask(4, pending)``: a batch of four while two other points are still running.

Usage: ``python benchmarks/planner_speed.py [--repeats 7]``. Target: median ``ask(1)`` at
most 100 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from genesis_platform.planning.gp import GaussianProcessPlanner
from genesis_platform.planning.protocols import Observation, Params
from genesis_platform.planning.space import Real, Space
from planners.problems import HARTMANN6_MIN
from planners.problems import hartmann6 as hartmann6_of

TARGET_MS = 100.0
N_OBSERVATIONS = 50

SPACE = Space({f"x{i}": Real(0.0, 1.0) for i in range(6)})
H6_MIN = HARTMANN6_MIN


def hartmann6(p: Params) -> float:
    """Hartmann-6 on the unit cube; its minimum is ``H6_MIN``."""
    return hartmann6_of(np.array([float(p[f"x{i}"]) for i in range(6)]))


def planner_at(seed: int, n_observations: int) -> tuple[GaussianProcessPlanner, float]:
    """A gp planner after ``n_observations`` evaluations; also its best value."""
    planner = GaussianProcessPlanner(SPACE, {"y": "min"}, seed=seed)
    best = np.inf
    for _ in range(n_observations):
        [point] = planner.ask(1)
        value = hartmann6(point)
        best = min(best, value)
        planner.tell([Observation(point, {"y": value})])
    return planner, best


def timed(fn: object) -> float:
    """Milliseconds one call of ``fn()`` takes."""
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return 1e3 * (time.perf_counter() - start)


def measure(seed: int) -> dict[str, float]:
    """Times (ms) of one seed's proposals at 50 observations, and its regret."""
    planner, best = planner_at(seed, N_OBSERVATIONS)
    pending = [dict(p) for p in copy.deepcopy(planner).ask(2)]
    fit_copy, batch_copy = copy.deepcopy(planner), copy.deepcopy(planner)
    with threadpool_limits(1):
        fit = timed(fit_copy._fit_all)
    return {
        "ask(1)": timed(lambda: planner.ask(1)),
        "of which fit": fit,
        "ask(4, 2 pending)": timed(lambda: batch_copy.ask(4, pending)),
        "regret": best - H6_MIN,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="seeds to time (>= 5)")
    args = parser.parse_args()
    runs = [measure(seed) for seed in range(max(5, args.repeats))]
    print(
        f"gp planner, Hartmann-6 (6 dimensions), {N_OBSERVATIONS} observations, {len(runs)} seeds"
    )
    for key in ("ask(1)", "of which fit", "ask(4, 2 pending)"):
        values = [r[key] for r in runs]
        print(
            f"  {key:18} median {statistics.median(values):6.1f} ms"
            f"  (min {min(values):.1f}, max {max(values):.1f})"
        )
    median = statistics.median(r["ask(1)"] for r in runs)
    print(f"  ask(1) median / {TARGET_MS:.0f} ms target = {median / TARGET_MS:.2f}")
    regret = statistics.median(r["regret"] for r in runs)
    print(f"  simple regret after {N_OBSERVATIONS} evaluations: median {regret:.4f}")


if __name__ == "__main__":
    main()
