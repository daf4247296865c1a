"""Station drivers: what a Genesis driver adds over talking to the instrument directly.

Sections (``--parts``, comma-separated; default: all):

- ``sila``: the round trip of one operation through ``SilaStation`` (``run(op).result()``)
  against a bare ``sila2`` client calling the same observable command (``RunOperation``) on
  the same server: start it, poll ``done`` every 0.5 ms, fetch the responses. The server is
  the shipped ``SilaStationServer`` around a zero-latency, noise-free simulated
  ``electrolyte`` station, in this process, on loopback. Sequential calls, alternating blocks
  of the two clients; medians. Target: SilaStation / bare <= 1.1.
- ``sharing``: three campaigns of three projects (``random`` planner; 1, 2 and 4 trials in
  flight, so the third queues four times as much as the first) share one registered
  simulated station with one slot and 50 ms operations, each campaign in a thread of one
  platform. *Busy*: the share of samples (every 2 ms, from the first operation to the
  last) in which the station reports an operation in its slot; also the instrument-seconds
  over that span. *Fair share*: each project's instrument time while all three still had
  work, over the total. Targets: busy >= 95%, every project within 10% of its third.

Usage::

    python benchmarks/stations.py                    # every section
    python benchmarks/stations.py --parts sila --calls 500
    python benchmarks/stations.py --parts sharing --trials 60
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

SILA_MAX_RATIO = 1.1  # SilaStation over a bare sila2 client, median round trip
SHARING_MIN_BUSY = 0.95  # the shared station's busy share while any campaign has work
SHARING_MAX_DEVIATION = 0.10  # each project's share of instrument time, relative to 1/3
POINT = {"salt_molality": 1.2, "temperature_c": 25, "solvent": "EC-DMC"}
BLOCK = 25  # calls per block; blocks of the two clients alternate

Figures = dict[str, Any]


def sila_overhead(calls: int = 400, warmup: int = 50) -> Figures:
    """Median round trip of one operation, SilaStation against a bare sila2 client."""
    from sila2.client import SilaClient

    from genesis_platform.labs.protocols import Operation
    from genesis_platform.labs.sila import SilaStation, sila_identifier
    from genesis_platform.labs.sila_server import SilaStationServer
    from genesis_platform.labs.simulated import SimulatedStation

    wrapped = SimulatedStation(
        "electrolyte", latency_s=0.0, latency_jitter=0.0, noise=0.0, slots=1, seed=0
    )
    arguments = {sila_identifier(name): value for name, value in POINT.items()}
    with SilaStationServer(wrapped) as server:
        client = SilaClient(server.host, server.port, insecure=True)
        command = getattr(client, server.layout.identifier).RunOperation
        station = SilaStation("electrolyte", host=server.host, port=server.port, slots=1)
        counter = iter(range(10**9))

        def bare() -> None:
            instance = command(OperationId=f"bare-{next(counter)}", **arguments)
            while not instance.done:
                time.sleep(0.0005)
            instance.get_responses()

        def through_station() -> None:
            station.run(Operation(f"station-{next(counter)}", POINT)).result()

        try:
            times = _alternate({"bare": bare, "station": through_station}, calls, warmup)
        finally:
            station.close()
            client.close()
    wrapped.close()
    bare_ms = statistics.median(times["bare"]) * 1e3
    station_ms = statistics.median(times["station"]) * 1e3
    return {
        "calls": calls,
        "bare_ms": bare_ms,
        "station_ms": station_ms,
        "ratio": station_ms / bare_ms,
        "added_ms": station_ms - bare_ms,
    }


def _alternate(
    runners: dict[str, Callable[[], None]], calls: int, warmup: int
) -> dict[str, list[float]]:
    """Time ``calls`` calls of each runner, in alternating blocks, after ``warmup`` each."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    while any(len(t) < calls for t in times.values()):
        for name, run in runners.items():
            for _ in range(min(BLOCK, calls - len(times[name]))):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return times


def sila_part(args: argparse.Namespace) -> bool:
    """Run and print the ``sila`` section; True when it meets its target."""
    figures = sila_overhead(calls=args.calls)
    ok = figures["ratio"] <= SILA_MAX_RATIO
    print(f"sila: {figures['calls']} sequential operations each, median round trip")
    print(f"  bare sila2 client   {figures['bare_ms']:.3f} ms")
    print(f"  SilaStation         {figures['station_ms']:.3f} ms")
    print(
        f"  ratio               {figures['ratio']:.3f}  ({figures['added_ms']:+.3f} ms; "
        f"target <= {SILA_MAX_RATIO}: {'met' if ok else 'MISSED'})"
    )
    return ok


