"""Assertions shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def assert_png_drawn(path: str | Path, min_colors: int = 8) -> None:
    """``path`` is a readable PNG with actual content: not blank, not a single flat colour."""
    import matplotlib.image as mpimg

    img = mpimg.imread(str(path))
    assert img.ndim == 3 and min(img.shape[:2]) >= 50, (path, img.shape)
    # Distinct colours at 3 decimals per channel; each pixel packed into one integer, since np.unique
    # over rows (axis=0) sorts a large figure's pixels lexicographically and takes seconds per image.
    q = np.rint(img.reshape(-1, img.shape[-1]).astype(np.float64) * 1000).astype(np.int64)
    colors = np.unique(q @ (1001 ** np.arange(q.shape[1], dtype=np.int64)))
    assert len(colors) >= min_colors, f"{path}: only {len(colors)} distinct colours — nothing drawn?"
