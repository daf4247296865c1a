"""Run every planner on every benchmark problem, side by side, and append the results.

A *job* is one (problem, planner, batch size, seed): a fresh planner, built with
``make_planner(kind, space, objectives, seed=seed, options=problem options)``, runs a
closed loop until ``--budget`` evaluations:

    ask(b) -> evaluate all b points -> tell all b observations -> repeat

i.e. synchronous batches, nothing pending between rounds (the last batch is cut to the
budget). Planners are never told the budget, so the score after 30 evaluations of a
60-evaluation job is that of a 30-evaluation run. Each planner uses its own defaults
(initial design included): that is the comparison.

Each finished job is appended to ``--out`` as one JSON line at once, and jobs already in
the file are skipped, so an interrupted run resumes where it stopped. A line holds:

- ``problem, planner, batch, seed, budget, fingerprint`` (the job's key; the fingerprint
  hashes the problem's definition, so jobs of a problem that changed run again),
  ``score`` (``regret`` or ``hypervolume``);
- ``trace``: the best-so-far score after each evaluation (entry ``k - 1`` is the score
  after ``k`` evaluations, within a batch in the order the planner returned the points);
- ``asks``: ``[observations told before the ask, points asked, seconds]`` per ``ask``;
  ``tell_s`` (all ``tell`` calls), ``total_s`` (the job, evaluations included);
- ``infeasible``: evaluations that broke a parameter or outcome constraint (scored as the
  problem's worst value), ``param_infeasible``: proposals that broke a parameter
  constraint (a planner bug);
- ``error`` / ``error_stage`` (``build``, ``ask``, ``tell``, ``evaluate``) when the job
  stopped early, ``warnings`` (distinct warnings with counts), ``env`` (versions, commit).

Jobs run in a process pool (``spawn``) whose workers use one BLAS/OpenMP thread and one
PyTorch thread, so jobs do not compete for cores inside a worker; use at most as many
workers as cores, since the ask times are wall-clock times.

Usage::

    python benchmarks/planners/run.py --planners gp,ax,optuna,random --seeds 10 \\
        --budget 60 --batch 1,4 --workers 2 --out benchmarks/planners/results.jsonl
    python benchmarks/planners/report.py benchmarks/planners/results.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results.jsonl"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
KEY = ("problem", "planner", "batch", "seed", "budget", "fingerprint")
PACKAGES = ("numpy", "scipy", "ax-platform", "botorch", "torch", "optuna")


def single_threaded() -> None:
    """One BLAS/OpenMP thread: must run before NumPy or PyTorch is imported."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"


def init_worker(uses_torch: bool) -> None:
    """Pool initializer: single-threaded BLAS (inherited too) and PyTorch."""
    single_threaded()
    sys.path.insert(0, str(HERE))
    if uses_torch:
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(1)
        # Fails once parallel work has started; the intra-op limit above is what matters.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


def job_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record[k] for k in KEY)


