"""Rich progress bars for long stages (stderr, so stdout stays clean for piping)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

_console = Console(stderr=True)


def progress() -> Progress:
    """A progress bar group: ``with progress() as bar: task = bar.add_task("name", total=n)``."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console,
        transient=False,
    )


def say(message: str) -> None:
    """A one-line status message on stderr."""
    _console.print(message)
