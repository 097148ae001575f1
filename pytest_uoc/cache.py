"""The persistent cache folder: where classifiers (and trajectories) are kept between runs.

Entries are touched when they are used, so a file's modification time says
when it was last needed; ``evict_lru`` trims the folder to a size limit by
removing the least recently used files first. ``atomic_write_bytes`` writes a
file so that no reader ever sees half of it (cache entries, reports, pictures);
it lives here, below the report, so that scoring can cache without importing
the report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "cache_size", "clear_cache", "evict_lru", "touch"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder (mode 0666 less the umask)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=str(target.parent))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; files are shared like any other
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


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