# -- one job (in a worker) ---------------------------------------------------------------------


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one closed loop and return its record (never raises for a planner's error)."""
    import warnings

    import problems
    from threadpoolctl import threadpool_limits

    caught: Counter[str] = Counter()
    with warnings.catch_warnings(record=True) as log, threadpool_limits(1):
        warnings.simplefilter("always")
        record = _loop(problems.get(job["problem"]), job, log, caught)
    record["warnings"] = dict(caught.most_common(5))
    return record


def _loop(
    problem: Any, job: dict[str, Any], log: list[Any], caught: Counter[str]
) -> dict[str, Any]:
    from genesis_platform.planning.protocols import Observation
    from genesis_platform.planning.registry import make_planner

    budget, batch = job["budget"], job["batch"]
    record: dict[str, Any] = {
        **job,
        "score": problem.score_name,
        "trace": [],
        "asks": [],
        "tell_s": 0.0,
        "error": None,
        "error_stage": None,
    }
    start = time.perf_counter()
    points: list[dict[str, Any]] = []
    true: list[dict[str, float]] = []
    stage = "build"
    try:
        planner = make_planner(
            job["planner"],
            problem.space,
            problem.objectives,
            seed=job["seed"],
            options=problem.options,
        )
        rng = problem.noise_rng(job["seed"])
        while len(points) < budget:
            n = min(batch, budget - len(points))
            stage = "ask"
            t0 = time.perf_counter()
            asked = planner.ask(n)
            record["asks"].append([len(points), n, time.perf_counter() - t0])
            if len(asked) != n:
                raise RuntimeError(f"asked for {n} points, got {len(asked)}")
            stage = "evaluate"
            batch_obs = []
            for i, point in enumerate(asked):
                checked = problem.space.validate(point, where=f"ask[{i}]")
                told, values = problem.measure(checked, rng)
                points.append(checked)
                true.append(values)
                batch_obs.append(Observation(checked, told))
            stage = "tell"
            t0 = time.perf_counter()
            planner.tell(batch_obs)
            record["tell_s"] += time.perf_counter() - t0
            _drain(log, caught)
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["error_stage"] = stage
        record["traceback"] = traceback.format_exc(limit=-6)
    _drain(log, caught)
    record["total_s"] = time.perf_counter() - start
    record["n_evaluations"] = len(points)
    record["trace"] = problem.trace(points, true)
    record["infeasible"] = sum(
        not problem.feasible(p, v) for p, v in zip(points, true, strict=True)
    )
    record["param_infeasible"] = sum(not problem.space.is_feasible(p) for p in points)
    return record


def _drain(log: list[Any], caught: Counter[str]) -> None:
    """Count warnings by category and message start, and forget them (bounded memory)."""
    for w in log:
        caught[f"{w.category.__name__}: {str(w.message)[:160]}"] += 1
    log.clear()


# -- the run (in the parent) -------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Versions and the genesis commit, stored with every job."""
    env: dict[str, Any] = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            env[package] = metadata.version(package)
    root = HERE.parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        env["commit"] = commit + ("+dirty" if dirty else "")
    except OSError:
        pass
    return env


def available(kinds: list[str]) -> dict[str, str]:
    """Planner kinds that cannot be built here, with the reason."""
    from genesis_platform.errors import InvalidInput
    from genesis_platform.planning.registry import make_planner
    from genesis_platform.planning.space import Real, Space

    space = Space({"x": Real(0.0, 1.0)})
    missing = {}
    for kind in kinds:
        try:
            make_planner(kind, space, {"y": "min"}, seed=0)
        except InvalidInput as exc:
            missing[kind] = str(exc)
    return missing


def done_keys(path: Path, retry_errors: bool) -> set[tuple[Any, ...]]:
    """Keys of the jobs already in the results file (those that failed, unless retrying)."""
    keys: set[tuple[Any, ...]] = set()
    if not path.exists():
        return keys
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "fingerprint" not in record:
            continue
        if retry_errors and record.get("error") and record.get("error_stage") != "build":
            continue
        keys.add(job_key(record))
    return keys


def summary(record: dict[str, Any]) -> str:
    """One progress line for a finished job."""
    head = f"{record['problem']} {record['planner']} b={record['batch']} seed={record['seed']}: "
    if record["error"] and not record["trace"]:
        return head + f"ERROR ({record['error_stage']}) {record['error'][:120]}"
    score = record["trace"][-1] if record["trace"] else float("nan")
    asks = [f"{1e3 * s:.0f}" for n, _, s in record["asks"] if n >= 20][:1]
    text = f"{record['score']} {score:.4g} after {len(record['trace'])}, {record['total_s']:.1f} s"
    if asks:
        text += f", ask@20 {asks[0]} ms"
    if record["error"]:
        text += f"; stopped by {record['error_stage']} error: {record['error'][:100]}"
    return head + text


def main() -> None:
    single_threaded()
    sys.path.insert(0, str(HERE))
    import problems

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planners", default="gp,ax,optuna,random", help="comma-separated kinds")
    parser.add_argument(
        "--problems",
        default=",".join(problems.REQUIRED),
        help="comma-separated; default: the issue's problems; extra: "
        + ", ".join(n for n in problems.BUILDERS if n not in problems.REQUIRED),
    )
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (see --first-seed)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=60, help="evaluations per job")
    parser.add_argument("--batch", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--workers", type=int, default=2, help="processes (at most the cores)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON lines, appended")
    parser.add_argument("--retry-errors", action="store_true", help="rerun jobs that failed")
    parser.add_argument(
        "--skip-unavailable", action="store_true", help="drop planners that cannot be built"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the jobs and exit")
    args = parser.parse_args()

    kinds = [k for k in args.planners.split(",") if k]
    names = [n for n in args.problems.split(",") if n]
    unknown = [n for n in names if n not in problems.BUILDERS]
    if unknown:
        parser.error(f"unknown problems {unknown}; known: {', '.join(problems.BUILDERS)}")
    missing = available(kinds)
    for kind, reason in missing.items():
        print(f"planner {kind!r} is not available: {reason}", file=sys.stderr)
    if missing and not args.skip_unavailable:
        sys.exit("give --skip-unavailable to run without them")
    kinds = [k for k in kinds if k not in missing]
    # Builds every problem (fitting or loading the emulators) once, before the workers start.
    fingerprints = {name: problems.get(name).fingerprint() for name in names}
    batches = [int(b) for b in args.batch.split(",")]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    # Seeds outermost: an interrupted run holds every planner and problem for its first seeds.
    jobs = [
        {
            "problem": p,
            "planner": k,
            "batch": b,
            "seed": s,
            "budget": args.budget,
            "fingerprint": fingerprints[p],
        }
        for s in seeds
        for p in names
        for k in kinds
        for b in batches
    ]
    done = done_keys(args.out, args.retry_errors)
    todo = [j for j in jobs if job_key(j) not in done]
    print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} already in {args.out}, {len(todo)} to run")
    if args.dry_run or not todo:
        for job in todo:
            print("  ", *(job[k] for k in KEY))
        return
    env = environment()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    uses_torch = bool({"ax"} & set(kinds))
    start = time.perf_counter()
    with (
        args.out.open("a") as out,
        ProcessPoolExecutor(
            max_workers=args.workers,
            mp_context=get_context("spawn"),
            initializer=init_worker,
            initargs=(uses_torch,),
        ) as pool,
    ):
        running: set[Future[dict[str, Any]]] = {pool.submit(run_job, j) for j in todo}
        finished = 0
        try:
            while running:
                complete, running = wait(running, return_when=FIRST_COMPLETED)
                for future in complete:
                    record = {**future.result(), "env": env}
                    out.write(json.dumps(record) + "\n")
                    out.flush()
                    finished += 1
                    elapsed = time.perf_counter() - start
                    eta = elapsed / finished * (len(todo) - finished)
                    when = f"{elapsed / 60:.1f} min, ~{eta / 60:.0f} min left"
                    print(f"[{finished}/{len(todo)} {when}] {summary(record)}", flush=True)
        except KeyboardInterrupt:
            print("interrupted: finished jobs are saved; run again to resume", file=sys.stderr)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    print(f"done: {len(todo)} jobs in {(time.perf_counter() - start) / 60:.1f} min -> {args.out}")


if __name__ == "__main__":
    main()
