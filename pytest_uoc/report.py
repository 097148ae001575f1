"""Reports: the terminal table, the versioned JSON document, PNG curves and image grids.

Files are written atomically (a temporary file renamed into place), so an
interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .cache import atomic_write_bytes
from .units import same_psi

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "OutputWarning",
    "artifact_dir",
    "atomic_write_bytes",
    "bracket_at",
    "calibration_table",
    "plot_calibrated",
    "plot_bars",
    "plot_curve",
    "plot_gap",
    "terminal_table",
    "write_image_grid",
    "write_labelled_grid",
    "write_json_report",
]

#: 2: rows gain ``rule``, ``anchors``, ``scorer`` and ``calibration`` (the null finishes); every field of 1 is kept.
#: 3: the document gains ``record`` (versions, command line, model files' SHA-256), rows gain ``run`` (scheduler
#: class and config, steps, guidance, seeds, ψ grid, device, dtype), ``judge`` and ``pictures``; every field of 2 kept.
REPORT_SCHEMA_VERSION = 3


class OutputWarning(UserWarning):
    """A plot or image grid could not be written; the verdict stands."""


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


_COLUMNS = (
    ("test", "test"), ("model", "model"), ("concept", "concept"), ("outcome", "outcome"), ("verdict", "verdict"),
    ("gate", "gate"), ("value", "value"), ("limit", "limit"),
    ("ccs_at_zero", "CCS@0"), ("ccs_at_psi", "CCS@psi"), ("psi", "psi"), ("threshold", "retrieved@"),
    ("bracket_at_psi", "concept@psi [nulls]"),
    ("crs", "CRS"), ("retention", "retention"), ("heldout_accuracy", "clf acc"), ("seconds", "s"),
)

#: How the terminal table writes a gate's limit: the value must stay at or below (max) or at or above (min) it.
_LIMIT_SIGN = {"max": "<=", "min": ">="}


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
            if key == "limit" and isinstance(value, int | float):
                value = f"{_LIMIT_SIGN.get(str(row.get('limit_kind')), '')}{value:g}"
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

    from .record import settings_dict

    try:
        plugin_version = version("pytest-uoc")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        plugin_version = "unknown"
    document = {
        "schema": "pytest-uoc/report",
        "schema_version": REPORT_SCHEMA_VERSION,
        "plugin_version": plugin_version,
        "settings": settings_dict(settings),
        "record": _record(settings),
        "interrupted": bool(interrupted),
        "unfinished": list(unfinished),
        "tests": [{k: v for k, v in row.items() if k != "started"}
                  for row in sorted(rows, key=lambda r: str(r.get("test", "")))],
    }
    return atomic_write_bytes(path, json.dumps(document, indent=2, default=str).encode())


def _record(settings: Any) -> dict[str, Any]:
    """The run's reproducibility record (``record.run_record``); a record that fails is noted, never fatal."""
    from .record import run_record

    try:
        return run_record(settings)
    except Exception as exc:  # noqa: BLE001 - a record is never worth the report
        return {"error": f"{type(exc).__name__}: {exc}"}


def artifact_dir(session: Any, nodeid: str, *, explicit_only: bool) -> Path | None:
    """Folder for one test's files: under ``--uoc-artifacts``, else (failures only) the cache."""
    root = session.settings.artifacts
    if root is None:
        if explicit_only:
            return None
        try:
            root = session.open_cache() / "artifacts"
        except (OSError, ValueError) as exc:  # a picture is never worth a verdict
            _output_warning(session.cache_dir, exc)
            return None
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


