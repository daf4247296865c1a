"""Summarize a planner benchmark run and check the issue's targets.

Reads the JSON lines written by ``run.py`` (for a job present several times, the last line
wins) and prints:

- per budget and batch size, for every problem and planner, the median and interquartile
  range over seeds of the final simple regret (lower is better) or, for the two-objective
  problem, of the hypervolume (higher is better; its maximum is shown);
- per batch size, the median wall time of one ``ask`` at 20 and at 50 observations (in each
  job the first ask made with at least that many observations told), with gp/ax ratios;
- a TARGETS section: each target of the issue, met or not, with the figures.

A job that stopped early contributes only to budgets it reached; a planner that refused a
problem (an error while building it, e.g. Optuna and parameter constraints) is shown as
``refused``. Usage::

    python benchmarks/planners/report.py [benchmarks/planners/results.jsonl] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KEY = ("problem", "planner", "batch", "seed", "budget")
PLANNER_ORDER = ("gp", "ax", "optuna", "random", "sobol")
LEVELS = (20, 50)
SO_REQUIRED = 7  # of the 9 single-objective problems, gp no worse than Ax
HV_TOLERANCE = 0.02
TIME_RATIO = 0.1
MEMORY_LIMIT_MB = 500.0

Record = dict[str, Any]


def load(paths: Sequence[Path]) -> list[Record]:
    """The records of results files, in order: the last one per job, of each problem's last
    definition.

    Records of an earlier definition of a problem (another ``fingerprint``) are dropped,
    with a note on stderr.
    """
    records = [
        json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()
    ]
    current = {r["problem"]: r.get("fingerprint") for r in records}
    stale = Counter(r["problem"] for r in records if r.get("fingerprint") != current[r["problem"]])
    for problem, count in sorted(stale.items()):
        print(
            f"note: {count} results of an earlier definition of {problem} ignored", file=sys.stderr
        )
    latest: dict[tuple[Any, ...], Record] = {}
    for r in records:
        if r.get("fingerprint") == current[r["problem"]]:
            latest[tuple(r[k] for k in KEY)] = r
    return list(latest.values())


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """``(q1, median, q3)`` (inclusive method; one value gives itself three times)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def ask_time(record: Record, level: int) -> float | None:
    """Seconds of the first ask made with at least ``level`` observations told."""
    for n_obs, _, seconds in record["asks"]:
        if n_obs >= level:
            return float(seconds)
    return None


