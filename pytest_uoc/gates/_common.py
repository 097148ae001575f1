"""What several gates share: titles, the CCS table and checks of a verdict, and their pictures. No pytest here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..report import (
    plot_bars,
    plot_calibrated,
    plot_curve,
    write_image_grid,
    write_labelled_grid,
)
from ..rows import Check
from .result import Picture

#: The line a CCS gate's failure ends with when it wrote no picture.
ARTIFACTS_HINT = "(pass --uoc-artifacts DIR to keep plots and image grids)"


def title(probe: Any) -> str:
    """Plot and grid title: the concept and the model under test."""
    return f"{probe.concept.name}: {probe.labels.get('unlearned', '?')}"


def curve_title(probe: Any) -> str:
    """The CCS curve's title (an unnamed model stays blank)."""
    return f"{probe.concept.name}: {probe.labels.get('unlearned', '')}"


def ccs_table(curve: Any, limit: float, axis: str = "psi", *, flags: bool = True) -> list[str]:
    """``ψ | CCS | 95% CI | limit``, one line per point, flagging the retrieved (restored) and above-limit ones."""
    from ..scoring.verdict import retrieved  # here, not at the top: scoring imports torch

    width = max(6, len(axis))
    lines = [f"  {axis:>{width}} | {'CCS':>6} | {'95% CI':^17} | {'limit':>5}"]
    hit = "  <- retrieved" if axis == "psi" else "  <- restored"
    for psi in curve.psis:
        est = curve.at(psi)
        flag = hit if retrieved(est, limit) else ("  <- above limit" if est.mean > limit else "")
        flag = flag if flags else ""
        interval = f"[{est.low:.3f}, {est.high:.3f}]"
        lines.append(f"  {psi:>{width}.3f} | {est.mean:>6.3f} | {interval:^17} | {limit:>5.2f}{flag}")
    return lines


def judge_line(judge: dict[str, Any]) -> str:
    """One line naming the judge, its version and threshold, and what its check on the training seeds read."""
    check = judge.get("check", {})
    parts = [f"judge: {judge.get('name')}"]
    if judge.get("version"):
        parts.append(str(judge["version"]))
    if judge.get("threshold") is not None:
        parts.append(f"threshold {judge['threshold']:g}")
    if judge.get("weights_sha256"):
        parts.append(f"weights sha256 {str(judge['weights_sha256'])[:12]}")
    line = ", ".join(parts)
    if check:
        line += (f"; on the training seeds it finds the concept in {check['original_share']:.3f} of the original's "
                 f"images (needs >= {check['min_original']:g}) and {check['anchor_share']:.3f} of the anchor's "
                 f"(needs <= {check['max_anchor']:g})")
    return line


def verdict_checks(verdict: Any, curve: Any, ccs_max: float, axis: str = "psi") -> list[Check]:
    """The numbers a CCS verdict compared with its limits (absolute or calibrated rule).

    Absolute: the highest upper 95% bound of CCS over the ψ (strengths) the verdict
    looked at, against ``ccs_max``. Calibrated: the highest upper bound of the excess
    over the lower null (or of the gap to the gold standard) against ``ccs_max``, and
    the highest lower bound of the excess over the upper null against 0. Both: the
    classifier's held-out accuracy against its floor.
    """
    checks = []
    sym = "strength" if axis == "strength" else "psi"
    if verdict.calibrated_curve is None:
        worst = max(curve.psis, key=lambda p: curve.at(p).high)
        checks.append(Check.compare(f"CCS upper 95% bound (highest, at {sym} {worst:g})", curve.at(worst).high,
                                    ccs_max, "max"))
    else:
        from ..scoring.calibration import read_points

        calibrated = verdict.calibrated_curve
        ref = calibrated.has_reference
        within = [r for r in read_points(calibrated, psi_limit=verdict.psi_limit, ccs_max=ccs_max)
                  if r.looked_at and not r.idle]
        if within:
            worst = max(within, key=lambda r: r.low_side.high)
            what = "gap to the gold standard" if ref else "excess over the lower null"
            checks.append(Check.compare(f"{what}, upper 95% bound (highest, at {sym} {worst.point.psi:g})",
                                        worst.low_side.high, ccs_max, "max"))
            hit = [r for r in within if r.attacked]
            if hit:
                worst = max(hit, key=lambda r: r.high_side.low)
                what = "gap to the gold standard" if ref else "excess over the upper null"
                checks.append(Check.compare(f"{what}, lower bound (highest, at {sym} {worst.point.psi:g})",
                                            worst.high_side.low, 0.0, "max"))
    checks.append(Check.compare("classifier held-out accuracy", verdict.heldout_accuracy, verdict.accuracy_floor,
                                "min"))
    return checks


