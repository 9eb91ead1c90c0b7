"""Reusable page pieces: session/auth helpers, the image viewer and the result card."""
