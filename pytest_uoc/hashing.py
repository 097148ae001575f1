"""SHA-256 of model files, each large file read once per process (keyed by path, size and mtime).

Reports record the hash of every weights file they depend on so that a figure can be
reproduced; a 4 GB checkpoint must not be read again for every test, so a hash is kept
for as long as the file's path, size and modification time stay the same.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["WEIGHT_SUFFIXES", "file_sha256", "weights_sha256"]

#: Files of a folder that hold weights (what ``weights_sha256`` hashes in a folder).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".npz")
_CHUNK = 1 << 20
_known: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of one file, computed once while its path, size and mtime stay the same."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _known:
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _known[key] = digest.hexdigest()
    return _known[key]


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """A file's SHA-256; for a folder, the SHA-256 over its weight files' relative paths and hashes (sorted)."""
    root = Path(path)
    if root.is_file():
        return file_sha256(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no file or folder at {str(root)!r} to hash")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(root).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()