def curve_pictures(probe: Any, curve: Any, limit: float, psi_limit: float, images: Callable[[], Any], *,
                   xlabel: str | None = None, calibration: Any = None) -> tuple[Picture, ...]:
    """The CCS curve plot, its image grid (``images()``: per ψ or strength) and the calibration plot."""
    prefix = "" if xlabel is None else "restore_"
    pictures = [
        Picture(f"{prefix}ccs_curve.png", lambda path: plot_curve(
            curve, path, limit=limit, psi_limit=psi_limit, title=curve_title(probe), xlabel=xlabel), guarded=False),
        Picture(f"{prefix}image_grid.png", lambda path: write_image_grid(
            images(), path, max_columns=8, axis="psi" if xlabel is None else "strength", title=title(probe)),
            guarded=False),
    ]
    if calibration is not None:
        pictures.append(Picture(f"{prefix}calibration.png", lambda path: plot_calibrated(
            calibration, path, limit=limit, psi_limit=psi_limit, title=curve_title(probe)), guarded=False))
    return tuple(pictures)


def prompt_rows(probe: Any, prompts: Sequence[str], sources: Sequence[tuple[str, float, bool]]) -> list[tuple[str, Any]]:
    """Grid rows per prompt and source ``(name, ψ, reference model)``: images already drawn for the gate."""
    batches = {}
    for name, psi, reference in sources:
        images = (probe.prompt_images(prompts, [psi], reference=True) if reference
                  else probe.prompt_images(prompts, [psi]))
        batches[name] = images[psi]
    rows = []
    for index, prompt in enumerate(prompts):
        for name, images in batches.items():
            per = len(images) // len(prompts)
            rows.append((f"{name}: {prompt!r}", images[index * per:(index + 1) * per]))
    return rows


def prompt_grid(probe: Any, name: str, prompts: Sequence[str], sources: Sequence[tuple[str, float, bool]], *,
                suffix: str = "") -> tuple[Picture, ...]:
    """A labelled grid of the gate's prompt images (none for a probe that cannot draw prompts)."""
    if not hasattr(probe, "prompt_images"):
        return ()
    return (Picture(name, lambda path: write_labelled_grid(prompt_rows(probe, prompts, sources), path,
                                                           title=title(probe) + suffix)),)


def bars(probe: Any, name: str, labels: Sequence[str], series: dict[str, Any], *, suffix: str = "",
         **options: Any) -> Picture:
    """Grouped bars (``report.plot_bars``) under the probe's title and ``suffix``."""
    return Picture(name, lambda path: plot_bars(labels, series, path, title=title(probe) + suffix, **options))


def per_prompt_distance(result: Any, prompts: Sequence[str]) -> list[float] | None:
    """Mean distance per prompt from the prompt-major per-image distances, or None when they do not split."""
    values = getattr(result, "per_image", None)
    if values is None or not prompts or len(values) == 0 or len(values) % len(prompts):
        return None
    per = len(values) // len(prompts)
    return [float(sum(values[i * per:(i + 1) * per]) / per) for i in range(len(prompts))]


def retention_pictures(probe: Any, prompts: Sequence[str], result: Any, limit: float,
                       name: str) -> tuple[Picture, ...]:
    """Original vs unlearned image pairs per prompt, and bars of each prompt's mean distance."""
    pictures = list(prompt_grid(probe, f"{name}_pairs.png", prompts, [("original", 1.0, False), ("unlearned", 0.0, False)],
                                suffix=" (original vs unlearned, same seeds)"))
    distances = per_prompt_distance(result, prompts)
    if distances is not None:
        pictures.append(bars(probe, f"{name}_distance.png", prompts, {f"{result.distance} distance": distances},
                             limit=limit, limit_name="max_distance", ylabel=f"mean {result.distance} distance",
                             ylim=(0.0, max(1.0, limit * 1.2, *distances))))
    return tuple(pictures)
