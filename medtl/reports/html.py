"""Render a :class:`~medtl.reports.schema.ReportData` as one self-contained HTML file.

Templates live in ``medtl/reports/templates/*.html.j2`` (Jinja2, autoescaped); the style
sheet is inlined and every figure is embedded as ``data:image/png;base64``, so the file
can be mailed, archived or printed without anything beside it. The same HTML is the input
of the PDF (:mod:`medtl.reports.pdf`).
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

from medtl.artifacts.run import BuiltFrom
from medtl.reports.schema import SECTION_IDS, ReportData

__all__ = ["read_built_from", "render_html", "write_html"]

_TEMPLATES = Path(__file__).parent / "templates"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * float(value):.{digits}f}%"


def _ci(ci: Any, digits: int = 3) -> str:
    if ci is None or ci.estimate is None:
        return "n/a"
    if ci.lower is None or ci.upper is None:
        return _num(ci.estimate, digits)
    return f"{_num(ci.estimate, digits)} ({_num(ci.lower, digits)}–{_num(ci.upper, digits)})"


def _value(value: Any) -> str:
    if isinstance(value, list) and len(value) > 8:
        return f"[{len(value)} values]"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return _num(value, 4) if isinstance(value, float) else _num(value)


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(_TEMPLATES)),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    env.filters["ci"] = _ci
    env.filters["value"] = _value
    env.filters["title_case"] = lambda s: str(s).replace("_", " ").capitalize()
    return env


def render_html(data: ReportData) -> str:
    """The report as one HTML document (figures embedded, style inlined).

    Args:
        data: the report content.

    Returns:
        The HTML text.
    """
    env = _environment()
    return env.get_template("report.html.j2").render(
        d=data, sections=SECTION_IDS, status_counts=_status_counts(data)
    )


def _status_counts(data: ReportData) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in data.checklist:
        counts[item.status] = counts.get(item.status, 0) + 1
    return counts


def write_html(data: ReportData, path: str | Path) -> Path:
    """Render and write ``report.html``.

    Args:
        data: the report content.
        path: destination file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.write_text(render_html(data), encoding="utf-8")
    return path


_BUILT_FROM = re.compile(r'<meta name="medtl-built-from" content="([^"]*)">')


def read_built_from(path: str | Path) -> BuiltFrom | None:
    """What a ``report.html`` says it was built from (its ``medtl-built-from`` meta tag).

    Args:
        path: the report file.

    Returns:
        The recorded :class:`~medtl.artifacts.run.BuiltFrom`, or ``None`` when the file
        records none (another tool, or a medtl release before it was recorded) or records
        it unreadably.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    found = _BUILT_FROM.search(text[:20000])  # in <head>
    if found is None:
        return None
    try:
        return BuiltFrom.model_validate_json(html.unescape(found.group(1)))
    except ValueError:
        return None