def sharing(trials: int = 60, latency_s: float = 0.05) -> Figures:
    """Three campaigns on one station: busy share, and each project's share of its time."""
    import tempfile
    import threading

    from genesis_platform import Platform

    options = {"emulator": "electrolyte", "latency_s": latency_s, "latency_jitter": 0.0}
    with tempfile.TemporaryDirectory() as home, Platform.open(home) as p:
        p.stations.add("shared", "simulated", {**options, "slots": 1})
        campaigns = [
            p.campaigns.create(_sharing_spec(project, parallel, trials))
            for project, parallel in (("a", 1), ("b", 2), ("c", 4))
        ]
        driver = p.stations.open("shared").driver
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.002):
                samples.append(driver.status().busy_slots)

        threads = [threading.Thread(target=c.run) for c in campaigns]
        sampler = threading.Thread(target=sample)
        sampler.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        sampler.join()
        ops = p.stations.operations(station="shared", limit=10**6)
    completed = [o for o in ops if o.state == "completed"]
    first = next(i for i, busy in enumerate(samples) if busy)
    last = len(samples) - next(i for i, busy in enumerate(reversed(samples)) if busy)
    window = samples[first:last]
    start = min(o.started_at for o in completed)
    end = max(o.finished_at for o in completed)
    span = (end - start).total_seconds()
    shares = _shares_while_all_have_work(completed)
    return {
        "operations": len(completed),
        "other_states": sorted({o.state for o in ops} - {"completed"}),
        "busy": sum(1 for busy in window if busy) / len(window),
        "instrument_share": sum(o.instrument_seconds for o in completed) / span,
        "span_s": span,
        "shares": shares,
    }


def _sharing_spec(project: str, parallel: int, trials: int) -> dict[str, Any]:
    return {
        "name": f"share-{project}",
        "project": project,
        "space": {
            "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
            "temperature_c": {"type": "int", "low": 10, "high": 60},
            "solvent": {"type": "choice", "values": ["EC-DMC", "EC-EMC", "PC"]},
        },
        "objectives": {"conductivity": "max"},
        "planner": "random",
        "runner": {"station": "shared"},
        "budget": {"trials": trials, "parallel": parallel},
        "seed": parallel,
    }


def _shares_while_all_have_work(ops: Sequence[Any]) -> dict[str, float]:
    """Each project's instrument time until the first project ran out of work, over all."""
    start = min(o.started_at for o in ops)
    last: dict[str, Any] = {}
    for o in ops:
        last[o.project] = max(last.get(o.project, start), o.finished_at)
    cut = min(last.values())
    used: dict[str, float] = {}
    for o in ops:
        seconds = (min(o.finished_at, cut) - o.started_at).total_seconds()
        if seconds > 0:
            used[o.project] = used.get(o.project, 0.0) + seconds
    total = sum(used.values())
    return {project: used[project] / total for project in sorted(used)}


def sharing_part(args: argparse.Namespace) -> bool:
    """Run and print the ``sharing`` section; True when it meets its targets."""
    figures = sharing(trials=args.trials)
    fair = all(abs(share * 3 - 1) <= SHARING_MAX_DEVIATION for share in figures["shares"].values())
    busy_ok = figures["busy"] >= SHARING_MIN_BUSY
    print(
        f"sharing: 3 campaigns x {args.trials} trials, one slot, 50 ms operations: "
        f"{figures['operations']} operations in {figures['span_s']:.2f} s"
        + (f" (other states: {figures['other_states']})" if figures["other_states"] else "")
    )
    print(
        f"  busy                {100 * figures['busy']:.1f}% of samples "
        f"(target >= {100 * SHARING_MIN_BUSY:.0f}%: {'met' if busy_ok else 'MISSED'})"
    )
    print(f"  instrument-seconds  {100 * figures['instrument_share']:.1f}% of the span")
    shares = ", ".join(f"{p} {100 * s:.1f}%" for p, s in figures["shares"].items())
    print(
        f"  shares              {shares} while all three had work "
        f"(target: each within {100 * SHARING_MAX_DEVIATION:.0f}% of 33.3%: "
        f"{'met' if fair else 'MISSED'})"
    )
    return busy_ok and fair


PARTS: dict[str, Callable[[argparse.Namespace], bool]] = {
    "sila": sila_part,
    "sharing": sharing_part,
}
"""Sections by name, in the order they run."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"of {', '.join(PARTS)}")
    parser.add_argument("--calls", type=int, default=400, help="timed calls per client")
    parser.add_argument("--trials", type=int, default=60, help="trials per sharing campaign")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    results = [PARTS[part](args) for part in parts]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
