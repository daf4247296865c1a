"""Dispatch speed: no-op tasks through Genesis and through the raw engines, side by side.

For each engine, in a process of its own, the same work runs raw and through Genesis,
``--repeats`` times (median reported; a fresh ``GENESIS_HOME`` for every Genesis run):

- ``local``: ``concurrent.futures.ProcessPoolExecutor(2)`` against ``p.tasks.submit("local",
  ...)``, every task recorded in the catalog (SQLite; the records are counted after the run);
- ``ray``: a ``@ray.remote`` no-op on a local Ray with 2 CPUs against ``RayExecutor`` and
  ``p.tasks`` on a ``ray`` site, all on that same Ray;
- ``slurm``: ``sbatch --wrap true`` against ``p.tasks`` on a ``slurm`` site (one job per task):
  submissions accepted per second (the job id is known) and jobs finished per second;
- ``pilot``: ``p.tasks`` on a ``slurm`` site with ``pilot=true`` (many tasks per batch job),
  when ``genesis_platform.compute.pilot`` exists.

Throughput submits all tasks at once and waits for the last one; latency is the median round
trip (submit, then wait for the result) of one tiny task at a time.

Usage::

    python benchmarks/dispatch.py                         # every engine, 5,000 tasks, 3 runs
    python benchmarks/dispatch.py --engines local,ray --quick   # smoke run: fewer tasks, 1 run

Slurm and the pilot need the test cluster: ``eval "$(./scripts/slurm start)"`` first.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

NOOP = "genesis_platform.testing.functions:noop"
ENGINES = ("local", "ray", "slurm", "pilot")
WORKERS = 2

# Targets (the dispatch issue).
LOCAL_MIN_RATE = 2_000.0  # tasks/s through the local site, every task recorded
RAY_MIN_RATIO = 0.9  # Genesis on Ray over raw Ray, throughput
RAY_MAX_ADDED_MS = 1.0  # Genesis on Ray over raw Ray, latency
SLURM_MIN_ACCEPTED = 5.0  # submissions/s (DOE IRI API requirement P3)
PILOT_MIN_RATE = 500.0  # no-op tasks/s through a pilot on the single-node Slurm

Figures = dict[str, Any]


# -- helpers ----------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn()`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def round_trip_ms(fn: Callable[[], object], count: int) -> float:
    """Median milliseconds of ``count`` sequential calls of ``fn()``."""
    times = [timed(fn) for _ in range(count)]
    return 1e3 * statistics.median(times)


def wait_all(futures: Sequence[concurrent.futures.Future[Any]]) -> None:
    """Wait for every future; raise the first failure (a benchmark of failures is no use)."""
    concurrent.futures.wait(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise RuntimeError(f"a task failed: {error!r}") from error


@contextlib.contextmanager
def fresh_home() -> Iterator[Path]:
    """A new, empty ``GENESIS_HOME`` (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="genesis-dispatch-") as home:
        yield Path(home)


