"""Show pictures the app rendered itself inline, as a PNG in a ``data:`` URI.

``st.image`` stores the picture in Streamlit's media store and the page loads it from a
``/media/<hash>.png`` URL that any client can fetch without a cookie or a session (and
that is the same for every user who looks at the same picture). A ``data:`` URI travels
inside the page's own WebSocket message, so the picture is visible only to the signed-in
session that drew it and disappears with the page.

Only arrays the app rendered go through here; the markup is built from fixed text, the
base64 alphabet and an escaped ``alt`` text, and ``st.html`` sanitises it (DOMPurify)
once more.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import streamlit as st

#: The CSS class of inline pictures (tests and the browser check look for it).
CSS_CLASS = "medtl-inline-image"


def png_data_uri(rgb: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 grey or RGB array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def show_png(rgb: np.ndarray, alt: str) -> None:
    """Show ``rgb`` (uint8, ``(rows, columns[, 3])``) inline at the container's width.

    Args:
        rgb: the picture, drawn by the app.
        alt: a short description for screen readers (escaped).
    """
    st.html(
        f'<img class="{CSS_CLASS}" alt="{html.escape(alt, quote=True)}" '
        f'src="{png_data_uri(rgb)}" style="width:100%;height:auto;display:block" />'
    )