def _png_bytes(figure: Any, title: str = "") -> bytes:
    """The figure as PNG bytes; ``title`` also goes into the PNG's ``Title`` text chunk."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight",
                   metadata={"Title": title} if title else None)
    return buffer.getvalue()


def _axes(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A new matplotlib figure and its axes (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def _save_figure(figure: Any, path: str | Path, title: str = "") -> Path:
    """Write the figure as a PNG at ``path`` (``title`` in its text chunk) and close it."""
    import matplotlib.pyplot as plt

    data = _png_bytes(figure, title)
    plt.close(figure)
    return _write_artifact(path, data)


def _band(ax: Any, xs: Sequence[float], points: Sequence[Any], style: str, color: str, label: str,
          alpha: float) -> None:
    """Means as a line, 95% intervals as a shaded band (``points`` have mean, low, high)."""
    ax.plot(xs, [p.mean for p in points], style, color=color, label=label)
    ax.fill_between(xs, [p.low for p in points], [p.high for p in points], color=color, alpha=alpha)


def plot_curve(curve: Any, path: str | Path, *, limit: float | None = None, psi_limit: float | None = None,
               title: str = "", reference: Any = None, xlabel: str | None = None) -> Path:
    """CCS against ψ with its 95% band, the limit, and an optional reference curve."""
    psis = list(curve.psis)
    fig, ax = _axes((5, 3.2))
    _band(ax, psis, [curve.at(p) for p in psis], "o-", "tab:red", "unlearned", 0.2)
    if reference is not None:
        _band(ax, psis, [reference.at(p) for p in psis], "s--", "tab:blue", "reference", 0.15)
    if limit is not None:
        ax.axhline(limit, color="black", lw=1, ls=":", label=f"ccs_max {limit}")
    if psi_limit is not None:
        ax.axvline(psi_limit, color="gray", lw=1, ls="--")
    ax.set_xlabel(xlabel or "ψ (share of the denoising done by the original)")
    ax.set_ylabel("CCS")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save_figure(fig, path, title)


def calibration_table(verdict: Any) -> list[str]:
    """Per ψ: original steps, the unlearned model's concept share, both nulls (and the gold standard), the excesses.

    The flags are the rule's own reading (``scoring.calibration.read_points``): "concealed"
    marks the ψ on the concealed side of a concealed verdict, "above ccs_max" the ψ whose
    excess over the lower null is not within ``ccs_max``, "no original step" a ψ that proves
    nothing.
    """
    from .scoring.calibration import ALPHA, read_points

    curve = verdict.calibrated_curve
    ref = curve.has_reference
    strength = curve.axis == "strength"
    head = (f"  {'strength' if strength else 'psi':>5} | {'steps':>5} | {'unlearned':>9} | {'upper null':>10} | {'lower null':>10} | "
            + (f"{'gold':>5} | {'gap to gold [CI]':^20}" if ref else
               f"{'excess>upper [CI]':^22} | {'excess>lower [CI]':^22}"))
    lines = [f"shows the concept ({curve.scorer}), anchors {list(curve.anchors)}:", head]
    for reading in read_points(curve, psi_limit=verdict.psi_limit, ccs_max=verdict.ccs_max):
        point, hi, lo = reading.point, reading.high_side, reading.low_side
        flag = ""
        if reading.idle:
            flag = "  <- no step" if strength else "  <- no original step"
        elif reading.concealing and verdict.kind == "concealed":
            flag = "  <- above " + ("the gold standard" if ref else "the nulls' midpoint")
        elif reading.above_limit:
            flag = "  <- above ccs_max"
        steps = f"{point.original_steps}/{point.total_steps}"
        cells = (f"  {point.psi:>5.3f} | {steps:>5} | {point.unlearned.mean:>9.3f} | "
                 f"{point.upper.mean:>10.3f} | {point.lower.mean:>10.3f} | ")
        if ref:
            cells += f"{point.reference.mean:>5.3f} | {hi.mean:+.3f} [{hi.low:+.3f}, {hi.high:+.3f}]"
        else:
            cells += (f"{hi.mean:+.3f} [{hi.low:+.3f}, {hi.high:+.3f}] | "
                      f"{lo.mean:+.3f} [{lo.low:+.3f}, {lo.high:+.3f}]")
        lines.append(cells + flag)
    overall = curve.overall_gap if ref else curve.overall_midpoint
    if overall is not None:
        lines.append(f"excess over the {'gold standard' if ref else 'midpoint of the nulls'} averaged over the tested "
                     f"{'strengths' if strength else 'ψ'}: {overall.mean:+.3f} "
                     f"[{overall.low:+.3f}, {overall.high:+.3f}]")
    lines.append("rule: concealed = the excess over the "
                 + ("gold standard" if ref else "midpoint of the nulls (closer to the original finishing with the "
                    "anchor than to the original steered away)")
                 + f", averaged over the tested {'strengths < 1' if strength else 'ψ > 0'}, significantly above 0 "
                 + f"({1 - ALPHA:.0%} interval); forgotten = every "
                 + ("strength ≥" if strength else "ψ ≤") + " the limit within ccs_max of the "
                 + ("gold standard" if ref else "lower null (the original steered away from the concept)"))
    return lines


def bracket_at(verdict: Any, psi: float) -> str | None:
    """'unlearned [lower, upper]' at ψ for the summary table, or None without calibration."""
    curve = verdict.calibrated_curve
    if curve is None:
        return None
    for point_psi in curve.psis:
        if same_psi(point_psi, psi):
            point = curve.at(point_psi)
            return f"{point.unlearned.mean:.2f} [{point.lower.mean:.2f}, {point.upper.mean:.2f}]"
    return None


def plot_calibrated(calibration: Mapping[str, Any], path: str | Path, *, limit: float | None = None,
                    psi_limit: float | None = None, title: str = "") -> Path:
    """The calibrated verdict's evidence: the unlearned model against the two null finishes (shaded bracket).

    ``calibration`` is ``Verdict.calibration``: per ψ, the share of images showing the
    concept for the unlearned model, the upper and lower nulls, and the gold standard
    where one was given.
    """
    points = list(calibration["points"])
    psis = [p["psi"] for p in points]
    fig, ax = _axes((5.4, 3.4))
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
    return _save_figure(fig, path)


def write_image_grid(images_by_psi: Mapping[float, Any], path: str | Path, *, max_columns: int = 8,
                     axis: str = "psi", title: str = "") -> Path:
    """A PNG grid: one row per ψ (or strength: ``axis``), its value written at the left, one column per
    image (the first ``max_columns``), under ``title`` (name the model there)."""
    rows = [(f"{axis} {key:.2f}", images_by_psi[key]) for key in sorted(images_by_psi)]
    return write_labelled_grid(rows, path, max_columns=max_columns, title=title)


def _draw_text(draw: Any, xy: tuple[int, int], text: str, font: Any) -> None:
    """Draw ``text``; a font without the glyphs gets an ASCII rendering instead of an error."""
    try:
        draw.text(xy, text, fill="black", font=font)
    except (UnicodeError, ValueError, OSError):
        draw.text(xy, text.encode("ascii", "replace").decode(), fill="black", font=font)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def write_labelled_grid(rows: Sequence[tuple[str, Any]], path: str | Path, *, max_columns: int = 8,
                        title: str = "") -> Path:
    """A PNG grid of labelled rows: ``(label, images N×3×H×W in [0, 1] or uint8)``, the label at the left of its row.

    ``title`` is written above the grid; the title and the row labels also go into the
    PNG's text chunks (``Title``, ``Rows``: one label a line) for tools that read them.
    """
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFont
    from PIL.PngImagePlugin import PngInfo

    from .pixels import compact_images, float_images

    labels = [_short(str(label)) for label, _ in rows]
    strips = []
    for _, batch in rows:
        batch = compact_images(float_images(batch[:max_columns].detach().cpu()))
        tiles = [np.pad(img.permute(1, 2, 0).numpy(), ((1, 1), (1, 1), (0, 0))) for img in batch]
        strips.append(np.concatenate(tiles, axis=1))
    scale = max(1, 96 // max(1, strips[0].shape[0]))
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def size(text: str) -> tuple[int, int]:
        try:
            left, top, right, bottom = measure.textbbox((0, 0), text, font=font)
        except (UnicodeError, ValueError, OSError):
            left, top, right, bottom = measure.textbbox((0, 0), text.encode("ascii", "replace").decode(), font=font)
        return right - left, bottom - top

    label_width = max(size(label)[0] for label in labels) + 10
    grid_width = max(strip.shape[1] for strip in strips) * scale
    title_height = size(title)[1] + 10 if title else 0
    heights = [strip.shape[0] * scale for strip in strips]
    width = max(label_width + grid_width, size(title)[0] + 10 if title else 0)
    canvas = Image.new("RGB", (width, title_height + sum(heights)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        _draw_text(draw, (4, 4), title, font)
    top = title_height
    for label, strip, height in zip(labels, strips, heights, strict=True):
        tile = Image.fromarray(strip).resize((strip.shape[1] * scale, height), Image.NEAREST)
        canvas.paste(tile, (label_width, top))
        _draw_text(draw, (4, top + max(0, (height - size(label)[1]) // 2)), label, font)
        top += height
    info = PngInfo()
    info.add_itxt("Title", title)
    info.add_itxt("Rows", "\n".join(labels))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", pnginfo=info)
    return _write_artifact(path, buffer.getvalue())


def plot_gap(gap: Any, path: str | Path, *, limit: float | None = None, title: str = "") -> Path:
    """The concealment gap CCS(unlearned) − CCS(reference) against ψ with its 95% band and ``max_gap``."""
    psis = list(gap.psis)
    fig, ax = _axes((5, 3.2))
    _band(ax, psis, [gap.at(p) for p in psis], "o-", "tab:red", "unlearned − reference", 0.2)
    ax.axhline(0.0, color="gray", lw=1)
    if limit is not None:
        ax.axhline(limit, color="black", lw=1, ls=":", label=f"max_gap {limit:g}")
    ax.set_xlabel("ψ (share of the denoising done by the original)")
    ax.set_ylabel("concealment gap (CCS)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save_figure(fig, path, title)


def plot_bars(labels: Sequence[str], series: Mapping[str, Sequence[Any]], path: str | Path, *,
              limit: float | None = None, limit_name: str = "limit", ylabel: str = "", title: str = "",
              ylim: tuple[float, float] | None = (0.0, 1.02)) -> Path:
    """Grouped bars, one group per label (a prompt), one bar per series; a line at the limit.

    Each series holds one value per label: a number, or ``(mean, low, high)`` for a bar
    with its 95% interval.
    """
    import numpy as np

    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    fig, ax = _axes((max(4.0, 1.1 * len(labels) + 2), 3.4))
    for index, (name, values) in enumerate(series.items()):
        means = [v[0] if isinstance(v, tuple | list) else v for v in values]
        offset = x - 0.4 + width * (index + 0.5)
        if all(isinstance(v, tuple | list) for v in values):
            errors = np.array([[m - v[1] for m, v in zip(means, values, strict=True)],
                               [v[2] - m for m, v in zip(means, values, strict=True)]]).clip(min=0)
            ax.bar(offset, means, width, yerr=errors, capsize=3, label=name)
        else:
            ax.bar(offset, means, width, label=name)
    if limit is not None:
        ax.axhline(limit, color="black", lw=1, ls=":", label=f"{limit_name} {limit:g}")
    ax.set_xticks(x, [_short(str(label), 28) for label in labels], rotation=20, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save_figure(fig, path, title)