class Results:
    """Results grouped for the tables and targets."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records
        self.by: dict[tuple[str, str, int], list[Record]] = defaultdict(list)
        for r in records:
            self.by[(r["problem"], r["planner"], r["batch"])].append(r)
        self.problems = _ordered({r["problem"] for r in records}, _problem_order())
        self.planners = _ordered({r["planner"] for r in records}, PLANNER_ORDER)
        self.batches = sorted({r["batch"] for r in records})
        self.score = {r["problem"]: r["score"] for r in records}
        self.seeds = sorted({r["seed"] for r in records})

    def budgets(self, requested: Sequence[int] | None) -> list[int]:
        longest = max((len(r["trace"]) for r in self.records), default=0)
        if requested:
            return [b for b in requested if b <= longest]
        return sorted({r["budget"] for r in self.records} | ({30} if longest >= 30 else set()))

    def refused(self, problem: str, planner: str, batch: int) -> str | None:
        jobs = self.by.get((problem, planner, batch), [])
        if jobs and all(r["error_stage"] == "build" for r in jobs):
            return str(jobs[0]["error"])
        return None

    def scores(self, problem: str, planner: str, batch: int, budget: int) -> list[float]:
        return [
            r["trace"][budget - 1]
            for r in self.by.get((problem, planner, batch), [])
            if len(r["trace"]) >= budget
        ]

    def final(
        self, problem: str, planner: str, batch: int, budget: int
    ) -> tuple[float, float, float] | None:
        values = self.scores(problem, planner, batch, budget)
        return quartiles(values) if values else None

    def times(self, planner: str, batch: int, level: int, problems: Iterable[str]) -> list[float]:
        out = []
        for problem in problems:
            for r in self.by.get((problem, planner, batch), []):
                t = ask_time(r, level)
                if t is not None:
                    out.append(t)
        return out

    def median_time(
        self, planner: str, batch: int, level: int, problems: Iterable[str]
    ) -> float | None:
        values = self.times(planner, batch, level, problems)
        return statistics.median(values) if values else None

    def errors(self) -> list[tuple[str, str, int, int, str]]:
        """``(problem, planner, batch, count, first message)`` of jobs that failed midway."""
        out = []
        for (problem, planner, batch), jobs in sorted(self.by.items()):
            failed = [r for r in jobs if r["error"] and r["error_stage"] != "build"]
            if failed:
                out.append((problem, planner, batch, len(failed), str(failed[0]["error"])))
        return out


def _problem_order() -> list[str]:
    sys.path.insert(0, str(HERE))
    try:
        import problems
    except ImportError:
        return []
    return list(problems.BUILDERS)


def _required() -> tuple[str, ...]:
    try:
        import problems
    except ImportError:
        return ()
    return tuple(problems.REQUIRED)


def _ordered(items: set[str], order: Sequence[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(order)}
    return sorted(items, key=lambda x: (rank.get(x, len(rank)), x))


# -- rendering -------------------------------------------------------------------------------


class Table:
    """A table printed as aligned text or as Markdown."""

    def __init__(self, title: str, header: list[str], note: str = "") -> None:
        self.title, self.header, self.note = title, header, note
        self.rows: list[list[str]] = []

    def add(self, row: list[str]) -> None:
        self.rows.append(row)

    def render(self, markdown: bool) -> str:
        if markdown:
            lines = [f"**{self.title}**", ""]
            if self.note:
                lines += [self.note, ""]
            lines.append("| " + " | ".join(self.header) + " |")
            rule = ["---" if i == 0 else "---:" for i in range(len(self.header))]
            lines.append("| " + " | ".join(rule) + " |")
            lines += ["| " + " | ".join(row) + " |" for row in self.rows]
            return "\n".join(lines) + "\n"
        widths = [
            max(len(r[i]) for r in [self.header, *self.rows]) for i in range(len(self.header))
        ]

        def line(row: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )

        out = [self.title]
        if self.note:
            out.append(self.note)
        out += [line(self.header), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in self.rows]
        return "\n".join(out) + "\n"


def score_tables(res: Results, budgets: list[int]) -> list[Table]:
    tables = []
    for budget in budgets:
        for batch in res.batches:
            table = Table(
                f"Final score after {budget} evaluations, batch size {batch}: "
                "median [q1, q3] over seeds",
                ["problem", "score", "optimum", *res.planners],
                "regret: simple regret (0 is best), optimum = best objective value; "
                "hypervolume: higher is better, optimum = its maximum",
            )
            for problem in res.problems:
                optimum = _optimum(problem)
                cells = []
                for planner in res.planners:
                    q = res.final(problem, planner, batch, budget)
                    n = len(res.scores(problem, planner, batch, budget))
                    if res.refused(problem, planner, batch):
                        cells.append("refused")
                    elif q is None:
                        cells.append("—")
                    else:
                        seeds = "" if n == len(res.seeds) else f" (n={n})"
                        spread = "" if n == 1 else f" [{fmt(q[0])}, {fmt(q[2])}]"
                        cells.append(f"{fmt(q[1])}{spread}{seeds}")
                table.add([problem, res.score[problem], fmt(optimum, 5), *cells])
            tables.append(table)
    return tables


def _optimum(problem: str) -> float | None:
    """The problem's optimum (best value or largest hypervolume), if it can be built here."""
    try:
        import problems

        return float(problems.get(problem).optimum)
    except (ImportError, KeyError, SystemExit):  # SystemExit: an emulator is not cached here
        return None


def time_tables(res: Results) -> list[Table]:
    tables = []
    for batch in res.batches:
        header = ["problem", *(f"{p} @{lv}" for p in res.planners for lv in LEVELS)]
        has_ax = "gp" in res.planners and "ax" in res.planners
        if has_ax:
            header += [f"gp/ax @{lv}" for lv in LEVELS]
        table = Table(
            f"Median wall time per ask (ms), batch size {batch}, at 20 and 50 observations",
            header,
        )
        for problem in [*res.problems, "all problems"]:
            scope = res.problems if problem == "all problems" else [problem]
            cells = [
                fmt_ms(_ms(res.median_time(p, batch, lv, scope)))
                for p in res.planners
                for lv in LEVELS
            ]
            if has_ax:
                for lv in LEVELS:
                    gp = res.median_time("gp", batch, lv, scope)
                    ax = res.median_time("ax", batch, lv, scope)
                    cells.append(fmt(gp / ax, 2) if gp is not None and ax else "—")
            table.add([problem, *cells])
        tables.append(table)
    return tables


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1e3 * seconds


def fmt_ms(ms: float | None) -> str:
    """Milliseconds: whole numbers from 100 up, three significant digits below."""
    if ms is None:
        return "—"
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"


# -- targets -------------------------------------------------------------------------------------


