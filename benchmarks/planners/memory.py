"""Peak resident memory of a planner planning with 500 observations in 10 dimensions.

Each planner runs in its own fresh subprocess (so the peak is its own): build it on a
10-d space (Ackley on ``[-32.768, 32.768]^10``), tell it 500 observations at once (uniform
random points, as a planner rebuilt from the catalog would be told them), then ``ask(1)``
and ``ask(4)``. Reported: the resident set size after the imports, before planning (after
the tell) and the peak (``getrusage(RUSAGE_SELF).ru_maxrss``), and the time of each ask.
BLAS and PyTorch use one thread, as in ``run.py``.

Usage: ``python benchmarks/planners/memory.py [--planners gp,ax] [--observations 500]``;
planners that cannot be built here (Ax without its extra) are reported as such. Writes
``benchmarks/planners/memory.json``, which ``report.py`` checks against the target: gp
under 500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LIMIT_MB = 500.0
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def rss_mb() -> float:
    """Current resident set size (Linux ``/proc``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    """Peak resident set size of this process so far, in MB (``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, n: int, d: int) -> dict[str, Any]:
    """Measure one planner in this (fresh) process."""
    import numpy as np

    from genesis_platform.planning.protocols import Observation
    from genesis_platform.planning.registry import make_planner
    from genesis_platform.planning.space import Real, Space

    sys.path.insert(0, str(HERE))
    from problems import ackley

    names = [f"x{i}" for i in range(d)]
    space = Space({name: Real(-32.768, 32.768) for name in names})
    rng = np.random.default_rng(0)
    x = rng.uniform(-32.768, 32.768, size=(n, d))
    observations = [
        Observation(dict(zip(names, row.tolist(), strict=True)), {"y": ackley(row)}) for row in x
    ]
    planner = make_planner(kind, space, {"y": "min"}, seed=0)
    if "torch" in sys.modules:  # imported by the planner (ax); never imported for gp
        sys.modules["torch"].set_num_threads(1)
    after_import = rss_mb()
    start = time.perf_counter()
    planner.tell(observations)
    tell_s = time.perf_counter() - start
    before = rss_mb()
    start = time.perf_counter()
    first = planner.ask(1)
    ask1_s = time.perf_counter() - start
    start = time.perf_counter()
    planner.ask(4, pending=first)
    ask4_s = time.perf_counter() - start
    return {
        "after_import_mb": after_import,
        "before_mb": before,
        "peak_mb": peak_mb(),
        "tell_s": tell_s,
        "ask1_s": ask1_s,
        "ask4_s": ask4_s,
    }


def measure(kind: str, n: int, d: int) -> dict[str, Any]:
    """Run :func:`child` in a subprocess and return what it printed (or the error)."""
    env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1")}
    cmd = [sys.executable, __file__, "--child", kind, "--observations", str(n), "--dims", str(d)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return dict(json.loads(lines[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planners", default="gp,ax")
    parser.add_argument("--observations", type=int, default=500)
    parser.add_argument("--dims", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "memory.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.observations, args.dims)))
        return
    results = {}
    for kind in args.planners.split(","):
        results[kind] = m = measure(kind, args.observations, args.dims)
        if "error" in m:
            print(f"{kind}: not measured: {m['error']}")
            continue
        print(
            f"{kind}: peak {m['peak_mb']:.0f} MB resident (after imports {m['after_import_mb']:.0f}"
            f" MB, before planning {m['before_mb']:.0f} MB); tell {m['tell_s']:.2f} s, "
            f"ask(1) {m['ask1_s']:.2f} s, ask(4) {m['ask4_s']:.2f} s"
        )
    gp, ax = results.get("gp", {}), results.get("ax", {})
    if "peak_mb" in gp:
        verdict = "met" if gp["peak_mb"] < LIMIT_MB else "NOT MET"
        print(f"target: gp peak under {LIMIT_MB:.0f} MB: {verdict} ({gp['peak_mb']:.0f} MB)")
    if "peak_mb" in gp and "peak_mb" in ax:
        print(f"gp/ax peak ratio {gp['peak_mb'] / ax['peak_mb']:.2f}")
    data = {
        "observations": args.observations,
        "dims": args.dims,
        "python": sys.version.split()[0],
        "planners": results,
    }
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
