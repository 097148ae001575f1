"""Assertions a model repository writes: the concept is gone, not hidden.

Inside a test marked ``@pytest.mark.uoc_concept(...)`` they find the test's
probe themselves; elsewhere pass ``probe=``. A failure reads like pytest's
own: the verdict in one line, a table (ψ | CCS | 95% CI | limit), the
classifier's held-out accuracy, the smallest ψ that retrieves the concept, and
the paths of the plot and image grid written for the test.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from .report import bracket_at, calibration_table
from .session import CURRENT_REQUEST

__all__ = [
    "assert_aligned",
    "assert_concept_erased",
    "assert_concept_not_retrievable",
    "assert_no_concealment_gap",
    "assert_no_leakage",
    "assert_pinpoint",
    "assert_retained",
    "current_judge",
    "current_probe",
]

#: Accepted values of ``assert_concept_not_retrievable(guidance=...)``.
GUIDANCES = ("partial", "restore")


def current_probe(probe: Any = None) -> Any:
    """``probe`` if given, else the running test's ``uoc`` probe."""
    __tracebackhide__ = True
    if probe is not None:
        return probe
    request = CURRENT_REQUEST.get()
    if request is None or request.node.get_closest_marker("uoc_concept") is None:
        where = "outside a test" if request is None else f"in {request.node.nodeid}"
        raise pytest.UsageError(
            f"pytest-uoc: no probe {where}: mark the test with @pytest.mark.uoc_concept('NAME', prompts=[...]) "
            "or pass probe=uoc (the fixture) to the assertion"
        )
    return request.getfixturevalue("uoc")


