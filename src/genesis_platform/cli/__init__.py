"""The ``genesis`` command: a thin Typer layer over the facade."""

from genesis_platform.cli.app import app, main

__all__ = ["app", "main"]