def targets(res: Results, budgets: list[int], memory: Path) -> list[str]:
    """Each target with its overall verdict, then one line per setting with the figures.

    A target is met when it is met in every setting (budget x batch size, or batch size x
    observation count for the ask time).
    """
    out: list[str] = []
    counted = [p for p in res.problems if p in _required()]  # extras are not the issue's
    single = [p for p in counted if res.score[p] == "regret"]
    multi = [p for p in counted if res.score[p] == "hypervolume"]
    settings = [(budget, batch) for budget in budgets for batch in res.batches]

    def median(problem: str, planner: str, batch: int, budget: int) -> float | None:
        q = res.final(problem, planner, batch, budget)
        return None if q is None else q[1]

    out += _section(
        f"1. gp's median final regret no worse than Ax's on at least {SO_REQUIRED} of the 9 "
        f"single-objective problems ({len(single)} in these results)",
        _each(settings, lambda budget, batch: _versus_ax(res, single, budget, batch, median)),
    )
    for number, rival, label in ((2, "optuna", "Optuna's TPE"), (3, "random", "random search")):
        out += _section(
            f"{number}. gp's median final regret better than {label} on every one of them",
            _each(
                settings,
                lambda budget, batch, r=rival: _better(res, single, r, budget, batch, median),
            ),
        )
    out += _section(
        f"4. hypervolume within {HV_TOLERANCE:.0%} of Ax's or better ({', '.join(multi)})",
        _each(settings, lambda budget, batch: _hypervolume(res, multi, budget, batch, median)),
    )
    times: list[tuple[bool | None, str]] = []
    for batch in res.batches:
        for level in LEVELS:
            gp = res.median_time("gp", batch, level, counted)
            ax = res.median_time("ax", batch, level, counted)
            where = f"batch {batch}, {level} observations"
            figures = f"gp {fmt_ms(_ms(gp))} ms, ax {fmt_ms(_ms(ax))} ms"
            if gp is None or ax is None:
                times.append((None, f"{where}: {figures}"))
            else:
                times.append((gp <= TIME_RATIO * ax, f"{where}: {figures}, ratio {gp / ax:.3f}"))
    out += _section(
        f"5. gp's median time per ask at most {TIME_RATIO:g} of Ax's (all problems pooled)",
        times,
    )
    out += _section(
        f"6. memory: 500 observations in 10-d plan under {MEMORY_LIMIT_MB:.0f} MB resident",
        _memory(memory),
    )
    return out


def _verdict(ok: bool | None) -> str:
    return "NOT MEASURED" if ok is None else ("met" if ok else "NOT MET")


def _section(header: str, checks: list[tuple[bool | str | None, str]]) -> list[str]:
    """The header with the overall verdict, then each check's line.

    A check is met (True), not met (False), not measured (None) or, given as a label
    string, shown for information only.
    """
    counted = [ok for ok, _ in checks if not isinstance(ok, str)]
    known = [ok for ok in counted if ok is not None]
    if not known:
        overall = "NOT MEASURED"
    elif all(known):
        overall = "MET" if len(known) == len(counted) else "met where measured"
    else:
        overall = f"NOT MET ({known.count(False)} of {len(counted)})"
    lines = [f"{header}: {overall}"]
    lines += [f"   {ok if isinstance(ok, str) else _verdict(ok)}: {text}" for ok, text in checks]
    return lines


Check = Callable[[int, int], tuple[bool | None, str]]


def _each(settings: list[tuple[int, int]], check: Check) -> list[tuple[bool | None, str]]:
    out = []
    for budget, batch in settings:
        ok, text = check(budget, batch)
        out.append((ok, f"budget {budget}, batch {batch}: {text}"))
    return out


Median = Callable[[str, str, int, int], float | None]


def _versus_ax(
    res: Results, single: list[str], budget: int, batch: int, median: Median
) -> tuple[bool | None, str]:
    compared, worse = 0, []
    for problem in single:
        gp, ax = median(problem, "gp", batch, budget), median(problem, "ax", batch, budget)
        if gp is None or ax is None:
            continue
        compared += 1
        if gp > ax:
            worse.append(f"{problem} {fmt(gp)} vs {fmt(ax)}")
    if compared == 0:
        return None, "no problem with both gp and ax"
    no_worse = compared - len(worse)
    text = f"no worse on {no_worse} of {compared}"
    if worse:
        text += "; worse on " + ", ".join(worse)
    return no_worse >= SO_REQUIRED, text