def _check_limit(name: str, value: Any, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def _row(probe: Any) -> dict[str, Any]:
    """The report row of the running test (created on first use)."""
    request = CURRENT_REQUEST.get()
    if request is None:
        return {}
    from .plugin import ensure_row

    return ensure_row(request.node, probe)


def _finish(row: dict[str, Any], probe: Any, **values: Any) -> None:
    if not row:
        return
    row.update({k: v for k, v in values.items() if v is not None})
    row["seconds"] = round(time.perf_counter() - row["started"], 2)
    row["cost"] = probe.cost.to_dict()


def _check(what: str, value: float, limit: float, kind: str) -> dict[str, Any]:
    """One number a gate compares with its limit; ``kind`` "max": the value must stay at or below it."""
    return {"check": what, "value": round(float(value), 4), "limit": float(limit), "limit_kind": kind,
            "passed": bool(value <= limit if kind == "max" else value >= limit)}


def _gate(row: dict[str, Any], gate: str, checks: list[dict[str, Any]], *, passed: bool | None = None) -> None:
    """Record a gate's deciding number and limit on the report row.

    ``checks`` are the numbers the gate compared with a limit; the deciding one is
    the first that broke its limit, else the first. ``gates`` keeps every assertion
    of the test; the row's ``gate``/``value``/``limit`` are the first failed one's,
    else the last one's.
    """
    if not row or not checks:
        return
    deciding = next((c for c in checks if not c["passed"]), checks[0])
    entry = {"gate": gate, "value": deciding["value"], "limit": deciding["limit"],
             "limit_kind": deciding["limit_kind"], "value_of": deciding["check"],
             "passed": all(c["passed"] for c in checks) if passed is None else bool(passed), "checks": checks}
    row.setdefault("gates", []).append(entry)
    _set_top(row)


def _set_top(row: dict[str, Any]) -> None:
    gates = row.get("gates") or []
    if not gates:
        return
    top = next((g for g in gates if not g["passed"]), gates[-1])
    row.update({key: top[key] for key in ("gate", "value", "limit", "limit_kind", "value_of", "checks")})


def _title(probe: Any) -> str:
    """Plot and grid title: the concept and the model under test."""
    return f"{probe.concept.name}: {probe.labels.get('unlearned', '?')}"


def _folder(force: bool) -> Any:
    """This test's artifact folder (``--uoc-artifacts``; failures also without it), or None."""
    request = CURRENT_REQUEST.get()
    if request is None:
        return None
    from .plugin import get_session
    from .report import artifact_dir

    return artifact_dir(get_session(request.config), request.node.nodeid, explicit_only=not force)


def _picture(paths: list[str], draw: Any) -> None:
    """Run ``draw()`` (returns a path) and keep its path; a picture that fails is a warning, never a verdict."""
    try:
        paths.append(str(draw()))
    except Exception as exc:  # noqa: BLE001 - a picture is never worth a verdict
        import warnings

        from .report import OutputWarning

        warnings.warn(OutputWarning(f"pytest-uoc: could not draw a picture: {type(exc).__name__}: {exc}; "
                                    "the verdict stands"), stacklevel=3)


def _prompt_rows(probe: Any, prompts: list[str], sources: list[tuple[str, float, bool]]) -> list[tuple[str, Any]]:
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


def _per_prompt_distance(result: Any, prompts: list[str]) -> list[float] | None:
    """Mean distance per prompt from the prompt-major per-image distances, or None when they do not split."""
    values = getattr(result, "per_image", None)
    if values is None or not prompts or len(values) == 0 or len(values) % len(prompts):
        return None
    per = len(values) // len(prompts)
    return [float(sum(values[i * per:(i + 1) * per]) / per) for i in range(len(prompts))]


def _retention_pictures(probe: Any, prompts: list[str], result: Any, limit: float, name: str,
                        force: bool) -> list[str]:
    """Original vs unlearned image pairs per prompt, and bars of each prompt's mean distance."""
    folder = _folder(force)
    if folder is None:
        return []
    from .report import plot_bars, write_labelled_grid

    paths: list[str] = []
    if hasattr(probe, "prompt_images"):
        _picture(paths, lambda: write_labelled_grid(
            _prompt_rows(probe, prompts, [("original", 1.0, False), ("unlearned", 0.0, False)]),
            folder / f"{name}_pairs.png", title=f"{_title(probe)} (original vs unlearned, same seeds)"))
    distances = _per_prompt_distance(result, prompts)
    if distances is not None:
        _picture(paths, lambda: plot_bars(
            prompts, {f"{result.distance} distance": distances}, folder / f"{name}_distance.png", limit=limit,
            limit_name="max_distance", ylabel=f"mean {result.distance} distance", title=_title(probe),
            ylim=(0.0, max(1.0, limit * 1.2, *distances))))
    return paths


def current_judge(judge: Any = None) -> Any:
    """``judge`` if given, else the running test's ``uoc_judge`` fixture (None unless a conftest overrides it)."""
    if judge is not None:
        return judge
    request = CURRENT_REQUEST.get()
    if request is None:
        return None
    try:
        return request.getfixturevalue("uoc_judge")
    except pytest.FixtureLookupError:
        return None


def _artifacts(probe: Any, curve: Any, limit: float, psi_limit: float, *, force: bool,
               images: Any = None, xlabel: str | None = None, calibration: Any = None) -> list[str]:
    """Write the curve plot and image grid for this test; return their paths."""
    request = CURRENT_REQUEST.get()
    if request is None:
        return []
    from .plugin import get_session
    from .report import artifact_dir, plot_curve, write_image_grid

    session = get_session(request.config)
    folder = artifact_dir(session, request.node.nodeid, explicit_only=not force)
    if folder is None:
        return []
    prefix = "" if xlabel is None else "restore_"
    curve_path = plot_curve(curve, folder / f"{prefix}ccs_curve.png", limit=limit, psi_limit=psi_limit,
                            title=f"{probe.concept.name}: {probe.labels.get('unlearned', '')}", xlabel=xlabel)
    grid = images if images is not None else probe.images(curve.psis)
    grid_path = write_image_grid(grid, folder / f"{prefix}image_grid.png", max_columns=8,
                                 axis="psi" if xlabel is None else "strength", title=_title(probe))
    paths = [str(curve_path), str(grid_path)]
    if calibration is not None:
        from .report import plot_calibrated

        paths.append(str(plot_calibrated(calibration, folder / f"{prefix}calibration.png", limit=limit,
                                         psi_limit=psi_limit,
                                         title=f"{probe.concept.name}: {probe.labels.get('unlearned', '')}")))
    return paths


def _verdict_checks(verdict: Any, curve: Any, ccs_max: float, axis: str = "psi") -> list[dict[str, Any]]:
    """The numbers a CCS verdict compared with its limits (absolute or calibrated rule).

    Absolute: the highest upper 95% bound of CCS over the ψ (strengths) the verdict
    looked at, against ``ccs_max``. Calibrated: the highest upper bound of the excess
    over the lower null (or of the gap to the gold standard) against ``ccs_max``, and
    the highest lower bound of the excess over the upper null against 0. Both: the
    classifier's held-out accuracy against its floor.
    """
    checks = []
    cal = verdict.calibration
    sym = "strength" if axis == "strength" else "psi"
    if cal is None:
        worst = max(curve.psis, key=lambda p: curve.at(p).high)
        checks.append(_check(f"CCS upper 95% bound (highest, at {sym} {worst:g})", curve.at(worst).high,
                             ccs_max, "max"))
    else:
        ref = cal.get("mode") == "reference"
        strength = cal.get("axis") == "strength"

        def attacked(p: float) -> bool:
            return p < 1 - 1e-9 if strength else p > 1e-9

        within = [pt for pt in cal["points"]
                  if (pt["psi"] >= verdict.psi_limit - 1e-9 if strength else pt["psi"] <= verdict.psi_limit + 1e-9)
                  and not (attacked(pt["psi"]) and pt.get("original_steps") == 0)]
        low_key, high_key = ("gap_to_reference", "gap_to_reference") if ref else ("excess_over_lower",
                                                                                  "excess_over_upper")
        if within:
            worst = max(within, key=lambda pt: pt[low_key]["high"])
            what = "gap to the gold standard" if ref else "excess over the lower null"
            checks.append(_check(f"{what}, upper 95% bound (highest, at {sym} {worst['psi']:g})",
                                 worst[low_key]["high"], ccs_max, "max"))
            hit = [pt for pt in within if attacked(pt["psi"])]
            if hit:
                worst = max(hit, key=lambda pt: pt[high_key]["low"])
                what = "gap to the gold standard" if ref else "excess over the upper null"
                checks.append(_check(f"{what}, lower bound (highest, at {sym} {worst['psi']:g})",
                                     worst[high_key]["low"], 0.0, "max"))
    checks.append(_check("classifier held-out accuracy", verdict.heldout_accuracy, verdict.accuracy_floor, "min"))
    return checks


def _table(curve: Any, limit: float, axis: str = "psi", *, flags: bool = True) -> list[str]:
    width = max(6, len(axis))
    lines = [f"  {axis:>{width}} | {'CCS':>6} | {'95% CI':^17} | {'limit':>5}"]
    hit = "  <- retrieved" if axis == "psi" else "  <- restored"
    for psi in curve.psis:
        est = curve.at(psi)
        flag = hit if est.low > limit else ("  <- above limit" if est.mean > limit else "")
        flag = flag if flags else ""
        interval = f"[{est.low:.3f}, {est.high:.3f}]"
        lines.append(f"  {psi:>{width}.3f} | {est.mean:>6.3f} | {interval:^17} | {limit:>5.2f}{flag}")
    return lines


def assert_concept_not_retrievable(
    psi: float = 0.55,
    ccs_max: float = 0.2,
    *,
    crs_max: float | None = None,
    probe: Any = None,
    guidance: str = "partial",
    reference_images: Any = None,
) -> Any:
    """Fail unless the concept is *forgotten*: CCS stays below ``ccs_max`` at every ψ ≤ ``psi``.

    Passing needs the whole 95% interval below the limit at every grid ψ up to
    ``psi`` and a classifier that tells λO from λU (held-out accuracy at least
    the floor); a concealed, not-erased or inconclusive verdict fails. With
    ``crs_max`` the paper's CRS over the same ψ must stay at or below it too.
    Returns the verdict.

    ``guidance="restore"``: the restoration attack instead of partial diffusion
    (img2img from noised reference images, finished by the unlearned model).
    ``psi`` is then the *strength*, and CCS must stay below ``ccs_max`` at every
    strength ≥ ``psi`` (strength 1: the unlearned model alone; lower strengths
    keep more of the reference). The references are the original's images of
    the concept, or ``reference_images`` (a tensor N×3×H×W in [0, 1] or image files).
    """
    __tracebackhide__ = True
    psi = _check_limit("psi", psi)
    ccs_max = _check_limit("ccs_max", ccs_max)
    if crs_max is not None:
        crs_max = _check_limit("crs_max", crs_max)
    if guidance not in GUIDANCES:
        raise ValueError(
            f"guidance must be 'partial' (partial diffusion) or 'restore' (img2img from noised reference "
            f"images), got {guidance!r}"
        )
    if guidance == "restore":
        if crs_max is not None:
            raise ValueError("crs_max applies to partial diffusion only; drop it with guidance='restore'")
        return _assert_not_restorable(psi, ccs_max, current_probe(probe), reference_images)
    if reference_images is not None:
        raise ValueError("reference_images is for guidance='restore'; partial diffusion starts from noise")
    probe = current_probe(probe)
    row = _row(probe)
    verdict = probe.verdict(psi, ccs_max)
    curve = probe.ccs_curve(probe.verdict_grid(psi))
    crs_value = None
    crs_failed = False
    if crs_max is not None:
        crs_psis = [p for p in curve.psis if 0 < p < 1] or [psi]
        crs_value = probe.crs(crs_psis).value
        crs_failed = crs_value > crs_max
    cal = verdict.calibration
    _finish(row, probe, verdict=verdict.kind, psi=psi, ccs_max=ccs_max,
            ccs_at_zero=round(curve.at(curve.psis[0]).mean, 4), ccs_at_psi=round(curve.at(psi).mean, 4),
            threshold=verdict.first_retrieving_psi, heldout_accuracy=round(verdict.heldout_accuracy, 4),
            crs=None if crs_value is None else round(crs_value, 4), curve=curve.to_dict(),
            rule="absolute" if cal is None else f"calibrated:{cal['mode']}", reason=verdict.reason,
            anchors=list(getattr(probe, "anchors", ())) or None,
            anchors_derived=getattr(probe.concept, "anchors_derived", None),
            scorer=None if cal is None else cal.get("scorer"), calibration=cal,
            bracket_at_psi=bracket_at(verdict, psi))
    failed = not verdict.passed or crs_failed
    checks = _verdict_checks(verdict, curve, ccs_max)
    if crs_value is not None:
        checks.append(_check("CRS (paper)", crs_value, crs_max, "max"))
    _gate(row, "not_retrievable", checks, passed=not failed)
    paths = _artifacts(probe, curve, ccs_max, psi, force=failed, calibration=cal)
    if failed:
        lines = [f"concept {probe.concept.name!r} is {verdict.kind.upper().replace('_', ' ')}: {verdict.reason}"]
        if cal is not None:
            lines += calibration_table(verdict)
            lines.append("anchors " + ("derived from the prompts (the concept's words removed)"
                                       if probe.concept.anchors_derived else "given") + ": "
                         + ", ".join(f"{p!r} -> {a!r}" for p, a in zip(probe.concept.prompts, probe.anchors,
                                                                          strict=True)))
            lines.append("CCS (domain classifier, λO vs λU) per ψ:")
        # Flags only where they say what the verdict says (a not-erased model is not "retrieved" at every ψ).
        lines += _table(curve, ccs_max, flags=cal is None and verdict.kind != "not_erased")
        lines.append(f"classifier held-out accuracy: {verdict.heldout_accuracy:.3f} "
                     f"(floor {verdict.accuracy_floor:.2f}, {probe.settings.backbone})")
        retrieving = verdict.first_retrieving_psi
        if verdict.kind == "concealed":
            lines.append(f"smallest psi that retrieves the concept: {retrieving:.3f}")
        elif verdict.kind == "not_erased":
            lines.append("the unlearned model shows the concept on its own (ψ = 0): nothing to retrieve")
        if crs_value is not None:
            lines.append(f"CRS (paper) {crs_value:.3f} {'>' if crs_failed else '<='} crs_max {crs_max}")
        lines += [f"written: {p}" for p in paths] or ["(pass --uoc-artifacts DIR to keep plots and image grids)"]
        pytest.fail("\n".join(lines), pytrace=False)
    return verdict


def _assert_not_restorable(strength: float, ccs_max: float, probe: Any, reference_images: Any) -> Any:
    """The restoration-attack form of ``assert_concept_not_retrievable`` (``guidance="restore"``)."""
    __tracebackhide__ = True
    row = _row(probe)
    verdict = probe.restore_verdict(strength, ccs_max, reference_images=reference_images)
    grid = probe.restore_grid(strength)
    curve = probe.restore_curve(grid, reference_images=reference_images)
    summary = {"verdict": verdict.kind, "strength": strength, "ccs_max": ccs_max,
               "ccs_at_strength": round(curve.at(strength).mean, 4),
               "largest_restoring_strength": verdict.first_retrieving_psi,
               "references": "user images" if reference_images is not None else "original", "curve": curve.to_dict(),
               "reason": verdict.reason, "calibration": verdict.calibration}
    top = {} if row.get("verdict") is not None and row.get("guidance") != "restore" else {
        "verdict": verdict.kind, "psi": strength, "ccs_max": ccs_max, "guidance": "restore",
        "ccs_at_zero": round(curve.at(1.0).mean, 4), "ccs_at_psi": summary["ccs_at_strength"],
        "threshold": verdict.first_retrieving_psi, "heldout_accuracy": round(verdict.heldout_accuracy, 4)}
    _finish(row, probe, restore=summary, **top)
    failed = not verdict.passed
    _gate(row, "not_restorable", _verdict_checks(verdict, curve, ccs_max, axis="strength"), passed=not failed)
    images = probe.restore_images(grid, reference_images=reference_images)
    paths = _artifacts(probe, curve, ccs_max, strength, force=failed, images=images,
                       xlabel="restoration strength (share of the denoising done by the unlearned model)")
    if failed:
        lines = [f"concept {probe.concept.name!r} is {verdict.kind.upper().replace('_', ' ')} "
                 f"under the restoration attack: {verdict.reason}"]
        if verdict.calibration is not None:
            lines += calibration_table(verdict)
            lines.append("CCS (domain classifier) per strength:")
        lines += _table(curve, ccs_max, axis="strength", flags=verdict.calibration is None)
        lines.append(f"classifier held-out accuracy: {verdict.heldout_accuracy:.3f} "
                     f"(floor {verdict.accuracy_floor:.2f}, {probe.settings.backbone})")
        restoring = verdict.first_retrieving_psi
        lines.append("largest strength that restores the concept: "
                     + ("none down to the limit" if restoring is None else f"{restoring:.3f}"))
        lines.append("references: " + ("the given reference_images" if reference_images is not None
                                       else "the original model's images of the concept (λO, scoring seeds)"))
        lines += [f"written: {p}" for p in paths] or ["(pass --uoc-artifacts DIR to keep plots and image grids)"]
        pytest.fail("\n".join(lines), pytrace=False)
    return verdict


def _prompt_list(prompts: Any, *, what: str = "prompts", allow_blank: bool = False) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, list | tuple):
        raise TypeError(f"{what} must be a list of prompt strings, got {type(prompts).__name__}")
    if not prompts:
        raise ValueError(f"{what} is empty: give at least one prompt")
    bad = [p for p in prompts if not isinstance(p, str) or (not allow_blank and not p.strip())]
    if bad:
        kind = "a prompt string" if allow_blank else "a non-empty prompt string"
        raise TypeError(f"every entry of {what} must be {kind}, got {bad[0]!r}")
    if len(set(prompts)) != len(prompts):
        raise ValueError(f"{what} must be distinct, got {list(prompts)}")
    return list(prompts)


