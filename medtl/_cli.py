"""What every ``medtl`` command shares: the error exit and where logs go.

Conventions of the command line:

* an error a user can fix prints one line, ``error: <message>``, on stderr and exits with
  status 2 (or the code the command documents), without a traceback: ``raise fail(...)``;
* standard output carries only the command's result; with ``--json`` it is exactly one JSON
  document, so ``medtl ... --json | jq`` works. Logs, progress bars and warnings go to stderr.

This module imports nothing of medtl, so any package's ``cli.py`` may use it.
"""

from __future__ import annotations

import logging

import typer

__all__ = ["configure_logging", "fail"]


def fail(message: object, code: int = 2) -> typer.Exit:
    """Print ``message`` as one line on stderr and return an Exit to raise.

    Args:
        message: what went wrong, as the user can act on it (an exception prints its text).
        code: exit status (2 for errors a user can fix).

    Returns:
        The :class:`typer.Exit` to raise: ``raise fail("no such run") from None``.
    """
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def configure_logging(verbose: bool = False, *, rich: bool = True) -> None:
    """Send medtl's logs to stderr (never stdout, which holds the command's result).

    Args:
        verbose: DEBUG instead of INFO.
        rich: format with rich's handler (colours on a terminal); plain lines otherwise.
    """
    level = logging.DEBUG if verbose else logging.INFO
    if rich:
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=Console(stderr=True), show_path=False, rich_tracebacks=False
        )
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler()  # stderr by default
        fmt = "%(message)s"
    logging.basicConfig(level=level, format=fmt, datefmt="[%X]", handlers=[handler], force=True)