def records(home: Path, site: str) -> dict[str, int]:
    """Task records of ``site`` in the catalog of ``home``, counted by state."""
    with contextlib.closing(sqlite3.connect(home / "catalog.sqlite")) as db:
        rows = db.execute(
            "SELECT state, COUNT(*) FROM tasks WHERE site = ? GROUP BY state", (site,)
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


def median_of(runs: list[Figures]) -> Figures:
    """The median of every number over the runs (other values from the first run)."""
    out: Figures = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = statistics.median(run[key] for run in runs)
    out["runs"] = runs
    return out


# -- engines, each run in a process of its own -----------------------------------------------


def measure(
    submit: Callable[[], Any],
    gather: Callable[[list[Any]], object],
    tasks: int,
    warmup: int,
    latency_tasks: int,
) -> tuple[float, float]:
    """Throughput (tasks/s) and median round trip (ms) of ``submit``, after a warm-up.

    ``gather`` waits for a list of what ``submit`` returned.
    """
    gather([submit() for _ in range(warmup)])
    rate = tasks / timed(lambda: gather([submit() for _ in range(tasks)]))
    latency = round_trip_ms(lambda: gather([submit()]), latency_tasks)
    return rate, latency


def measure_site(
    run: Figures,
    site: str,
    options: dict[str, Any] | None,
    counts: tuple[int, int, int],
) -> None:
    """``p.tasks`` on ``site`` (added with ``options`` unless None) of a fresh platform.

    Sets ``genesis_rate`` and ``genesis_latency_ms``, and the records counted afterwards
    (every task must be recorded). ``counts``: tasks, warm-up tasks, round trips.
    """
    from genesis_platform import Platform

    tasks, warmup, latency_tasks = counts
    with fresh_home() as home:
        with Platform.open(home) as p:
            if options is not None:
                p.sites.add(site, site, options)

            def submit() -> Any:
                return p.tasks.submit(site, function=NOOP)

            rate, latency = measure(submit, wait_all, tasks, warmup, latency_tasks)
        counted = records(home, site)  # after close: every record is written
    run["genesis_rate"], run["genesis_latency_ms"] = rate, latency
    run["expected_records"] = warmup + tasks + latency_tasks
    run["completed_records"] = counted.get("completed", 0)
    run["all_records"] = sum(counted.values())


def run_local(tasks: int, repeats: int, latency_tasks: int) -> Figures:
    """ProcessPoolExecutor(2) against LocalExecutor(2) and the local site of a platform."""
    from genesis_platform.compute.local import LocalExecutor, resolve_function
    from genesis_platform.compute.protocols import TaskSpec

    noop = resolve_function(NOOP)
    spec = TaskSpec(function=NOOP)
    warmup = 4 * WORKERS
    runs = []
    for _ in range(repeats):
        run: Figures = {}
        with concurrent.futures.ProcessPoolExecutor(WORKERS) as pool:
            run["raw_rate"], run["raw_latency_ms"] = measure(
                lambda pool=pool: pool.submit(noop), wait_all, tasks, warmup, latency_tasks
            )
        with LocalExecutor(WORKERS) as executor:
            run["executor_rate"], run["executor_latency_ms"] = measure(
                lambda ex=executor: ex.submit(spec), wait_all, tasks, warmup, latency_tasks
            )
        measure_site(run, "local", None, (tasks, warmup, latency_tasks))
        runs.append(run)
        print(f"  local run: {json.dumps(run)}", file=sys.stderr)
    return median_of(runs)


def run_ray(tasks: int, repeats: int, latency_tasks: int, bundle: bool = True) -> Figures:
    """A raw Ray no-op against RayExecutor and a ``ray`` site, on one local Ray.

    ``bundle``: Genesis may send short tasks in bundles (its default; False: one Ray task
    per task, as raw Ray).
    """
    import ray

    from genesis_platform.compute.protocols import TaskSpec
    from genesis_platform.compute.ray import RayExecutor

    ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)

    @ray.remote
    def noop() -> None:
        return None

    spec = TaskSpec(function=NOOP)
    warmup = 200
    runs = []
    for _ in range(repeats):
        run: Figures = {}
        run["raw_rate"], run["raw_latency_ms"] = measure(
            noop.remote, ray.get, tasks, warmup, latency_tasks
        )
        # Shares this process's connection to Ray (no address, no num_cpus).
        executor = RayExecutor(bundle=bundle)
        run["executor_rate"], run["executor_latency_ms"] = measure(
            lambda ex=executor: ex.submit(spec), wait_all, tasks, warmup, latency_tasks
        )
        executor.shutdown(wait=True)
        measure_site(run, "ray", {"bundle": bundle}, (tasks, warmup, latency_tasks))
        runs.append(run)
        print(f"  ray run: {json.dumps(run)}", file=sys.stderr)
    ray.shutdown()
    return median_of(runs)