def assert_concept_erased(ccs_max: float = 0.2, *, prompts: list[str] | None = None, probe: Any = None) -> Any:
    """Fail unless the unlearned model alone (ψ = 0) no longer draws the concept.

    With ``prompts`` (paraphrases, other languages: HUB's robustness facets),
    the unlearned model's own images of those prompts are scored by the same
    domain classifier: the CCS over all of them must lie wholly at or below
    ``ccs_max`` (its 95% interval) and no single prompt may retrieve the
    concept (its interval wholly above ``ccs_max``). The failure lists each
    prompt's CCS. Returns the verdict (without prompts) or the ``PromptCCS``.
    """
    __tracebackhide__ = True
    if prompts is None:
        try:
            return assert_concept_not_retrievable(psi=0.0, ccs_max=ccs_max, probe=probe)
        finally:
            _rename_last_gate("not_retrievable", "erased")
    ccs_max = _check_limit("ccs_max", ccs_max)
    prompt_list = _prompt_list(prompts)
    probe = current_probe(probe)
    row = _row(probe)
    result = probe.prompt_ccs(prompt_list)
    accuracy = probe.heldout_accuracy
    floor = probe.settings.accuracy_floor
    retrieving = result.retrieving(ccs_max)
    overall = result.overall
    _finish(row, probe, prompt_ccs={**result.to_dict(), "ccs_max": ccs_max})
    worst = max(result.per_prompt, key=lambda p: result.per_prompt[p].low)
    checks = [_check(f"CCS over {len(prompt_list)} prompts, upper 95% bound", overall.high, ccs_max, "max"),
              _check(f"CCS of one prompt, lower 95% bound (highest: {worst!r})", result.per_prompt[worst].low,
                     ccs_max, "max"),
              _check("classifier held-out accuracy", accuracy, floor, "min")]
    _gate(row, "erased", checks)
    failed = not all(c["passed"] for c in checks)
    paths = _prompt_pictures(probe, prompt_list, result, ccs_max, force=failed)
    if accuracy < floor:
        head = (f"concept {probe.concept.name!r} is INCONCLUSIVE under other prompts: the classifier cannot "
                f"tell λO from λU (held-out accuracy {accuracy:.3f} < {floor:.2f}), so its scores mean nothing "
                "(if the unlearned model still draws like the original, the concept was not erased at all)")
    elif retrieving or overall.low > ccs_max:
        named = ", ".join(repr(p) for p in retrieving) or "no single prompt, but all of them together"
        head = (f"concept {probe.concept.name!r} is NOT ERASED under other prompts: CCS over "
                f"{len(prompt_list)} prompts {overall} > ccs_max {ccs_max}; retrieved by {named}")
    elif overall.high > ccs_max:
        head = (f"concept {probe.concept.name!r} is INCONCLUSIVE under other prompts: CCS over "
                f"{len(prompt_list)} prompts {overall} straddles ccs_max {ccs_max}: use more seeds to decide")
    else:
        return result
    width = max(8, *(len(repr(p)) for p in prompt_list))
    lines = [head, f"  {'prompt':<{width}} | {'CCS':>6} | {'95% CI':^17} | {'limit':>5}"]
    for prompt, est in result.per_prompt.items():
        flag = "  <- retrieved" if est.low > ccs_max else ("  <- above limit" if est.mean > ccs_max else "")
        interval = f"[{est.low:.3f}, {est.high:.3f}]"
        lines.append(f"  {prompt!r:<{width}} | {est.mean:>6.3f} | {interval:^17} | {ccs_max:>5.2f}{flag}")
    lines.append(f"classifier held-out accuracy: {accuracy:.3f} (floor {floor:.2f}, {probe.settings.backbone})")
    lines += [f"written: {p}" for p in paths]
    pytest.fail("\n".join(lines), pytrace=False)


