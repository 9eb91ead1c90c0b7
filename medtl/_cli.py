"""What every ``medtl`` command shares: the error exit and where logs go.

Conventions of the command line:

* an error a user can fix prints one line, ``error: <message>``, on stderr and exits with
  status 2 (or the code the command documents), without a traceback: ``raise fail(...)``;
* standard output carries only the command's result; with ``--json`` it is exactly one JSON
  document, so ``medtl ... --json | jq`` works. Logs, progress bars and warnings go to stderr;
* an error that escapes a command goes through :class:`UserErrorGroup`, the ``medtl`` app's
  command group: :func:`describe_error` turns what a user can fix (medtl's own exceptions,
  a config that fails validation, bad YAML, a missing file, a ``ValueError`` raised by medtl's
  code) into that one line; anything else is a bug in medtl and keeps its traceback.

This module imports nothing of medtl, so any package's ``cli.py`` may use it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = [
    "UserErrorGroup",
    "config_problem",
    "configure_logging",
    "describe_error",
    "fail",
    "one_line",
]

_MEDTL_DIR = Path(__file__).resolve().parent
#: builtin errors that are the user's to fix when medtl's own code raised them on purpose
_RAISED_BY_MEDTL = (ValueError, KeyError, NotImplementedError)
#: errors about a path the user gave, wherever they were raised
_PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                PermissionError)  # fmt: skip


def one_line(message: object) -> str:
    """``message`` as one line: an exception by :func:`describe_error`, text with its line
    breaks folded into spaces.

    Args:
        message: text or an exception.

    Returns:
        The line.
    """
    if isinstance(message, BaseException):
        message = describe_error(message) or f"{type(message).__name__}: {message}"
    return " ".join(str(message).split())


def _text(exc: BaseException) -> str:
    """An exception's message (a KeyError's without the quotes ``str()`` adds)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return one_line(exc.args[0])
    return one_line(str(exc))


def fail(message: object, code: int = 2) -> typer.Exit:
    """Print ``message`` as one line on stderr and return an Exit to raise.

    Args:
        message: what went wrong, as the user can act on it (an exception is described by
            :func:`describe_error`; line breaks are folded).
        code: exit status (2 for errors a user can fix).

    Returns:
        The :class:`typer.Exit` to raise: ``raise fail("no such run") from None``.
    """
    if isinstance(message, BaseException):  # the caller vouches it is the user's to fix
        message = describe_error(message) or _text(message)
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(code)


def config_problem(exc: BaseException) -> str:
    """What is wrong with a config file, in one line (for ``invalid config FILE: ...``).

    Args:
        exc: what reading or validating the config raised (pydantic's ValidationError,
            a YAML error, an OSError, a ValueError).

    Returns:
        e.g. ``strategy.head_lrr: unknown setting`` or ``line 3, column 7: expected ','``.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "ValidationError" in names and hasattr(exc, "errors"):
        return _validation_problems(exc)
    if "YAMLError" in names:
        return _yaml_problem(exc, with_file=False)
    if isinstance(exc, FileNotFoundError) and exc.filename is not None:
        return f"file not found: {exc.filename}"
    return _text(exc)


def _validation_problems(exc: Any) -> str:
    """pydantic's many-line report as ``field.path: problem; ...``."""
    parts = []
    errors = exc.errors()
    for err in errors[:3]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        what = "unknown setting" if err.get("type") == "extra_forbidden" else err.get("msg", "")
        parts.append(f"{where}: {what}")
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _yaml_problem(exc: Any, with_file: bool = True) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"YAML: {problem}"
    file = "" if not with_file or str(mark.name).startswith("<") else f"{mark.name}, "
    return f"YAML ({file}line {mark.line + 1}, column {mark.column + 1}): {problem}"


def _raised_in_medtl(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is medtl's own code."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return _MEDTL_DIR in Path(tb.tb_frame.f_code.co_filename).resolve().parents


def describe_error(exc: BaseException) -> str | None:
    """One line for an error a user can fix; ``None`` for a bug in medtl.

    A user's errors are: medtl's own exception classes (each carries a message made for the
    user), a config that fails pydantic validation, YAML that does not parse, a path that
    does not exist or cannot be used, running out of GPU memory, and a ``ValueError`` /
    ``KeyError`` / ``NotImplementedError`` raised by medtl's own code. The same types raised
    inside a library medtl called are bugs of medtl's (it passed them something wrong).

    Args:
        exc: the exception that ended a command.

    Returns:
        The line (without ``error:``), or ``None``.
    """
    kind = type(exc)
    names = {cls.__name__ for cls in kind.__mro__}
    if "ValidationError" in names and hasattr(exc, "errors") and hasattr(exc, "title"):
        return f"invalid {exc.title}: {_validation_problems(exc)}"
    if "YAMLError" in names:
        return f"invalid {_yaml_problem(exc)}"
    if "OutOfMemoryError" in names:
        return (
            "out of GPU memory: lower training.batch_size or data.spatial_size, or use "
            "training.amp (mixed precision)"
        )
    if any(cls.__module__.split(".")[0] == "medtl" for cls in kind.__mro__):
        return _text(exc)
    if isinstance(exc, _PATH_ERRORS) and getattr(exc, "filename", None) is not None:
        reason = exc.strerror or kind.__name__
        return f"{reason}: {exc.filename}"
    if isinstance(exc, _PATH_ERRORS + _RAISED_BY_MEDTL) and _raised_in_medtl(exc):
        return _text(exc)
    return None


class UserErrorGroup(TyperGroup):
    """The command group that ends a command on a user's error with one line, exit 2.

    Errors :func:`describe_error` does not recognise propagate with their traceback (a
    bug), after a line saying so.
    """

    def invoke(self, ctx: Any) -> Any:
        """Run the command; map a user's error to ``error: <line>`` and exit status 2."""
        import click

        try:
            return super().invoke(ctx)
        except (
            typer.Exit,
            typer.Abort,
            click.exceptions.Exit,
            click.exceptions.Abort,
            click.ClickException,
        ):
            raise
        except Exception as exc:
            line = describe_error(exc)
            if line is None:
                typer.echo(
                    f"error: an unexpected {type(exc).__name__} (a bug in medtl; please report "
                    "it with the traceback that follows)",
                    err=True,
                )
                raise
            if logging.getLogger("medtl").isEnabledFor(logging.DEBUG):
                logging.getLogger("medtl").debug("details", exc_info=exc)
            raise fail(line) from None


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
