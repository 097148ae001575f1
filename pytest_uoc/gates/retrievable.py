"""Gate "not retrievable": partial diffusion (or the restoration attack) does not bring the concept back.

``evaluate``: CCS (or the calibrated excess over the null finishes) stays within ``ccs_max``
at every ψ ≤ ``psi`` and the classifier tells λO from λU; optionally the paper's CRS
stays within ``crs_max``. ``evaluate_restore``: the same at every restoration strength
≥ ``strength``. No pytest here.
"""

from __future__ import annotations

from typing import Any

from ..report import bracket_at, calibration_table
from ..rows import Check, GateEntry, RowUpdate
from ._common import ARTIFACTS_HINT, ccs_table, curve_pictures, judge_line, verdict_checks
from .result import GateResult

__all__ = ["evaluate", "evaluate_restore"]


def evaluate(probe: Any, psi: float, ccs_max: float, *, crs_max: float | None = None,
             gate: str = "not_retrievable") -> GateResult:
    """The partial-diffusion gate at ψ ≤ ``psi`` (``gate`` names it in the report row)."""
    verdict = probe.verdict(psi, ccs_max)
    # The verdict carries the CCS curve it read (a probe of one's own making may not: then compute it).
    curve = verdict.ccs_curve if getattr(verdict, "ccs_curve", None) is not None else probe.ccs_curve(
        probe.verdict_grid(psi))
    crs_value = None
    crs_failed = False
    if crs_max is not None:
        crs_psis = [p for p in curve.psis if 0 < p < 1] or [psi]
        crs_value = probe.crs(crs_psis).value
        crs_failed = crs_value > crs_max
    cal = verdict.calibration
    values = dict(verdict=verdict.kind, psi=psi, ccs_max=ccs_max,
                  ccs_at_zero=round(curve.at(curve.psis[0]).mean, 4),
                  ccs_at_psi=round(curve.at(psi).mean, 4) if psi in curve else None,
                  threshold=verdict.first_retrieving_psi, heldout_accuracy=round(verdict.heldout_accuracy, 4),
                  crs=None if crs_value is None else round(crs_value, 4), curve=curve.to_dict(),
                  rule="absolute" if cal is None else f"calibrated:{cal['mode']}", reason=verdict.reason,
                  anchors=list(getattr(probe, "anchors", ())) or None,
                  prompts=list(getattr(probe.concept, "prompts", ())) or None,
                  anchors_derived=getattr(probe.concept, "anchors_derived", None),
                  scorer=None if cal is None else cal.get("scorer"), calibration=cal,
                  sequential=getattr(verdict, "sequential", None),
                  judge=getattr(verdict, "judge", None),
                  bracket_at_psi=bracket_at(verdict, psi))
    failed = not verdict.passed or crs_failed
    checks = verdict_checks(verdict, curve, ccs_max)
    if crs_value is not None:
        checks.append(Check.compare("CRS (paper)", crs_value, crs_max, "max"))
    row = RowUpdate(values, GateEntry.of(gate, checks, passed=not failed))
    pictures = curve_pictures(probe, curve, ccs_max, psi, lambda: probe.images(curve.psis), calibration=cal)
    if not failed:
        return GateResult(True, verdict, row, pictures=pictures)
    lines = [f"concept {probe.concept.name!r} is {verdict.kind.upper().replace('_', ' ')}: {verdict.reason}"]
    judged = getattr(verdict, "judge", None)
    if judged:
        lines.append(judge_line(judged))
    if cal is not None:
        lines += calibration_table(verdict)
        lines.append("anchors " + ("derived from the prompts (the concept's words removed)"
                                   if probe.concept.anchors_derived else "given") + ": "
                     + ", ".join(f"{p!r} -> {a!r}" for p, a in zip(probe.concept.prompts, probe.anchors,
                                                                      strict=True)))
        lines.append("CCS (domain classifier, λO vs λU) per ψ:")
    # Flags only where they say what the verdict says (a not-erased model is not "retrieved" at every ψ).
    lines += ccs_table(curve, ccs_max, flags=cal is None and verdict.kind != "not_erased")
    lines.append(f"classifier held-out accuracy: {verdict.heldout_accuracy:.3f} "
                 f"(floor {verdict.accuracy_floor:.2f}, {probe.settings.backbone})")
    if verdict.kind == "concealed":
        lines.append(f"smallest psi that retrieves the concept: {verdict.first_retrieving_psi:.3f}")
    elif verdict.kind == "not_erased":
        lines.append("the unlearned model shows the concept on its own (ψ = 0): nothing to retrieve")
    if crs_value is not None:
        lines.append(f"CRS (paper) {crs_value:.3f} {'>' if crs_failed else '<='} crs_max {crs_max}")
    return GateResult(False, verdict, row, "\n".join(lines), pictures, ARTIFACTS_HINT)


def evaluate_restore(probe: Any, strength: float, ccs_max: float, *, reference_images: Any = None) -> GateResult:
    """The restoration-attack gate at strengths ≥ ``strength`` (``guidance="restore"``)."""
    verdict = probe.restore_verdict(strength, ccs_max, reference_images=reference_images)
    curve = verdict.ccs_curve if getattr(verdict, "ccs_curve", None) is not None else probe.restore_curve(
        probe.restore_grid(strength), reference_images=reference_images)
    summary = {"verdict": verdict.kind, "strength": strength, "ccs_max": ccs_max,
               "ccs_at_strength": round(curve.at(strength).mean, 4) if strength in curve else None,
               "largest_restoring_strength": verdict.first_retrieving_psi,
               "references": "user images" if reference_images is not None else "original", "curve": curve.to_dict(),
               "reason": verdict.reason, "calibration": verdict.calibration,
               "judge": getattr(verdict, "judge", None)}
    headline = {"verdict": verdict.kind, "psi": strength, "ccs_max": ccs_max, "guidance": "restore",
                "ccs_at_zero": round(curve.at(1.0).mean, 4), "ccs_at_psi": summary["ccs_at_strength"],
                "threshold": verdict.first_retrieving_psi, "heldout_accuracy": round(verdict.heldout_accuracy, 4)}
    failed = not verdict.passed
    checks = verdict_checks(verdict, curve, ccs_max, axis="strength")
    row = RowUpdate({"restore": summary}, GateEntry.of("not_restorable", checks, passed=not failed), headline)
    images = probe.restore_images(curve.psis, reference_images=reference_images)
    pictures = curve_pictures(probe, curve, ccs_max, strength, lambda: images,
                              xlabel="restoration strength (share of the denoising done by the unlearned model)")
    if not failed:
        return GateResult(True, verdict, row, pictures=pictures)
    lines = [f"concept {probe.concept.name!r} is {verdict.kind.upper().replace('_', ' ')} "
             f"under the restoration attack: {verdict.reason}"]
    if verdict.calibration is not None:
        lines += calibration_table(verdict)
        lines.append("CCS (domain classifier) per strength:")
    lines += ccs_table(curve, ccs_max, axis="strength", flags=verdict.calibration is None)
    lines.append(f"classifier held-out accuracy: {verdict.heldout_accuracy:.3f} "
                 f"(floor {verdict.accuracy_floor:.2f}, {probe.settings.backbone})")
    restoring = verdict.first_retrieving_psi
    lines.append("largest strength that restores the concept: "
                 + ("none down to the limit" if restoring is None else f"{restoring:.3f}"))
    lines.append("references: " + ("the given reference_images" if reference_images is not None
                                   else "the original model's images of the concept (λO, scoring seeds)"))
    return GateResult(False, verdict, row, "\n".join(lines), pictures, ARTIFACTS_HINT)