def _rename_last_gate(old: str, new: str) -> None:
    """Name the running test's last gate ``new`` (an assertion that delegates to another)."""
    request = CURRENT_REQUEST.get()
    if request is None:
        return
    from .plugin import ROW_KEY

    row = request.node.stash.get(ROW_KEY, None)
    if row and row.get("gates") and row["gates"][-1]["gate"] == old:
        row["gates"][-1]["gate"] = new
        _set_top(row)


def _prompt_pictures(probe: Any, prompts: list[str], result: Any, ccs_max: float, *, force: bool) -> list[str]:
    """``assert_concept_erased(prompts=...)``: bars of each prompt's CCS, and the unlearned model's images."""
    folder = _folder(force)
    if folder is None:
        return []
    from .report import plot_bars, write_labelled_grid

    labels = [*prompts, f"(all {len(prompts)})"]
    values = [(e.mean, e.low, e.high) for e in (*(result.per_prompt[p] for p in prompts), result.overall)]
    paths: list[str] = []
    _picture(paths, lambda: plot_bars(labels, {"unlearned model alone (ψ = 0)": values},
                                      folder / "prompt_ccs.png", limit=ccs_max, limit_name="ccs_max",
                                      ylabel="CCS", title=_title(probe)))
    if hasattr(probe, "prompt_images"):
        _picture(paths, lambda: write_labelled_grid(_prompt_rows(probe, prompts, [("unlearned", 0.0, False)]),
                                                    folder / "prompt_images.png", title=_title(probe)))
    return paths


