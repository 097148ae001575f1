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

__all__ = ["CACHE_ENTRIES", "CACHE_MARKER", "NotACacheError", "atomic_write_bytes", "cache_size", "claim_cache",
           "check_cache_folder", "clear_cache", "evict_lru", "touch"]

#: The file that marks a folder as a pytest-uoc cache (written when pytest-uoc first uses the folder).
CACHE_MARKER = ".pytest-uoc-cache"
#: What pytest-uoc writes in its cache folder: only these are ever cleared or evicted.
CACHE_ENTRIES: tuple[str, ...] = ("trajectories", "classifiers", "artifacts")
_MARKER_TEXT = ("This folder is a pytest-uoc cache: pytest-uoc clears and trims only its own entries here "
                f"({', '.join(CACHE_ENTRIES)}).\n")


class NotACacheError(ValueError):
    """A cache folder that holds files pytest-uoc did not write (so clearing or trimming it could lose them)."""


def _foreign_entries(root: Path) -> list[str]:
    """Names in ``root`` that pytest-uoc does not write (temporary files of an atomic write count as its own)."""
    return sorted(entry.name for entry in root.iterdir()
                  if entry.name != CACHE_MARKER and entry.name not in CACHE_ENTRIES
                  and not entry.name.startswith(f".{CACHE_MARKER}."))


def check_cache_folder(folder: str | Path) -> None:
    """Raise NotACacheError unless ``folder`` is missing, empty, marked as pytest-uoc's, or holds only its entries.

    A folder of pytest-uoc's from before the marker existed holds only ``CACHE_ENTRIES``
    and is taken as one. Anything else (a home folder, a project, another tool's cache)
    is refused, so that ``--uoc-cache-clear`` and the size limit can never remove a file
    pytest-uoc did not write.
    """
    root = Path(folder).expanduser()
    if not root.exists() or (root / CACHE_MARKER).is_file():
        return
    if not root.is_dir():
        raise NotACacheError(f"{root} is not a folder")
    foreign = _foreign_entries(root)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise NotACacheError(
            f"{root} is not a pytest-uoc cache folder: it holds {shown}, which pytest-uoc did not write (its "
            f"cache folders carry a {CACHE_MARKER} file); give a new or empty folder, or the folder pytest-uoc "
            "used before")


def claim_cache(folder: str | Path) -> Path:
    """Create ``folder`` if needed and mark it as a pytest-uoc cache (after ``check_cache_folder``)."""
    root = Path(folder).expanduser()
    check_cache_folder(root)
    marker = root / CACHE_MARKER
    if not marker.is_file():
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(marker, _MARKER_TEXT.encode())
    return root


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def output_target(path: str | Path) -> Path:
    """The file an output written to ``path`` replaces: ``path``, or a symlink's target (the link is kept).

    Raises OSError when that is not a regular file: a device (``/dev/null``, ``/dev/full``),
    a fifo or a socket is never replaced by a file, nor a folder.
    """
    target = Path(path).expanduser()
    if target.is_symlink():
        target = target.resolve()
    if target.exists() and not target.is_file():
        kind = ("a folder" if target.is_dir() else "a character device" if target.is_char_device()
                else "a block device" if target.is_block_device() else "a fifo" if target.is_fifo()
                else "a socket" if target.is_socket() else "not a regular file")
        shown = f"{path} (-> {target})" if str(target) != str(path) else str(path)
        raise OSError(f"{shown} is {kind}: pytest-uoc writes only regular files and never replaces {kind}; "
                      "give a file path")
    return target


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder (mode 0666 less the umask).

    A symlink is written through (its target is replaced, the link kept); a path that is
    a device, fifo, socket or folder raises OSError (``output_target``).
    """
    target = output_target(path)
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


def _own_files(root: Path) -> list[tuple[Path, os.stat_result]]:
    """The files pytest-uoc wrote under ``root`` with their stat (inside ``CACHE_ENTRIES``; the marker excluded)."""
    files = []
    for name in CACHE_ENTRIES:
        entry = root / name
        if entry.is_symlink() or not entry.is_dir():
            continue
        for file in entry.rglob("*"):
            try:
                if file.is_file() and not file.is_symlink():
                    files.append((file, file.stat()))
            except OSError:  # removed by a concurrent run
                continue
    return files


def cache_size(folder: str | Path) -> int:
    """Bytes pytest-uoc's entries hold under ``folder`` (0 when it does not exist)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        return 0
    return sum(stat.st_size for _, stat in _own_files(root))


def clear_cache(folder: str | Path) -> tuple[int, int]:
    """Remove pytest-uoc's entries under ``folder`` (nothing else); returns (files removed, bytes freed).

    Raises NotACacheError for a folder that is not a pytest-uoc cache (``check_cache_folder``).
    """
    root = Path(folder).expanduser()
    check_cache_folder(root)
    if not root.is_dir():
        return 0, 0
    files = _own_files(root)
    for name in CACHE_ENTRIES:
        entry = root / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    return len(files), sum(stat.st_size for _, stat in files)


def touch(path: str | Path) -> None:
    """Mark a cache entry as used now (its modification time orders the eviction)."""
    try:
        os.utime(path)
    except OSError:  # a read-only or vanished entry is simply not re-ranked
        pass


def evict_lru(folder: str | Path, max_bytes: int) -> tuple[int, int]:
    """Remove the least recently used files under ``folder`` until it holds at most ``max_bytes``.

    Returns (files removed, bytes freed). Empty sub-folders left behind are removed. Only
    pytest-uoc's entries count and are removed (``CACHE_ENTRIES``).
    """
    root = Path(folder).expanduser()
    if not root.is_dir() or max_bytes <= 0:
        return 0, 0
    check_cache_folder(root)
    entries = [(stat.st_mtime, stat.st_size, file) for file, stat in _own_files(root)]
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
        subs = [p for name in CACHE_ENTRIES if (root / name).is_dir() for p in (root / name).rglob("*") if p.is_dir()]
        for sub in sorted(subs, key=lambda p: len(p.parts), reverse=True):
            try:
                sub.rmdir()
            except OSError:  # not empty
                pass
    return removed, freed
