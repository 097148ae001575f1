"""The persistent cache folder: where classifiers (and trajectories) are kept between runs."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["cache_size", "clear_cache"]


def cache_size(folder: str | Path) -> int:
    """Bytes held under ``folder`` (0 when it does not exist)."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def clear_cache(folder: str | Path) -> None:
    """Remove everything under ``folder``."""
    root = Path(folder)
    if root.is_dir():
        shutil.rmtree(root)