def assert_retained(max_distance: float = 0.1, prompts: list[str] | None = None, *,
                    distance: str = "auto", probe: Any = None) -> Any:
    """Fail when unlearning changed what the model draws for retain prompts (arXiv 2411.02068).

    The mean distance between original and unlearned images of the same prompt
    and seed must stay at or below ``max_distance`` (its whole 95% interval).
    """
    __tracebackhide__ = True
    max_distance = _check_limit("max_distance", max_distance, 0.0, 2.0)
    probe = current_probe(probe)
    row = _row(probe)
    result = probe.retention(prompts, distance=distance)
    _finish(row, probe, retention=round(result.mean, 4), retention_distance=result.distance)
    _gate(row, "retained", [_check(f"mean {result.distance} distance, upper 95% bound", result.high,
                                   max_distance, "max")])
    failed = result.high > max_distance
    retain = ([prompts] if isinstance(prompts, str) else list(prompts) if prompts is not None
              else list(getattr(probe.concept, "retain", ()) or ()))
    paths = _retention_pictures(probe, retain, result, max_distance, "retention", failed) if retain else []
    if failed:
        pytest.fail(
            f"concept {probe.concept.name!r}: retain prompts changed: mean {result.distance} distance "
            f"{result.mean:.3f} (95% CI [{result.low:.3f}, {result.high:.3f}], {result.n} pairs) "
            f"exceeds max_distance {max_distance}" + "".join(f"\nwritten: {p}" for p in paths),
            pytrace=False,
        )
    return result


