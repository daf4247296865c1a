"""``genesis task list|show|logs|cancel|recover|usage``: tasks on compute sites."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer

from genesis_platform.cli._common import console, open_platform, print_json, print_table
from genesis_platform.compute.tasks import TaskInfo

app = typer.Typer(help="Tasks on compute sites, from any shell.", no_args_is_help=True)


@app.command("list")
def list_(
    site: str | None = typer.Option(None, "--site", help="Only this site's tasks."),
    state: str | None = typer.Option(
        None, "--state", help="new, queued, active, completed, failed or canceled."
    ),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many, newest first."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """The newest tasks first."""
    with open_platform() as p:
        infos = p.tasks.list(site=site, state=state, limit=limit)
    if json_out:
        print_json([_jsonable(i) for i in infos])
        return
    print_table(
        "tasks",
        ["id", "site", "state", "name", "attempts", "external id", "submitted"],
        [
            (
                i.id,
                i.site,
                i.state,
                i.name[:40],
                i.attempts,
                i.external_id,
                i.submitted_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for i in infos
        ],
    )


@app.command("show")
def show(
    task_id: int = typer.Argument(..., help="Task id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A task's record: state, external id, timings, output or error, usage."""
    with open_platform() as p:
        info = p.tasks.get(task_id)
    if json_out:
        print_json(_jsonable(info))
        return
    for key, value in _jsonable(info).items():
        if value not in ("", None, {}, []):
            console.print(f"{key}: {value}", highlight=False, markup=False)


@app.command("logs")
def logs(task_id: int = typer.Argument(..., help="Task id.")) -> None:
    """What the task printed (stdout and stderr)."""
    with open_platform() as p:
        text = p.tasks.logs(task_id)
    print(text, end="" if text.endswith("\n") or not text else "\n")


@app.command("cancel")
def cancel(task_id: int = typer.Argument(..., help="Task id.")) -> None:
    """Cancel a task, also one that another process submitted."""
    with open_platform() as p:
        changed = p.tasks.cancel(task_id)
    message = f"cancel requested for task {task_id}" if changed else f"task {task_id} had ended"
    console.print(message, highlight=False, markup=False)


@app.command("recover")
def recover() -> None:
    """Take over the unfinished tasks of processes that ended, and wait for them."""
    with open_platform() as p:
        counts = p.tasks.recover()
        console.print(
            ", ".join(f"{n} {what}" for what, n in counts.items()), highlight=False, markup=False
        )
        p.tasks.wait_all()


@app.command("usage")
def usage(
    project: str | None = typer.Option(None, "--project", help="Only this project."),
    site: str | None = typer.Option(None, "--site", help="Only this site."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """Core-, GPU- and wall-seconds of finished tasks, per project and site."""
    with open_platform() as p:
        rows = p.tasks.usage(project=project, site=site)
    if json_out:
        print_json([dataclasses.asdict(r) for r in rows])
        return
    print_table(
        "usage",
        ["project", "site", "tasks", "core-seconds", "GPU-seconds", "wall-seconds"],
        [
            (
                r.project or "-",
                r.site,
                r.tasks,
                f"{r.core_seconds:.2f}",
                f"{r.gpu_seconds:.2f}",
                f"{r.wall_seconds:.2f}",
            )
            for r in rows
        ],
    )


def _jsonable(info: TaskInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    data["spec"] = info.spec.to_dict()
    return data
