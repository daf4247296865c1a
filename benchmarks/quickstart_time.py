"""Wall time of the README's main job: the quickstart campaign, end to end.

Runs ``genesis campaign run examples/quickstart.yaml`` in a fresh temporary home (the
package is already installed) and reports the wall time against the 2-minute target.

    python benchmarks/quickstart_time.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
TARGET_S = 120.0


def one_run() -> float:
    """Seconds for one quickstart campaign, process start to exit."""
    with tempfile.TemporaryDirectory() as home:
        start = time.perf_counter()
        subprocess.run(
            ["genesis", "campaign", "run", "examples/quickstart.yaml", "--quiet"],
            cwd=ROOT,
            env={**os.environ, "GENESIS_HOME": home},
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = [one_run() for _ in range(args.repeats)]
    median = statistics.median(times)
    print(f"quickstart runs: {', '.join(f'{t:.1f} s' for t in times)}")
    print(f"median: {median:.1f} s (target < {TARGET_S:.0f} s); ratio {median / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