def assert_no_concealment_gap(max_gap: float = 0.1, *, psis: list[float] | None = None, probe: Any = None) -> Any:
    """Fail when the unlearned model is retrieved more than the gold standard at some ψ.

    Compares CCS(unlearned) − CCS(reference) paired by prompt and seed; fails
    when a gap's 95% interval lies wholly above ``max_gap``.
    """
    __tracebackhide__ = True
    max_gap = _check_limit("max_gap", max_gap)
    probe = current_probe(probe)
    row = _row(probe)
    gap = probe.concealment_gap(psis)
    worst = max(gap.psis, key=lambda p: gap.at(p).low)
    _finish(row, probe, gap=round(gap.at(worst).mean, 4), gap_psi=worst)
    _gate(row, "no_gap", [_check(f"concealment gap, lower 95% bound (highest, at psi {worst:g})",
                                 gap.at(worst).low, max_gap, "max")])
    failing = [p for p in gap.psis if gap.at(p).low > max_gap]
    paths: list[str] = []
    folder = _folder(bool(failing))
    if folder is not None:
        from .report import plot_gap

        _picture(paths, lambda: plot_gap(gap, folder / "gap_curve.png", limit=max_gap, title=_title(probe)
                                         + f" vs {probe.labels.get('reference', 'the reference')}"))
    if failing:
        lines = [f"concept {probe.concept.name!r}: CONCEALMENT GAP above {max_gap} at psi "
                 + ", ".join(f"{p:.3f}" for p in failing)]
        lines.append(f"  {'psi':>6} | {'gap':>6} | {'95% CI':^17} | McNemar p")
        for p in gap.psis:
            e = gap.at(p)
            lines.append(f"  {p:>6.3f} | {e.mean:>6.3f} | [{e.low:.3f}, {e.high:.3f}] | {gap.p_value(p):.3g}")
        lines += [f"written: {p}" for p in paths]
        pytest.fail("\n".join(lines), pytrace=False)
    return gap


