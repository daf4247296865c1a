"""A live progress bar for a running campaign (Rich)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["ProgressBar"]


class ProgressBar:
    """Shows trials finished out of the budget, the best value so far, and failures.

    Args:
        title: What is running (campaign name).
        objective: Name of the objective shown as best.
        console: Where to draw (default: stderr).
    """

    def __init__(self, title: str, objective: str, console: Console | None = None) -> None:
        self._objective = objective
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"),
            TextColumn("[red]{task.fields[failed]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self._task = self._progress.add_task(title, total=None, best="—", failed="")

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, finished: int, total: int, failed: int, best: float | None) -> None:
        """Redraw with the latest counts."""
        self._progress.update(
            self._task,
            completed=finished,
            total=total,
            best="—" if best is None else f"{self._objective}={best:.4g}",
            failed=f"{failed} failed" if failed else "",
        )
