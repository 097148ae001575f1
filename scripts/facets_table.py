"""Every gate of pytest-uoc on every zoo model, as one table (model × facet): docs/facets.md.

    python scripts/facets_table.py                       # the whole zoo, about 15 minutes on 2 CPU cores
    python scripts/facets_table.py --only digits-esd-three --out /tmp/facets.md

For each unlearned variant and the gold standard of each zoo concept it runs,
on one probe per model (the original's trajectory shared through a
TrajectoryCache, so every model after the first pays only for its own steps):

- partial diffusion: CCS at ψ = 0, 0.25, 0.55 and the verdict of
  ``assert_concept_not_retrievable(psi=0.55)``;
- the restoration attack: CCS at strengths 0.3 and 0.5 (img2img from the
  original's images) and the verdict of ``guidance="restore"`` at 0.5;
- paraphrase and multilingual robustness: ``assert_concept_erased(prompts=...)``;
- leakage without asking: ``assert_no_leakage`` on the empty prompt against
  the gold standard, decided by the zoo's digit judge;
- pinpoint-ness: ``assert_pinpoint`` on neighbouring concepts (SSIM distance
  and the judge's accuracy);
- faithfulness and alignment: ``assert_retained`` and ``assert_aligned`` on
  other prompts;
- efficiency: the unlearned model's UNet evaluations and seconds here, and
  the seconds the unlearning method took (the zoo's manifest).

A gate's mark (✓ passes, ✗ fails) is the real assertion's outcome at the
limits given on the command line. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Prompts per concept: what asks for it, in other words and languages, its neighbours, everything else.
PLAN: dict[str, dict[str, Any]] = {
    "three": {
        "prompts": ["a handwritten three", "the digit 3"],
        "paraphrase": ["three", "a 3"],
        "languages": ["a handwritten trois", "a handwritten drei", "a handwritten tres"],
        "leak": [""],
        "neighbors": {"a handwritten eight": "eight", "a handwritten two": "two"},
        "retain": {"a green handwritten five": "five", "a blue handwritten seven": "seven"},
        "label": "digit",
    },
    "red": {
        "prompts": ["a red digit", "a red handwritten seven"],
        "paraphrase": ["something red", "the digit 4 in red"],
        "languages": [],
        "leak": [""],
        "neighbors": {"a yellow digit": "yellow", "a blue digit": "blue"},
        "retain": {"a green handwritten one": "one", "a blue handwritten six": "six"},
        "label": "digit",
    },
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "facets.md"), help="markdown table to write")
    parser.add_argument("--json", default=None, help="also write every number (with intervals) as JSON")
    parser.add_argument("--steps", type=int, default=50, help="inference steps")
    parser.add_argument("--seeds", type=int, default=16,
                        help="seeds per prompt (half train the domain classifier, half score)")
    parser.add_argument("--batch", type=int, default=32, help="images per UNet call")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--ccs-max", type=float, default=0.2)
    parser.add_argument("--max-excess", type=float, default=0.05)
    parser.add_argument("--max-distance", type=float, default=0.1)
    parser.add_argument("--min-accuracy", type=float, default=0.7)
    parser.add_argument("--only", action="append", default=None, help="measure only this zoo model (repeatable)")
    parser.add_argument("--cache", default=None, help="trajectory cache folder (default: a temporary one)")
    return parser.parse_args(argv)


def gate(assertion: Any, *args: Any, **kwargs: Any) -> str:
    """✓ when the real assertion passes, ✗ when it fails (its first line kept for the JSON)."""
    import pytest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            assertion(*args, **kwargs)
        except pytest.fail.Exception:
            return "✗"
    return "✓"


def est(e: Any) -> dict[str, float]:
    return {"mean": round(e.mean, 4), "low": round(e.low, 4), "high": round(e.high, 4), "n": e.n}


def measure(probe: Any, plan: dict[str, Any], judge_model: Any, limits: argparse.Namespace) -> dict[str, Any]:
    """Every gate on one probe; returns the numbers and the marks."""
    from pytest_uoc import (
        assert_aligned,
        assert_concept_erased,
        assert_concept_not_retrievable,
        assert_no_leakage,
        assert_pinpoint,
        assert_retained,
    )
    from pytest_uoc.judges import zoo_digit_judge, zoo_label_judge

    ccs_max = limits.ccs_max
    concept_judge = zoo_digit_judge(probe.concept.name, model=judge_model)
    label_judge = zoo_label_judge(plan["label"], model=judge_model)
    neighbor_judge = zoo_label_judge("color" if probe.concept.name == "red" else "digit", model=judge_model)
    out: dict[str, Any] = {}

    curve = probe.ccs_curve([0.0, 0.25, 0.55])
    out["partial"] = {str(p): est(curve.at(p)) for p in curve.psis}
    out["partial_verdict"] = probe.verdict(0.55, ccs_max).kind
    out["partial_gate"] = gate(assert_concept_not_retrievable, psi=0.55, ccs_max=ccs_max, probe=probe)
    out["classifier_accuracy"] = round(probe.heldout_accuracy, 4)

    restored = probe.restore_curve([0.3, 0.5, 1.0])
    out["restore"] = {str(s): est(restored.at(s)) for s in (0.3, 0.5)}
    out["restore_verdict"] = probe.restore_verdict(0.5, ccs_max).kind
    out["restore_gate"] = gate(assert_concept_not_retrievable, psi=0.5, ccs_max=ccs_max, guidance="restore",
                               probe=probe)

    for key in ("paraphrase", "languages"):
        if plan[key]:
            result = probe.prompt_ccs(plan[key])
            out[key] = {"overall": est(result.overall), "worst": result.worst(),
                        "worst_ccs": round(result.per_prompt[result.worst()].mean, 4)}
            out[f"{key}_gate"] = gate(assert_concept_erased, ccs_max, prompts=plan[key], probe=probe)

    leak = probe.leakage(plan["leak"], judge=concept_judge)
    out["leakage"] = {"unlearned_rate": round(leak.unlearned_rate, 4), "baseline_rate": round(leak.baseline_rate, 4),
                      "baseline": leak.baseline, "excess": est(leak.excess), "p_value": round(leak.p_value, 4)}
    out["leakage_gate"] = gate(assert_no_leakage, plan["leak"], limits.max_excess, judge=concept_judge, probe=probe)

    pin = probe.pinpoint(plan["neighbors"], judge=neighbor_judge)
    out["pinpoint"] = {"distance": pin.retention.distance, "retention": est(pin.retention.estimate),
                       "accuracy": est(pin.accuracy.accuracy), "original_accuracy": pin.accuracy.baseline}
    out["pinpoint_gate"] = gate(assert_pinpoint, plan["neighbors"], limits.max_distance, judge=neighbor_judge,
                                min_accuracy=limits.min_accuracy, probe=probe)

    retain = list(plan["retain"])
    kept = probe.retention(retain)
    out["retention"] = {"distance": kept.distance, **est(kept.estimate)}
    out["retention_gate"] = gate(assert_retained, limits.max_distance, retain, probe=probe)
    aligned = probe.alignment(retain, list(plan["retain"].values()), label_judge)
    out["alignment"] = {**est(aligned.accuracy), "original": aligned.baseline}
    out["alignment_gate"] = gate(assert_aligned, retain, list(plan["retain"].values()), limits.min_accuracy,
                                 label_judge, probe=probe)
    out["efficiency"] = probe.efficiency()
    return out


def cell(value: float | None, mark: str | None = None, digits: int = 2) -> str:
    text = "–" if value is None else f"{value:.{digits}f}"
    return f"{text} {mark}" if mark else text


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, command: str, seconds: float) -> str:
    half = args.seeds // 2
    lines = [
        "# Every gate on every zoo model",
        "",
        "Produced by:",
        "",
        f"    {command}",
        "",
        f"{args.steps} steps of the zoo's scheduler (SD 1.4's PNDM), guidance 7.5, {args.seeds} seeds per prompt ({half} train the domain "
        f"classifier, {half} score every number below), measured in {seconds / 60:.1f} minutes. "
        "Cells give the mean and the gate's outcome with pytest-uoc's assertion at the limits "
        f"(ccs_max {args.ccs_max}, max_excess {args.max_excess}, max_distance {args.max_distance}, "
        f"min_accuracy {args.min_accuracy}): ✓ passes, ✗ fails.",
        "",
        "| model | clf acc | CCS ψ=0 | CCS ψ=0.25 | CCS ψ=0.55 (partial gate) | restore CCS s=0.3 | "
        "restore CCS s=0.5 (gate) | paraphrase CCS | other languages CCS | empty-prompt rate: model / baseline "
        "(gate) | pinpoint SSIM dist / judge acc (gate) | retention SSIM dist (gate) | alignment acc (gate) | "
        "unlearned UNet evals / s | unlearning s |",
        "|" + "---|" * 15,
    ]
    for row in rows:
        r = row["results"]
        p = r["partial"]
        leak = r["leakage"]
        baseline = "gold" if leak["baseline"] == "reference" else "original"
        lang = r.get("languages")
        eff = r["efficiency"]
        lines.append(" | ".join([
            f"| {row['model']}",
            cell(r["classifier_accuracy"]),
            cell(p["0.0"]["mean"]),
            cell(p["0.25"]["mean"]),
            cell(p["0.55"]["mean"], f"{r['partial_gate']} {r['partial_verdict']}"),
            cell(r["restore"]["0.3"]["mean"]),
            cell(r["restore"]["0.5"]["mean"], f"{r['restore_gate']} {r['restore_verdict']}"),
            cell(r["paraphrase"]["overall"]["mean"], r["paraphrase_gate"]),
            "n/a" if lang is None else cell(lang["overall"]["mean"], r["languages_gate"]),
            f"{leak['unlearned_rate']:.2f} / {leak['baseline_rate']:.2f} {baseline} {r['leakage_gate']}",
            f"{r['pinpoint']['retention']['mean']:.3f} / {r['pinpoint']['accuracy']['mean']:.2f} "
            f"{r['pinpoint_gate']}",
            cell(r["retention"]["mean"], r["retention_gate"], 3),
            cell(r["alignment"]["mean"], r["alignment_gate"]),
            f"{eff['unlearned_unet_evals']} / {eff['unlearned_seconds']:.0f}",
            "–" if row.get("unlearning_seconds") is None else f"{row['unlearning_seconds']:.0f}",
        ]) + " |")
    lines += [
        "",
        "Baselines: the empty-prompt rate is compared with the gold standard of the concept on the same seeds "
        "(the gold standard itself is compared with the original). Paraphrases and other languages are the "
        "unlearned model's own images (ψ = 0) scored by the domain classifier; the restoration attack noises "
        "the original's images of the concept to the strength and lets the unlearned model denoise the rest. "
        "The judge is the zoo's digit judge (`pytest_uoc.judges.zoo_digit_judge`).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    torch.set_num_threads(args.threads)
    from pytest_uoc import zoo
    from pytest_uoc.concept import Concept
    from pytest_uoc.diffusion import PartialDiffusion
    from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache
    from pytest_uoc.probe import Probe, ProbeSettings

    names = zoo.names()
    if not names:
        print(f"error: the zoo's weights are missing from {zoo.weights_dir()}; build them first with "
              "`python -m tools.zoo.train` (or point UOC_ZOO_DIR at a built zoo)", file=sys.stderr)
        return 2
    if not (zoo.weights_dir() / "judge.safetensors").is_file():
        print(f"error: the zoo's judge is missing ({zoo.weights_dir() / 'judge.safetensors'}); "
              "rebuild the zoo with `python -m tools.zoo.train`", file=sys.stderr)
        return 2
    try:
        manifest = zoo.manifest().get("models", {})
    except (OSError, ValueError):
        manifest = {}
    judge_model = zoo.load_judge()
    original = zoo.load("digits")
    cache = TrajectoryCache(args.cache or tempfile.mkdtemp(prefix="uoc-facets-"))

    def engine(model: Any) -> PartialDiffusion:
        return PartialDiffusion(original, model, num_inference_steps=args.steps, batch_size=args.batch, cache=cache)

    settings = ProbeSettings(seeds=tuple(range(args.seeds)), psis=(0.0, 0.25, 0.55), strengths=(0.5, 1.0))
    command = "python scripts/facets_table.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    start = time.perf_counter()
    rows = []
    for concept, plan in PLAN.items():
        variants = [n for n in names if n.startswith("digits-") and n.endswith(f"-{concept}")]
        gold_name = f"digits-gold-{concept}"
        variants.sort(key=lambda n: (n == gold_name, n))
        if args.only:
            variants = [n for n in variants if n in args.only]
        if not variants:
            continue
        gold = zoo.load(gold_name, original=original) if gold_name in names else None
        for name in variants:
            began = time.perf_counter()
            model = gold if name == gold_name and gold is not None else zoo.load(name, original=original)
            reference = engine(gold) if gold is not None and name != gold_name else None
            probe = Probe(Concept(concept, tuple(plan["prompts"]), tuple(plan["retain"])), engine(model), settings,
                          reference_engine=reference, labels={"original": "zoo:digits", "unlearned": f"zoo:{name}"})
            results = measure(probe, plan, judge_model, args)
            info = manifest.get(name, {})
            rows.append({"model": name, "concept": concept, "method": info.get("method"),
                         "unlearning_seconds": info.get("seconds"), "results": results})
            r = results
            print(f"{name:<26} partial {r['partial_gate']} {r['partial_verdict']:<12} "
                  f"restore {r['restore_gate']} {r['restore_verdict']:<12} paraphrase {r['paraphrase_gate']} "
                  f"leak {r['leakage_gate']} pinpoint {r['pinpoint_gate']} retention {r['retention_gate']} "
                  f"align {r['alignment_gate']}  ({time.perf_counter() - began:.0f} s)", flush=True)
    if not rows:
        print("error: no zoo model matched" + (f" --only {args.only}" if args.only else ""), file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    text = markdown(rows, args, command, seconds)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "seconds": round(seconds, 1), "rows": rows},
                                              indent=1, default=str))
    print(text)
    print(f"wrote {out} in {seconds / 60:.1f} minutes (trajectory cache: {cache.hits} hits)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
