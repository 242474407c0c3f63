"""Figure output shared by every plot: a non-interactive pyplot, and atomic PNG/PDF writes.

A figure is rendered into memory first and then written with the same atomic writer as
counts files, so a full disk or a crash never leaves a truncated or empty image behind.
"""
from __future__ import annotations

import io
import os
from typing import Any

from fastpoly.atomic import atomic_write_bytes

__all__ = ["FIGURE_FORMATS", "pyplot", "check_figure_path", "save_figure"]

#: file suffix -> matplotlib format
FIGURE_FORMATS = {".png": "png", ".pdf": "pdf"}


def pyplot() -> Any:
    """Matplotlib's pyplot with a non-interactive backend (Agg unless one was chosen already)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def check_figure_path(path: str | os.PathLike[str]) -> str:
    """Validate a figure path (``.png`` or ``.pdf``) and return it as a string.

    Raises
    ------
    ValueError
        For another suffix.
    """
    p = os.fspath(path)
    if os.path.splitext(p)[1].lower() not in FIGURE_FORMATS:
        raise ValueError(f"figure path must end in .png or .pdf, got {p!r}")
    return p


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120, tight: bool = True) -> str:
    """Render ``fig`` and write it to ``path`` atomically; the figure is closed in any case.

    Returns
    -------
    str
        The path written.
    """
    plt = pyplot()
    try:
        p = check_figure_path(path)
        if tight:
            fig.tight_layout()
        buf = io.BytesIO()
        # bbox "tight": legends placed outside the axes are kept in the picture
        fig.savefig(buf, format=FIGURE_FORMATS[os.path.splitext(p)[1].lower()], dpi=dpi,
                    bbox_inches="tight" if tight else None)
    finally:
        plt.close(fig)
    d = os.path.dirname(os.path.abspath(p))
    os.makedirs(d, exist_ok=True)
    atomic_write_bytes(p, buf.getvalue())
    return p
