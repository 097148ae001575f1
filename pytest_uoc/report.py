"""Reports: the terminal table, the versioned JSON document, PNG curves and image grids.

Files are written atomically (a temporary file renamed into place), so an
interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "OutputWarning",
    "artifact_dir",
    "atomic_write_bytes",
    "plot_curve",
    "terminal_table",
    "write_image_grid",
    "write_json_report",
]

#: 2: rows gain ``rule``, ``anchors``, ``scorer`` and ``calibration`` (the null finishes); every field of 1 is kept.
REPORT_SCHEMA_VERSION = 2


class OutputWarning(UserWarning):
    """A plot or image grid could not be written; the verdict stands."""


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


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


_COLUMNS = (
    ("test", "test"), ("model", "model"), ("concept", "concept"), ("verdict", "verdict"),
    ("ccs_at_zero", "CCS@0"), ("ccs_at_psi", "CCS@psi"), ("psi", "psi"), ("threshold", "retrieved@"),
    ("bracket_at_psi", "concept@psi [nulls]"),
    ("crs", "CRS"), ("retention", "retention"), ("heldout_accuracy", "clf acc"), ("seconds", "s"),
)


def terminal_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per concept test, columns aligned."""
    table = [[title for _, title in _COLUMNS]]
    for row in sorted(rows, key=lambda r: str(r.get("test", ""))):
        cells = []
        for key, _ in _COLUMNS:
            value = row.get(key)
            if key == "test" and isinstance(value, str):
                value = value.split("::")[-1]
            if key == "seconds" and value is not None:
                value = f"{value:.1f}"
            cells.append(_fmt(value, ".2f" if key in ("psi", "threshold") else ".3f"))
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table]


def write_json_report(path: str | Path, rows: Sequence[Mapping[str, Any]], settings: Any, *,
                      interrupted: bool = False, unfinished: Sequence[str] = ()) -> Path:
    """The versioned JSON report (schema in docs/report.md).

    An interrupted run says so (``"interrupted": true``) and lists the tests that
    did not finish (``"unfinished"``); their rows have ``"outcome": "interrupted"``.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        plugin_version = version("pytest-uoc")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        plugin_version = "unknown"
    document = {
        "schema": "pytest-uoc/report",
        "schema_version": REPORT_SCHEMA_VERSION,
        "plugin_version": plugin_version,
        "settings": {k: v for k, v in vars(settings).items() if k != "sources"} if settings is not None else {},
        "interrupted": bool(interrupted),
        "unfinished": list(unfinished),
        "tests": [{k: v for k, v in row.items() if k != "started"}
                  for row in sorted(rows, key=lambda r: str(r.get("test", "")))],
    }
    return atomic_write_bytes(path, json.dumps(document, indent=2, default=str).encode())


def artifact_dir(session: Any, nodeid: str, *, explicit_only: bool) -> Path | None:
    """Folder for one test's files: under ``--uoc-artifacts``, else (failures only) the cache."""
    root = session.settings.artifacts
    if root is None:
        if explicit_only:
            return None
        root = session.cache_dir / "artifacts"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]
    folder = Path(root) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a picture is never worth a verdict
        _output_warning(folder, exc)
        return None
    return folder


def _output_warning(path: str | Path, exc: BaseException) -> None:
    import warnings

    warnings.warn(OutputWarning(f"pytest-uoc: could not write {path}: {exc}; the verdict stands"), stacklevel=3)


def _write_artifact(path: str | Path, data: bytes) -> Path:
    """``atomic_write_bytes`` for pictures: an output error is a warning, not a failed test."""
    try:
        return atomic_write_bytes(path, data)
    except OSError as exc:
        _output_warning(path, exc)
        return Path(path)


def _png_bytes(figure: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_curve(curve: Any, path: str | Path, *, limit: float | None = None, psi_limit: float | None = None,
               title: str = "", reference: Any = None, xlabel: str | None = None) -> Path:
    """CCS against ψ with its 95% band, the limit, and an optional reference curve."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    psis = list(curve.psis)
    est = [curve.at(p) for p in psis]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(psis, [e.mean for e in est], "o-", color="tab:red", label="unlearned")
    ax.fill_between(psis, [e.low for e in est], [e.high for e in est], color="tab:red", alpha=0.2)
    if reference is not None:
        ref = [reference.at(p) for p in psis]
        ax.plot(psis, [e.mean for e in ref], "s--", color="tab:blue", label="reference")
        ax.fill_between(psis, [e.low for e in ref], [e.high for e in ref], color="tab:blue", alpha=0.15)
    if limit is not None:
        ax.axhline(limit, color="black", lw=1, ls=":", label=f"ccs_max {limit}")
    if psi_limit is not None:
        ax.axvline(psi_limit, color="gray", lw=1, ls="--")
    ax.set_xlabel(xlabel or "ψ (share of the denoising done by the original)")
    ax.set_ylabel("CCS")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    data = _png_bytes(fig)
    plt.close(fig)
    return _write_artifact(path, data)


def plot_calibrated(calibration: Mapping[str, Any], path: str | Path, *, limit: float | None = None,
                    psi_limit: float | None = None, title: str = "") -> Path:
    """The calibrated verdict's evidence: the unlearned model against the two null finishes (shaded bracket).

    ``calibration`` is ``Verdict.calibration``: per ψ, the share of images showing the
    concept for the unlearned model, the upper and lower nulls, and the gold standard
    where one was given.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    points = list(calibration["points"])
    psis = [p["psi"] for p in points]
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    upper = [p["upper_null"]["mean"] for p in points]
    lower = [p["lower_null"]["mean"] for p in points]
    ax.fill_between(psis, lower, upper, color="tab:gray", alpha=0.25, label="null bracket (lower–upper)")
    ax.plot(psis, upper, "v--", color="tab:gray", lw=1, label="upper null (anchor)")
    ax.plot(psis, lower, "^:", color="tab:gray", lw=1, label="lower null (concept as negative)")
    ax.plot(psis, [p["unlearned"]["mean"] for p in points], "o-", color="tab:red", label="unlearned")
    ax.fill_between(psis, [p["unlearned"]["low"] for p in points], [p["unlearned"]["high"] for p in points],
                    color="tab:red", alpha=0.15)
    if all("reference" in p for p in points):
        ax.plot(psis, [p["reference"]["mean"] for p in points], "s-", color="tab:blue", label="gold standard")
    if psi_limit is not None:
        ax.axvline(psi_limit, color="black", lw=1, ls="--")
    ax.set_xlabel("ψ (share of the denoising done by the original)")
    ax.set_ylabel(f"shows the concept ({calibration.get('scorer', 'scorer')})", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title + (f"  (ccs_max {limit:g} over the lower null)" if limit is not None else ""), fontsize=8)
    ax.legend(fontsize=6, loc="upper left")
    data = _png_bytes(fig)
    plt.close(fig)
    return _write_artifact(path, data)


def write_image_grid(images_by_psi: Mapping[float, Any], path: str | Path, *, max_columns: int = 8) -> Path:
    """A PNG grid: one row per ψ, one column per image (the first ``max_columns``)."""
    import numpy as np
    from PIL import Image

    rows = []
    for psi in sorted(images_by_psi):
        batch = images_by_psi[psi][:max_columns].float().clamp(0, 1)
        tiles = [np.pad((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8), ((1, 1), (1, 1), (0, 0)))
                 for img in batch]
        rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    grid = np.concatenate(rows, axis=0)
    scale = max(1, 96 // max(1, rows[0].shape[0]))
    image = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _write_artifact(path, buffer.getvalue())