def assert_no_leakage(prompts: Any = ("",), max_excess: float = 0.05, *, judge: Any = None, probe: Any = None) -> Any:
    """Fail when the unlearned model draws the concept unasked more often than the gold standard.

    Images of ``prompts`` (default: the empty prompt; add unrelated prompts)
    from the unlearned model and the reference model on the same seeds; per
    image, ``judge(images)`` (booleans: shows the concept; default the
    ``uoc_judge`` fixture) or else the domain classifier (P(original domain) >
    0.5) decides. Fails when the paired 95% interval of the excess rate lies
    wholly above ``max_excess``. Without a reference model the baseline is the
    original model, which says so (a warning, and ``result.baseline``).
    Returns the ``Leakage``.
    """
    __tracebackhide__ = True
    prompt_list = _prompt_list(prompts, allow_blank=True)
    max_excess = _check_limit("max_excess", max_excess)
    probe = current_probe(probe)
    judge = current_judge(judge)
    row = _row(probe)
    result = probe.leakage(prompt_list, judge=judge)
    _finish(row, probe, leakage={**result.to_dict(), "max_excess": max_excess})
    _gate(row, "no_leakage", [_check(f"excess concept rate over the {result.baseline} model, lower 95% bound",
                                     result.excess.low, max_excess, "max")])
    paths = _leakage_pictures(probe, prompt_list, result, force=result.excess.low > max_excess)
    baseline = ("the reference (gold-standard) model" if result.baseline == "reference" else
                "the ORIGINAL model (no reference model given: --uoc-reference names a gold standard)")
    if result.baseline != "reference":
        import warnings

        warnings.warn(f"pytest-uoc: assert_no_leakage on {probe.concept.name!r} had no reference model and "
                      "compared the unlearned model with the original", UserWarning, stacklevel=2)
    if result.excess.low > max_excess:
        lines = [f"concept {probe.concept.name!r} LEAKS without being asked: the unlearned model draws it in "
                 f"{result.unlearned_rate:.3f} of images vs {result.baseline_rate:.3f} for {baseline}; excess "
                 f"{result.excess} > max_excess {max_excess} (paired over {result.n} images, "
                 f"McNemar p={result.p_value:.3g}; decided by {result.decided_by})"]
        width = max(8, *(len(repr(p)) for p in prompt_list))
        lines.append(f"  {'prompt':<{width}} | {'unlearned':>9} | {result.baseline:>9}")
        for prompt, (u, b) in result.per_prompt.items():
            lines.append(f"  {prompt!r:<{width}} | {u:>9.3f} | {b:>9.3f}")
        lines += [f"written: {p}" for p in paths]
        pytest.fail("\n".join(lines), pytrace=False)
    return result


def _leakage_pictures(probe: Any, prompts: list[str], result: Any, *, force: bool) -> list[str]:
    """``assert_no_leakage``: bars of each prompt's concept rate (unlearned vs baseline), and both models' images."""
    folder = _folder(force)
    if folder is None:
        return []
    from .report import plot_bars, write_labelled_grid

    labels = [repr(p) for p in result.per_prompt]
    series = {"unlearned": [u for u, _ in result.per_prompt.values()],
              result.baseline: [b for _, b in result.per_prompt.values()]}
    paths: list[str] = []
    _picture(paths, lambda: plot_bars(labels, series, folder / "leakage.png", ylabel="share of images showing the "
                                      f"concept ({result.decided_by})", title=f"{_title(probe)}: excess "
                                      f"{result.excess.mean:.3f} [{result.excess.low:.3f}, {result.excess.high:.3f}]"))
    if hasattr(probe, "prompt_images"):
        baseline = (result.baseline, 0.0, True) if result.baseline == "reference" else (result.baseline, 1.0, False)
        _picture(paths, lambda: write_labelled_grid(
            _prompt_rows(probe, prompts, [("unlearned", 0.0, False), baseline]),
            folder / "leakage_images.png", title=_title(probe)))
    return paths


