"""Bookkeeping cost per trial of the closed loop, against the bare planner loop.

A 1,000-trial campaign with the random planner on a zero-latency simulated station runs
through the platform (catalog writes, audit records, provenance, snapshots every 10
trials); the same planner and station run in a bare ask/run/tell loop in the same process.
The difference per trial is what Genesis adds. Target: at most 5 ms per trial on SQLite.

    python benchmarks/loop_overhead.py [--trials 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from genesis_platform import Platform
from genesis_platform.labs.protocols import Operation
from genesis_platform.labs.registry import open_station
from genesis_platform.planning.protocols import Observation
from genesis_platform.planning.registry import make_planner
from genesis_platform.planning.space import Choice, Int, Real, Space

SPACE = {
    "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
    "temperature_c": {"type": "int", "low": 10, "high": 60},
    "solvent": {"type": "choice", "values": ["EC-DMC", "EC-EMC", "PC"]},
}
TARGET_MS = 5.0


def bare_loop(trials: int) -> float:
    """Seconds for ask → run → tell, one trial at a time, with nothing recorded."""
    space = Space(
        {
            "salt_molality": Real(0.1, 3.0),
            "temperature_c": Int(10, 60),
            "solvent": Choice(["EC-DMC", "EC-EMC", "PC"]),
        }
    )
    planner = make_planner("random", space, {"conductivity": "max"}, seed=1)
    station = open_station("electrolyte", latency_s=0.0, slots=1, seed=1)
    start = time.perf_counter()
    for i in range(trials):
        [params] = planner.ask(1)
        measurement = station.run(Operation(f"op-{i}", dict(params))).result()
        planner.tell([Observation(params, dict(measurement.values))])
    elapsed = time.perf_counter() - start
    getattr(station, "close", lambda: None)()
    return elapsed


def platform_loop(trials: int) -> float:
    """Seconds for the same trials as a campaign on the embedded platform."""
    with tempfile.TemporaryDirectory() as home, Platform.open(home) as p:
        campaign = p.campaigns.create(
            name="overhead",
            space=SPACE,
            objectives={"conductivity": "max"},
            planner="random",
            runner={"station": "electrolyte", "options": {"latency_s": 0.0}},
            budget={"trials": trials, "parallel": 1},
            seed=1,
        )
        start = time.perf_counter()
        info = campaign.run()
        elapsed = time.perf_counter() - start
        assert info.n_observed == trials, info
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    bare = bare_loop(args.trials)
    full = platform_loop(args.trials)
    per_trial_ms = (full - bare) / args.trials * 1000
    print(f"trials: {args.trials}")
    print(f"bare planner loop:   {bare:.2f} s ({bare / args.trials * 1000:.2f} ms/trial)")
    print(f"platform campaign:   {full:.2f} s ({full / args.trials * 1000:.2f} ms/trial)")
    print(f"bookkeeping/trial:   {per_trial_ms:.2f} ms (target ≤ {TARGET_MS} ms)")
    print(f"ratio to target:     {per_trial_ms / TARGET_MS:.2f}")
    print(f"platform/bare ratio: {full / bare:.1f}x")


if __name__ == "__main__":
    main()
