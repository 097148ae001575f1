"""The persistent cache folder: where classifiers (and trajectories) are kept between runs.

Entries are touched when they are used, so a file's modification time says
when it was last needed; ``evict_lru`` trims the folder to a size limit by
removing the least recently used files first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["cache_size", "clear_cache", "evict_lru", "touch"]


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


def touch(path: str | Path) -> None:
    """Mark a cache entry as used now (its modification time orders the eviction)."""
    try:
        os.utime(path)
    except OSError:  # a read-only or vanished entry is simply not re-ranked
        pass


def evict_lru(folder: str | Path, max_bytes: int) -> tuple[int, int]:
    """Remove the least recently used files under ``folder`` until it holds at most ``max_bytes``.

    Returns (files removed, bytes freed). Empty sub-folders left behind are removed.
    """
    root = Path(folder)
    if not root.is_dir() or max_bytes <= 0:
        return 0, 0
    entries = []
    for file in root.rglob("*"):
        try:
            if file.is_file():
                stat = file.stat()
                entries.append((stat.st_mtime, stat.st_size, file))
        except OSError:  # removed by a concurrent run
            continue
    total = sum(size for _, size, _ in entries)
    removed = freed = 0
    for _, size, file in sorted(entries, key=lambda e: (e[0], str(e[2]))):
        if total <= max_bytes:
            break
        try:
            file.unlink()
        except FileNotFoundError:
            pass
        total -= size
        removed += 1
        freed += size
    if removed:
        for sub in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                sub.rmdir()
            except OSError:  # not empty
                pass
    return removed, freed
