"""``genesis campaign run|resume|list|show``."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import typer
from rich.markup import escape

from genesis_platform.campaigns.service import Campaign, CampaignInfo
from genesis_platform.cli._common import (
    console,
    err_console,
    open_platform,
    print_json,
    print_table,
)

app = typer.Typer(help="Run closed-loop campaigns and look at their results.", no_args_is_help=True)


@app.command("run")
def run(
    file: Path = typer.Argument(..., help="Campaign file (YAML)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create a campaign from FILE and run it to the end of its budget."""
    with open_platform() as p:
        campaign = p.campaigns.from_file(file)
        err_console.print(
            f"campaign [bold]{campaign.id}[/] ({campaign.name}) created", highlight=False
        )
        _run(campaign, quiet, json_out)


@app.command("resume")
def resume(
    campaign_id: str = typer.Argument(..., metavar="ID", help="Campaign id."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Go on with a stopped or crashed campaign until its budget is used."""
    with open_platform() as p:
        _run(p.campaigns.resume(campaign_id), quiet, json_out)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every campaign, newest first."""
    with open_platform() as p:
        infos = p.campaigns.list()
    if json_out:
        print_json([info.to_dict() for info in infos])
        return
    print_table(
        "campaigns",
        ["id", "name", "state", "trials", "observed", "failed", "best"],
        [(i.id, i.name, i.state, i.n_trials, i.n_observed, i.n_failed, _best(i)) for i in infos],
    )


@app.command("show")
def show(
    campaign_id: str = typer.Argument(..., metavar="ID", help="Campaign id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON with a trials array."),
) -> None:
    """One campaign with all its trials."""
    with open_platform() as p:
        info = p.campaigns.get(campaign_id).info(with_trials=True)
    if json_out:
        print_json(info.to_dict(with_trials=True))
        return
    _summary(info)
    print_table(
        "trials",
        ["#", "state", "params", "values", "error"],
        [
            (t.number, t.state, _fmt(t.params), _fmt(t.values or {}), t.error[:60])
            for t in info.trials
        ],
    )


def _run(campaign: Campaign, quiet: bool, json_out: bool) -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        info = campaign.run(progress=not quiet and not json_out)
    except KeyboardInterrupt as exc:
        err_console.print(f"stopped; resume with: genesis campaign resume {campaign.id}")
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    if json_out:
        print_json(info.to_dict())
    else:
        _summary(info)
    if info.state == "failed":
        raise typer.Exit(1)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop the campaign as Ctrl-C does."""


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Let SIGTERM stop a running campaign as Ctrl-C does (marked stopped, resumable)."""
    raise Terminated()


def _summary(info: CampaignInfo) -> None:
    lines = [
        f"[bold]campaign {info.id}[/] {info.name}: [bold]{info.state}[/]"
        + (f" ({_esc(info.stop_reason)})" if info.stop_reason else ""),
        *_results(info),
        f"  trials: {info.n_observed} observed, {info.n_failed} failed"
        + (f", {info.n_interrupted} interrupted (not re-run)" if info.n_interrupted else "")
        + (f", {info.n_canceled} canceled" if info.n_canceled else ""),
        f"  wall time: {info.wall_seconds:.1f} s",
        f"  observations: dataset {info.dataset or '—'}",
        f"  surrogate: model {info.model or '—'}",
    ]
    if info.warm_start:
        lines.append(f"  warm start: dataset {info.warm_start}")
    if info.error:
        lines.append(f"  [red]error: {_esc(info.error)}[/]")
    for line in lines:
        console.print(line, highlight=False)


def _results(info: CampaignInfo) -> list[str]:
    """The best point, or with several objectives the Pareto front and its hypervolume."""
    if len(info.objectives) < 2:
        return [
            f"  best {info.objective} ({info.direction}): {_best(info)}",
            f"  best parameters: {_esc(_fmt(info.best_params or {}))}",
        ]
    directions = ", ".join(f"{name} ({d})" for name, d in info.objectives.items())
    volume = "—" if info.hypervolume is None else f"{info.hypervolume:.4g}"
    lines = [
        f"  objectives: {directions}",
        f"  Pareto front: {len(info.pareto)} trials, hypervolume {volume}",
    ]
    for row in sorted(info.pareto, key=lambda r: r["values"][info.objective]):
        values = {name: row["values"][name] for name in info.objectives}
        lines.append(
            f"    trial {row['trial']}: {_esc(_fmt(values))} at {_esc(_fmt(row['params']))}"
        )
    return lines


def _esc(value: object) -> str:
    return escape(str(value))


def _best(info: CampaignInfo) -> str:
    return "—" if info.best is None else f"{info.best:.4g}"


def _fmt(values: Mapping[str, object]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