def slurm_missing() -> str | None:
    """Why the test cluster cannot be used, or None when it answers."""
    if shutil.which("sbatch") is None or not os.environ.get("SLURM_CONF"):
        return 'no Slurm here; start it with: eval "$(./scripts/slurm start)"'
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        return f"sinfo does not answer ({probe.stderr.strip()}); ./scripts/slurm start"
    return None


def queued(job_ids: list[str]) -> int:
    """How many of ``job_ids`` Slurm still lists (pending, running or completing)."""
    listed = subprocess.run(
        ["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
    )
    return len(set(listed.stdout.split()) & set(job_ids))


def raw_sbatch(jobs: int, folder: Path) -> tuple[float, float]:
    """``sbatch --wrap true`` ``jobs`` times: (accepted/s, finished/s)."""
    start = time.perf_counter()
    ids = []
    for _ in range(jobs):
        done = subprocess.run(
            ["sbatch", "--parsable", "-o", str(folder / "%j.out"), "--wrap", "true"],
            capture_output=True,
            text=True,
            check=True,
        )
        ids.append(done.stdout.strip().split(";")[0])
    accepted = time.perf_counter() - start
    while queued(ids):
        time.sleep(0.05)
    return jobs / accepted, jobs / (time.perf_counter() - start)


def count_where(home: Path, site: str, condition: str) -> int:
    """Task records of ``site`` meeting an SQL ``condition``."""
    with contextlib.closing(sqlite3.connect(home / "catalog.sqlite", timeout=30)) as db:
        query = f"SELECT COUNT(*) FROM tasks WHERE site = ? AND {condition}"
        return int(db.execute(query, (site,)).fetchone()[0])


def run_slurm(jobs: int, repeats: int, poll_interval_s: float) -> Figures:
    """``sbatch --wrap true`` against a ``slurm`` site, one job per task."""
    from genesis_platform import Platform
    from genesis_platform.compute.protocols import TaskSpec

    runs = []
    for _ in range(repeats):
        run: Figures = {}
        with fresh_home() as home:
            run["raw_accepted"], run["raw_finished"] = raw_sbatch(jobs, home)
            with Platform.open(home) as p:
                p.sites.add("hpc", "slurm", {"poll_interval_s": poll_interval_s})
                p.tasks.submit("hpc", function=NOOP).result(timeout=120)  # the work dir, PSI/J
                before = count_where(home, "hpc", "external_id != ''")
                start = time.perf_counter()
                futures = [p.tasks.submit("hpc", function=NOOP) for _ in range(jobs)]
                run["submit_calls_s"] = time.perf_counter() - start
                # Accepted: Slurm gave the job its id, which the task's record holds.
                while count_where(home, "hpc", "external_id != ''") < before + jobs:
                    time.sleep(0.01)
                run["genesis_accepted"] = jobs / (time.perf_counter() - start)
                wait_all(futures)
                run["genesis_finished"] = jobs / (time.perf_counter() - start)
                # The executor alone: sbatch through PSI/J, without the task service.
                executor = p.sites.executor("hpc")
                start = time.perf_counter()
                direct = [executor.submit(TaskSpec(function=NOOP)) for _ in range(jobs)]
                run["executor_accepted"] = jobs / (time.perf_counter() - start)
                wait_all(direct)
        runs.append(run)
        print(f"  slurm run: {json.dumps(run)}", file=sys.stderr)
    return median_of(runs)


def run_pilot(tasks: int, repeats: int, poll_interval_s: float) -> Figures:
    """No-op tasks through a pilot job on the ``slurm`` site."""
    from genesis_platform import Platform

    runs = []
    for _ in range(repeats):
        run: Figures = {}
        with fresh_home() as home, Platform.open(home) as p:
            options = {"pilot": True, "pilot_workers": WORKERS, "poll_interval_s": poll_interval_s}
            p.sites.add("pilot", "slurm", options)
            start = time.perf_counter()
            wait_all([p.tasks.submit("pilot", function=NOOP) for _ in range(4 * WORKERS)])
            run["first_tasks_s"] = time.perf_counter() - start  # the pilot job starts
            run["genesis_rate"] = tasks / timed(
                lambda: wait_all([p.tasks.submit("pilot", function=NOOP) for _ in range(tasks)])
            )
            run["genesis_latency_ms"] = round_trip_ms(
                lambda: p.tasks.submit("pilot", function=NOOP).result(), 50
            )
        runs.append(run)
        print(f"  pilot run: {json.dumps(run)}", file=sys.stderr)
    return median_of(runs)


def run_engine(engine: str, args: argparse.Namespace) -> Figures:
    """One engine's figures, or ``{"unavailable": reason}``."""
    if engine in ("slurm", "pilot"):
        missing = slurm_missing()
        if missing is not None:
            return {"unavailable": missing}
    if engine == "local":
        return run_local(args.tasks, args.repeats, args.latency_tasks)
    if engine == "ray":
        if importlib.util.find_spec("ray") is None:
            return {"unavailable": "Ray is not installed (pip install -e '.[ray]')"}
        return run_ray(args.tasks, args.repeats, args.latency_tasks, args.ray_bundle == "on")
    if engine == "slurm":
        return run_slurm(args.jobs, args.repeats, args.poll_interval_s)
    if importlib.util.find_spec("genesis_platform.compute.pilot") is None:
        return {"unavailable": "not available (no genesis_platform.compute.pilot)"}
    return run_pilot(args.pilot_tasks, args.repeats, args.poll_interval_s)


def in_subprocess(engine: str, args: argparse.Namespace) -> Figures:
    """Run one engine in a fresh interpreter (Ray allows one connection per process)."""
    argv = [
        sys.executable,
        __file__,
        "--run-engine",
        engine,
        *("--tasks", str(args.tasks), "--latency-tasks", str(args.latency_tasks)),
        *("--jobs", str(args.jobs), "--pilot-tasks", str(args.pilot_tasks)),
        *("--repeats", str(args.repeats), "--poll-interval-s", str(args.poll_interval_s)),
        *("--ray-bundle", args.ray_bundle),
    ]
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        return {"failed": f"exit status {done.returncode} (its stderr is above)"}
    figures: Figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# -- report -----------------------------------------------------------------------------------


def number(value: float) -> str:
    """A figure with about three significant digits and thousands separators."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(genesis: float, raw: float) -> str:
    """Genesis against raw, as a factor."""
    return f"{genesis / raw:.2f}x"


def added(genesis: float, raw: float) -> str:
    """What Genesis adds to a latency, ms."""
    return f"{genesis - raw:+.2f} ms"


def _engine_rows(engine: str, executor: str, run: dict[str, Any]) -> list[str]:
    """Throughput and latency rows of one engine: its executor and p.tasks against raw."""
    if "raw_rate" not in run:
        return []
    rows = []
    for key, name in (("executor", executor), ("genesis", "`p.tasks`, recorded")):
        rows.append(
            f"| {engine} | throughput, tasks/s ({name}) | {number(run['raw_rate'])} "
            f"| {number(run[f'{key}_rate'])} | {ratio(run[f'{key}_rate'], run['raw_rate'])} |"
        )
    for key, name in (("executor", executor), ("genesis", "`p.tasks`")):
        rows.append(
            f"| {engine} | latency, ms ({name}) | {run['raw_latency_ms']:.2f} "
            f"| {run[f'{key}_latency_ms']:.2f} "
            f"| {added(run[f'{key}_latency_ms'], run['raw_latency_ms'])} |"
        )
    return rows


def table(results: dict[str, Figures]) -> list[str]:
    """Markdown rows: engine, measure, raw, Genesis, Genesis/raw.

    Raw engines: ``ProcessPoolExecutor(2)``, a ``@ray.remote`` no-op, ``sbatch --wrap true``.
    """
    rows = [
        "| engine | measure | raw | Genesis | Genesis / raw |",
        "| --- | --- | ---: | ---: | ---: |",
    ]

    for engine, executor in (("local", "`LocalExecutor`"), ("ray", "`RayExecutor`")):
        rows += _engine_rows(engine, executor, results.get(engine, {}))
    slurm = results.get("slurm", {})
    if "raw_accepted" in slurm:
        rows.append(
            f"| slurm | submissions accepted/s (`sbatch` vs `p.tasks`) "
            f"| {number(slurm['raw_accepted'])} | {number(slurm['genesis_accepted'])} "
            f"| {ratio(slurm['genesis_accepted'], slurm['raw_accepted'])} |"
        )
        rows.append(
            f"| slurm | submissions accepted/s (`sbatch` vs `PsijExecutor.submit`) "
            f"| {number(slurm['raw_accepted'])} | {number(slurm['executor_accepted'])} "
            f"| {ratio(slurm['executor_accepted'], slurm['raw_accepted'])} |"
        )
        rows.append(
            f"| slurm | jobs finished/s, one job per task "
            f"| {number(slurm['raw_finished'])} | {number(slurm['genesis_finished'])} "
            f"| {ratio(slurm['genesis_finished'], slurm['raw_finished'])} |"
        )
    pilot = results.get("pilot", {})
    if "genesis_rate" in pilot:
        per_job = slurm.get("genesis_finished")
        versus = f"{pilot['genesis_rate'] / per_job:,.0f}x one job per task" if per_job else ""
        rows.append(
            f"| pilot | throughput, tasks/s (`p.tasks`, pilot site) | — "
            f"| {number(pilot['genesis_rate'])} | {versus} |"
        )
        rows.append(f"| pilot | latency, ms | — | {pilot['genesis_latency_ms']:.2f} | |")
    for engine, figures in results.items():
        for key in ("unavailable", "failed"):
            if key in figures:
                rows.append(f"| {engine} | {key} | | {figures[key]} | |")
    return rows


def verdicts(results: dict[str, Figures]) -> list[str]:
    """One line per target: met or NOT MET, with the figure."""

    def say(ok: bool, text: str) -> str:
        return f"- {'met' if ok else 'NOT MET'}: {text}"

    lines = []
    local = results.get("local", {})
    if "genesis_rate" in local:
        recorded = local["completed_records"] == local["expected_records"]
        lines.append(
            say(
                local["genesis_rate"] >= LOCAL_MIN_RATE and recorded,
                f"local site ≥ {LOCAL_MIN_RATE:,.0f} tasks/s with every task recorded: "
                f"{number(local['genesis_rate'])} tasks/s; {local['completed_records']:,} of "
                f"{local['expected_records']:,} tasks recorded as completed",
            )
        )
    else:
        lines.append(f"- not measured: local site ≥ {LOCAL_MIN_RATE:,.0f} tasks/s")
    ray = results.get("ray", {})
    if "genesis_rate" in ray:
        recorded = ray["completed_records"] == ray["expected_records"]
        for key, name in (("executor", "RayExecutor"), ("genesis", "p.tasks on a ray site")):
            share = ray[f"{key}_rate"] / ray["raw_rate"]
            records_note = (
                f"; {ray['completed_records']:,} of {ray['expected_records']:,} tasks recorded "
                "as completed"
                if key == "genesis"
                else ""
            )
            lines.append(
                say(
                    share >= RAY_MIN_RATIO and (recorded or key != "genesis"),
                    f"{name} ≥ {RAY_MIN_RATIO}x raw Ray's throughput: {share:.3f}x "
                    f"({number(ray[f'{key}_rate'])} vs {number(ray['raw_rate'])} tasks/s)"
                    + records_note,
                )
            )
        for key, name in (("executor", "RayExecutor"), ("genesis", "p.tasks on a ray site")):
            extra = ray[f"{key}_latency_ms"] - ray["raw_latency_ms"]
            lines.append(
                say(
                    extra <= RAY_MAX_ADDED_MS,
                    f"{name} adds ≤ {RAY_MAX_ADDED_MS:g} ms to Ray's latency: {extra:+.2f} ms "
                    f"({ray[f'{key}_latency_ms']:.2f} vs {ray['raw_latency_ms']:.2f} ms)",
                )
            )
    else:
        lines.append("- not measured: Genesis on Ray against raw Ray")
    slurm = results.get("slurm", {})
    if "genesis_accepted" in slurm:
        lines.append(
            say(
                slurm["genesis_accepted"] >= SLURM_MIN_ACCEPTED,
                f"Slurm site accepts ≥ {SLURM_MIN_ACCEPTED:g} submissions/s: "
                f"{number(slurm['genesis_accepted'])}/s",
            )
        )
    else:
        lines.append(f"- not measured: Slurm site ≥ {SLURM_MIN_ACCEPTED:g} submissions/s")
    pilot = results.get("pilot", {})
    if "genesis_rate" in pilot:
        lines.append(
            say(
                pilot["genesis_rate"] >= PILOT_MIN_RATE,
                f"pilot on the single-node Slurm ≥ {PILOT_MIN_RATE:,.0f} tasks/s: "
                f"{number(pilot['genesis_rate'])} tasks/s",
            )
        )
    else:
        reason = pilot.get("unavailable") or pilot.get("failed") or "not run"
        lines.append(f"- not measured: pilot ≥ {PILOT_MIN_RATE:,.0f} tasks/s ({reason})")
    return lines


def machine() -> str:
    """What ran the benchmark, and how busy the machine was."""
    import genesis_platform

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = [f"Python {platform.python_version()}"]
    with contextlib.suppress(Exception):
        import ray

        versions.append(f"Ray {ray.__version__}")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(genesis_platform.__file__).parent,
    ).stdout.strip()
    return (
        f"{dt.datetime.now().isoformat(timespec='minutes')}, {os.cpu_count()} CPUs, "
        f"load average {load}, {', '.join(versions)}, commit {commit or '?'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset")
    parser.add_argument("--tasks", type=int, default=5_000, help="no-op tasks per throughput run")
    parser.add_argument("--latency-tasks", type=int, default=200, help="round trips timed")
    parser.add_argument("--jobs", type=int, default=50, help="Slurm jobs per run")
    parser.add_argument("--pilot-tasks", type=int, default=5_000, help="tasks per pilot run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--poll-interval-s", type=float, default=0.2, help="Slurm site polling")
    parser.add_argument(
        "--ray-bundle",
        choices=("on", "off"),
        default="on",
        help="Genesis sends short Ray tasks in bundles (off: one Ray task each, as raw Ray)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: few tasks, 1 run")
    parser.add_argument("--json", action="store_true", help="also print all figures as JSON")
    parser.add_argument("--run-engine", help=argparse.SUPPRESS)  # internal: one engine
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.latency_tasks, args.jobs = 500, 50, 10
        args.pilot_tasks, args.repeats = 500, 1
    if args.run_engine:
        print(json.dumps(run_engine(args.run_engine, args)))
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engines {unknown}; choose from {list(ENGINES)}")
    started = machine()
    print(f"dispatch benchmark: {started}", flush=True)
    results = {}
    for engine in engines:
        print(f"{engine} ...", flush=True)
        results[engine] = in_subprocess(engine, args)
    print()
    print(
        f"{args.tasks:,} no-op tasks per throughput run, {args.latency_tasks} round trips, "
        f"{args.jobs} Slurm jobs, median of {args.repeats}; {WORKERS} workers"
    )
    print("\n".join(table(results)))
    print()
    print("Targets:")
    print("\n".join(verdicts(results)))
    print()
    print(f"finished: {machine()}")
    if args.json:
        print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