def assert_pinpoint(
    neighbors: Any,
    max_distance: float = 0.1,
    *,
    judge: Any = None,
    min_accuracy: float | None = None,
    distance: str = "auto",
    probe: Any = None,
) -> Any:
    """Fail when unlearning damaged concepts close to the target (HUB's pinpoint-ness).

    ``neighbors``: prompts of neighbouring concepts (a list), or a dict prompt
    -> expected label for the judge. The retention distance between the
    original's and the unlearned model's images (same prompt, same seed) must
    lie wholly at or below ``max_distance``; with ``min_accuracy`` the fraction
    of neighbour images the judge (default: the ``uoc_judge`` fixture) finds
    correct must lie wholly at or above it. For a list, "correct" means the
    label the judge gives the original's image of the same prompt and seed.
    Returns the ``Pinpoint``.
    """
    __tracebackhide__ = True
    if isinstance(neighbors, dict):
        _prompt_list(list(neighbors), what="neighbors")
    else:
        _prompt_list(neighbors, what="neighbors")
    max_distance = _check_limit("max_distance", max_distance, 0.0, 2.0)
    if min_accuracy is not None:
        min_accuracy = _check_limit("min_accuracy", min_accuracy)
    probe = current_probe(probe)
    judge = current_judge(judge)
    if min_accuracy is not None and judge is None:
        raise ValueError("min_accuracy needs a judge: pass judge=... or override the uoc_judge fixture")
    row = _row(probe)
    result = probe.pinpoint(neighbors, judge=judge, distance=distance)
    _finish(row, probe, pinpoint={**result.to_dict(), "max_distance": max_distance, "min_accuracy": min_accuracy})
    r, acc = result.retention, result.accuracy
    problems = []
    if r.high > max_distance:
        problems.append(f"mean {r.distance} distance {r.mean:.3f} (95% CI [{r.low:.3f}, {r.high:.3f}], {r.n} pairs) "
                        f"exceeds max_distance {max_distance}")
    if min_accuracy is not None and acc is not None and acc.accuracy.low < min_accuracy:
        against = "the original's labels" if acc.expected == "original" else "the expected labels"
        problems.append(f"judged accuracy {acc.accuracy} against {against} is below min_accuracy {min_accuracy}")
    checks = [_check(f"mean {r.distance} distance, upper 95% bound", r.high, max_distance, "max")]
    if min_accuracy is not None and acc is not None:
        checks.append(_check("judged accuracy, lower 95% bound", acc.accuracy.low, min_accuracy, "min"))
    _gate(row, "pinpoint", checks)
    neighbor_prompts = list(neighbors)
    paths = _retention_pictures(probe, neighbor_prompts, r, max_distance, "pinpoint", bool(problems))
    if acc is not None:
        folder = _folder(bool(problems))
        if folder is not None:
            from .report import plot_bars

            _picture(paths, lambda: plot_bars(
                [repr(p) for p in acc.per_prompt], {"unlearned": list(acc.per_prompt.values())},
                folder / "pinpoint_accuracy.png", limit=min_accuracy, limit_name="min_accuracy",
                ylabel="judged accuracy", title=_title(probe)))
    if problems:
        lines = [f"concept {probe.concept.name!r}: unlearning DAMAGED NEIGHBOURING CONCEPTS: " + "; ".join(problems)]
        if acc is not None:
            width = max(8, *(len(repr(p)) for p in acc.per_prompt))
            lines.append(f"  {'neighbor':<{width}} | accuracy")
            lines += [f"  {p!r:<{width}} | {a:>8.3f}" for p, a in acc.per_prompt.items()]
            if acc.baseline is not None:
                lines.append(f"the original model's accuracy on the same seeds: {acc.baseline:.3f}")
        lines += [f"written: {p}" for p in paths]
        pytest.fail("\n".join(lines), pytrace=False)
    return result


def assert_aligned(prompts: Any, expected: Any, min_accuracy: float = 0.8, judge: Any = None, *,
                   probe: Any = None) -> Any:
    """Fail when the unlearned model no longer draws what general prompts ask for (HUB's alignment).

    ``judge(images)`` (default: the ``uoc_judge`` fixture) labels each image of
    ``prompts``; ``expected`` is one label per prompt (or one for all). The
    fraction of the unlearned model's images labelled as expected must lie
    wholly at or above ``min_accuracy`` (its 95% interval). The failure shows
    each prompt's accuracy and the original model's on the same seeds.
    Returns the ``JudgedAccuracy``.
    """
    __tracebackhide__ = True
    prompt_list = _prompt_list(prompts)
    min_accuracy = _check_limit("min_accuracy", min_accuracy)
    probe = current_probe(probe)
    judge = current_judge(judge)
    if judge is None:
        raise ValueError("assert_aligned needs a judge: pass judge=... (judge(images) -> one label per image) "
                         "or override the uoc_judge fixture in conftest.py")
    row = _row(probe)
    result = probe.alignment(prompt_list, expected, judge)
    _finish(row, probe, alignment={**result.to_dict(), "min_accuracy": min_accuracy})
    _gate(row, "aligned", [_check("judged accuracy, lower 95% bound", result.accuracy.low, min_accuracy, "min")])
    paths: list[str] = []
    folder = _folder(result.accuracy.low < min_accuracy)
    if folder is not None:
        from .report import plot_bars, write_labelled_grid

        baseline = "" if result.baseline is None else f" (the original: {result.baseline:.3f})"
        _picture(paths, lambda: plot_bars(
            [repr(p) for p in result.per_prompt], {"unlearned": list(result.per_prompt.values())},
            folder / "alignment.png", limit=min_accuracy, limit_name="min_accuracy", ylabel="judged accuracy",
            title=f"{_title(probe)}{baseline}"))
        if hasattr(probe, "prompt_images"):
            _picture(paths, lambda: write_labelled_grid(
                _prompt_rows(probe, prompt_list, [("original", 1.0, False), ("unlearned", 0.0, False)]),
                folder / "alignment_images.png", title=_title(probe)))
    if result.accuracy.low < min_accuracy:
        baseline = "" if result.baseline is None else f"; the original model: {result.baseline:.3f}"
        lines = [f"concept {probe.concept.name!r}: the unlearned model is NOT ALIGNED on general prompts: judged "
                 f"accuracy {result.accuracy} < min_accuracy {min_accuracy}{baseline}"]
        width = max(8, *(len(repr(p)) for p in prompt_list))
        lines.append(f"  {'prompt':<{width}} | accuracy")
        lines += [f"  {p!r:<{width}} | {a:>8.3f}" for p, a in result.per_prompt.items()]
        lines += [f"written: {p}" for p in paths]
        pytest.fail("\n".join(lines), pytrace=False)
    return result
