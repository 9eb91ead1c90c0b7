"""Exports built when the button is pressed, for one download.

``st.download_button(data=bytes)`` puts the file into Streamlit's media store when the
page is drawn, before anyone clicks, at a ``/media/`` URL that answers without a session
cookie. A callable ``data`` (a deferred download) is run only when the button is pressed;
:func:`once` makes it answer a single time, so a replayed request for the same drawn
button gets nothing (the next rerun draws a fresh button).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review import ReviewStore, UserInfo


class AlreadyServedError(RuntimeError):
    """The one download of this drawn button was already made."""


def once(build: Callable[[], bytes]) -> Callable[[], bytes]:
    """Wrap ``build`` so that it runs (and returns its bytes) only on its first call."""
    used: list[bool] = []

    def serve() -> bytes:
        if used:
            raise AlreadyServedError("this download was already made; press the button again")
        used.append(True)
        return build()

    return serve


def reviews_csv(store: ReviewStore, admin: UserInfo, include_comments: bool) -> Callable[[], bytes]:
    """The reviews CSV export as a one-time deferred download (audited by the store)."""

    def build() -> bytes:
        buf = io.StringIO()
        store.export_reviews_csv(admin, buf, include_comments=include_comments)
        return buf.getvalue().encode("utf-8")

    return once(build)


def case_sr(
    store: ReviewStore, user: UserInfo, case_id: str, prediction_id: int
) -> Callable[[], bytes]:
    """A case's AI result as a pseudonymous DICOM SR, a one-time deferred download (the
    store writes it 0600 in a private temporary folder and audits the export)."""

    def build() -> bytes:
        import tempfile
        from pathlib import Path

        from medtl.paths import home_subdir

        with tempfile.TemporaryDirectory(dir=home_subdir("tmp"), prefix="sr-") as tmp:
            path = store.export_sr(user, case_id, Path(tmp), prediction_id=prediction_id)
            return path.read_bytes()

    return once(build)
