"""Assertions shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def assert_png_drawn(path: str | Path, min_colors: int = 8) -> None:
    """``path`` is a readable PNG with actual content: not blank, not a single flat colour."""
    import matplotlib.image as mpimg

    img = mpimg.imread(str(path))
    assert img.ndim == 3 and min(img.shape[:2]) >= 50, (path, img.shape)
    colors = np.unique(np.round(img.reshape(-1, img.shape[-1]), 3), axis=0)
    assert len(colors) >= min_colors, f"{path}: only {len(colors)} distinct colours — nothing drawn?"