def _better(
    res: Results, single: list[str], rival: str, budget: int, batch: int, median: Median
) -> tuple[bool | None, str]:
    compared, losses, skipped = 0, [], []
    for problem in single:
        if res.refused(problem, rival, batch):
            skipped.append(problem)
            continue
        gp, other = median(problem, "gp", batch, budget), median(problem, rival, batch, budget)
        if gp is None or other is None:
            continue
        compared += 1
        if not gp < other:
            losses.append(f"{problem} {fmt(gp)} vs {fmt(other)}")
    if compared == 0:
        return None, f"no problem with both gp and {rival}"
    text = f"better on {compared - len(losses)} of {compared}"
    if losses:
        text += "; not on " + ", ".join(losses)
    if skipped:
        text += f" ({rival} refused {', '.join(skipped)})"
    return not losses, text


def _hypervolume(
    res: Results, multi: list[str], budget: int, batch: int, median: Median
) -> tuple[bool | None, str]:
    if not multi:
        return None, "no two-objective problem in these results"
    oks, texts = [], []
    for problem in multi:
        gp, ax = median(problem, "gp", batch, budget), median(problem, "ax", batch, budget)
        if gp is None or ax is None:
            texts.append(f"{problem}: gp {fmt(gp)}, ax {fmt(ax)}")
            continue
        oks.append(gp >= (1.0 - HV_TOLERANCE) * ax)
        texts.append(f"{problem}: gp {fmt(gp, 4)} vs ax {fmt(ax, 4)} ({gp / ax - 1:+.1%})")
    return (all(oks) if oks else None), "; ".join(texts)


def _memory(path: Path) -> list[tuple[bool | str | None, str]]:
    if not path.exists():
        return [(None, f"run benchmarks/planners/memory.py (expects {path})")]
    data = json.loads(path.read_text())
    out: list[tuple[bool | str | None, str]] = []
    for kind, m in data["planners"].items():
        if "error" in m:
            out.append((None if kind == "gp" else "for comparison", f"{kind}: {m['error']}"))
            continue
        text = (
            f"{kind}: peak {m['peak_mb']:.0f} MB (before planning {m['before_mb']:.0f} MB), "
            f"ask(1) {m['ask1_s']:.2f} s, ask(4) {m['ask4_s']:.2f} s"
        )
        if kind == "gp":
            out.insert(0, (m["peak_mb"] < MEMORY_LIMIT_MB, text))
        else:
            out.append(("for comparison", text))
    return out


def commits_by_planner(records: Sequence[Record]) -> str:
    """``planner commit[, commit]`` for each planner: the genesis commits its jobs ran at."""
    commits: dict[str, set[str]] = {}
    for r in records:
        commits.setdefault(r["planner"], set()).add(str(r.get("env", {}).get("commit", "?")))
    return "; ".join(f"{p} {', '.join(sorted(c))}" for p, c in commits.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", type=Path, nargs="*", default=[HERE / "results.jsonl"], help="JSON lines files"
    )
    parser.add_argument("--budgets", default="30,60", help="comma-separated budgets to report")
    parser.add_argument("--memory", type=Path, default=HERE / "memory.json")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    args = parser.parse_args()
    missing = [str(path) for path in args.results if not path.exists()]
    if missing:
        sys.exit(f"no results at {', '.join(missing)}: run benchmarks/planners/run.py first")
    res = Results(load(args.results))
    budgets = res.budgets([int(b) for b in args.budgets.split(",") if b])
    if not budgets:
        budgets = res.budgets(None)
    env = dict(res.records[0].get("env", {})) if res.records else {}
    env.pop("commit", None)
    print(
        f"{len(res.records)} jobs from {', '.join(p.name for p in args.results)}: "
        f"{len(res.problems)} problems, "
        f"planners {', '.join(res.planners)}, batch sizes {res.batches}, "
        f"{len(res.seeds)} seeds; "
        + ", ".join(f"{k} {v}" for k, v in env.items())
        + f"; genesis commits: {commits_by_planner(res.records)}"
    )
    print()
    for table in [*score_tables(res, budgets), *time_tables(res)]:
        print(table.render(args.markdown))
    errors = res.errors()
    if errors:
        table = Table(
            "Jobs stopped by an error", ["problem", "planner", "batch", "jobs", "first error"]
        )
        for problem, planner, batch, count, message in errors:
            table.add([problem, planner, str(batch), str(count), message[:100]])
        print(table.render(args.markdown))
    print("**Targets**\n" if args.markdown else "TARGETS")
    for line in targets(res, budgets, args.memory):
        # Markdown: the settings become a list nested under each numbered target.
        print(f"   - {line.strip()}" if args.markdown and line.startswith("   ") else line)


if __name__ == "__main__":
    main()
