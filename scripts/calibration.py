"""Measure the calibrated verdict on the zoo over disjoint seed sets (issue: calibrated verdicts).

For each concept, seed set and zoo model, runs the probe the example suite runs
(the zoo's scheduler, SD 1.4's PNDM; CFG 7.5, 32 seeds per prompt, ψ grid 0–0.55; --steps), and records per ψ
the CCS of the unlearned model, of both null finishes and of the gold standard,
the paired excesses, and the verdicts of the README's gate (ψ 0.55, ccs_max 0.2)
under the calibrated rule (nulls only), the gold-standard rule and the old
absolute rule. Per-image scores are kept so that other rules can be evaluated
offline (``--rules-only``).

    python scripts/calibration.py --out runs/calibration --sets 5
    python scripts/calibration.py --out runs/calibration --table docs/calibration-table.md

Seed set k uses seeds 32k .. 32k+31 for every prompt (disjoint sets).
A shared trajectory cache under OUT/cache makes the nulls and hand-offs of one
seed set cost once for all models.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

CONCEPTS = {
    "three": {
        "prompts": ["a handwritten three", "the digit 3"],
        "gold": "digits-gold-three",
        "models": ["digits-gold-three", "digits-esd-three", "digits-esdu-three", "digits-ca-three",
                   "digits-conceal-three", "digits-uce-three", "digits-salun-three", "digits"],
    },
    "red": {
        "prompts": ["a red handwritten two", "a red handwritten seven", "a red digit"],
        "gold": "digits-gold-red",
        "models": ["digits-gold-red", "digits-esd-red", "digits-esdu-red", "digits-ca-red",
                   "digits-conceal-red", "digits-uce-red", "digits-salun-red", "digits"],
    },
}
PSIS = (0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55)
PSI_LIMIT, CCS_MAX = 0.55, 0.2


def measure(out: Path, sets: list[int], concepts: list[str], models: list[str] | None, steps: int,
            classifier_sets: int = 1) -> None:
    import torch

    from pytest_uoc import zoo
    from pytest_uoc.concept import Concept
    from pytest_uoc.diffusion import PartialDiffusion
    from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache
    from pytest_uoc.judges import zoo_digit_judge
    from pytest_uoc.probe import Probe, ProbeSettings

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    original = zoo.load("digits")
    cache = TrajectoryCache(out / "cache" / "trajectories")
    loaded: dict[str, object] = {}

    def model(name: str) -> object:
        if name not in loaded:
            loaded[name] = zoo.load(name, original=original)
        return loaded[name]

    for k in sets:
        seeds = tuple(range(32 * k, 32 * k + 32))
        for concept_name in concepts:
            spec = CONCEPTS[concept_name]
            concept = Concept(concept_name, tuple(spec["prompts"]))
            for name in models or spec["models"]:
                if name not in spec["models"]:
                    continue
                path = out / f"{concept_name}-set{k}-{name}.json"
                if path.exists():
                    continue
                start = time.perf_counter()

                def engine(other: object) -> PartialDiffusion:
                    return PartialDiffusion(original, other, num_inference_steps=steps, guidance_scale=7.5,
                                            batch_size=32, cache=cache)

                settings = ProbeSettings(seeds=seeds, psis=PSIS, classifier_cache=str(out / "cache" / "classifiers"))
                judge = zoo_digit_judge(concept_name)
                probe = Probe(concept, engine(model(name)), settings, reference_engine=engine(model(spec["gold"])),
                              judge=judge)
                nulls_only = Probe(concept, probe.engine, settings, judge=judge)
                no_judge = Probe(concept, probe.engine, settings)
                for other in (nulls_only, no_judge):
                    other.share_images(probe, reference=False)
                no_judge.share_images(probe)
                record = {
                    "concept": concept_name, "set": k, "model": name, "seeds": [seeds[0], seeds[-1]],
                    "steps": steps, "anchors": list(probe.anchors), "prompts": list(concept.prompts),
                    "heldout_accuracy": probe.heldout_accuracy, "images_differ": probe._images_differ(),
                    "verdict_nulls": nulls_only.verdict(PSI_LIMIT, CCS_MAX).to_dict(),
                    "verdict_classifier": None,
                    "verdict_reference": probe.verdict(PSI_LIMIT, CCS_MAX).to_dict(),
                    "verdict_absolute": probe.verdict(PSI_LIMIT, CCS_MAX, rule="absolute").to_dict(),
                    "scores": {src: {str(p): v.tolist() for p, v in probe.scores(PSIS, src).items()}
                               for src in ("unlearned", "upper", "lower", "reference")},
                    "judged": {src: {str(p): v.tolist() for p, v in probe.concept_values(PSIS, src).items()}
                               for src in ("unlearned", "upper", "lower", "reference")},
                    "concept_classifier": None,
                    "cost": probe.cost.to_dict(),
                }
                if k < sets[0] + classifier_sets:  # the judge-free fallback trains a second classifier: costly
                    record["concept_classifier"] = {
                        src: {str(p): v.tolist() for p, v in no_judge.concept_values(PSIS, src).items()}
                        for src in ("unlearned", "upper", "lower", "reference")}
                    no_judge.share_images(probe, reference=False)
                    record["verdict_classifier"] = no_judge.verdict(PSI_LIMIT, CCS_MAX).to_dict()
                record["seconds"] = round(time.perf_counter() - start, 1)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(record))
                tmp.replace(path)
                fallback = (record["verdict_classifier"] or {}).get("kind", "-")
                print(f"{concept_name} set {k} {name}: nulls={record['verdict_nulls']['kind']} "
                      f"classifier={fallback} "
                      f"ref={record['verdict_reference']['kind']} abs={record['verdict_absolute']['kind']} "
                      f"acc={record['heldout_accuracy']:.2f} ({record['seconds']} s)", flush=True)


def recompute(records: list[dict]) -> None:
    """Re-decide every stored record with the library's current rules (same data, same bootstrap seeds).

    The per-image values are stored, so a change of rule needs no new image: the table
    always shows the rules as they are in ``pytest_uoc.scoring``.
    """
    import diffusers
    import numpy as np

    from pytest_uoc import zoo
    from pytest_uoc.diffusion.schedule import split_steps
    from pytest_uoc.scoring import bootstrap_mean, calibrated_curve, decide, decide_calibrated
    from pytest_uoc.scoring.ccs import CCSCurve

    # The zoo's own scheduler (SD 1.4's PNDM since the faithful build): its timesteps decide the hand-offs.
    folder = zoo.pipeline_path() / "scheduler"
    scheduler_class = json.loads((folder / "scheduler_config.json").read_text())["_class_name"]
    scheduler = getattr(diffusers, scheduler_class).from_pretrained(str(folder))
    for record in records:
        scheduler.set_timesteps(record.get("steps", 25))
        timesteps = [float(t) for t in scheduler.timesteps]
        steps = {p: split_steps(p, timesteps, 1000).handoff for p in PSIS}
        ccs = CCSCurve.from_estimates(
            {p: bootstrap_mean(np.asarray(record["scores"]["unlearned"][str(p)])) for p in PSIS})
        common = {"psi_limit": PSI_LIMIT, "ccs_max": CCS_MAX, "heldout_accuracy": record["heldout_accuracy"],
                  "images_differ": record["images_differ"]}

        def values(kind: str, source: str, record: dict = record) -> dict[float, np.ndarray]:
            return {p: np.asarray(record[kind][source][str(p)]) for p in PSIS}

        def calibrated(kind: str, with_reference: bool, steps: dict = steps, timesteps: list = timesteps,
                       ccs: CCSCurve = ccs, common: dict = common, record: dict = record) -> dict:
            curve = calibrated_curve(values(kind, "unlearned"), values(kind, "upper"), values(kind, "lower"),
                                     original_steps=steps, total_steps=len(timesteps), anchors=record["anchors"],
                                     reference=values(kind, "reference") if with_reference else None, ccs=ccs,
                                     scorer="ZooDigitJudge" if kind == "judged" else "concept classifier")
            return decide_calibrated(curve, **common).to_dict()

        record["verdict_nulls"] = calibrated("judged", False)
        record["verdict_reference"] = calibrated("judged", True)
        record["verdict_absolute"] = decide(ccs, **common).to_dict()
        if record.get("concept_classifier"):
            record["verdict_classifier"] = calibrated("concept_classifier", False)


def table(out: Path) -> str:
    """Markdown: the verdicts per model over seed sets, and the mean curves per ψ."""
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*-set*-*.json"))]
    recompute(records)
    lines: list[str] = []
    for concept_name in CONCEPTS:
        mine = [r for r in records if r["concept"] == concept_name]
        if not mine:
            continue
        sets = sorted({r["set"] for r in mine})
        lines += [f"### {concept_name}: verdicts of the README gate (ψ 0.55, ccs_max 0.2) over {len(sets)} "
                  "disjoint seed sets", "",
                  "| model | calibrated (nulls, judge) | nulls, concept classifier (no judge) | modes agree | "
                  "with gold standard | absolute (old rule) | held-out acc. | s per model |",
                  "|---|---|---|---|---|---|---|---|"]
        for name in CONCEPTS[concept_name]["models"]:
            rows = [r for r in mine if r["model"] == name]
            if not rows:
                continue

            def count(key: str, rows: list[dict] = rows) -> str:
                kinds: dict[str, int] = {}
                averaged = 0  # forgotten by the rule's averaged route (cause below_midpoint)
                for r in rows:
                    if r.get(key):
                        kinds[r[key]["kind"]] = kinds.get(r[key]["kind"], 0) + 1
                        averaged += r[key].get("cause") == "below_midpoint"
                done = sum(kinds.values())
                text = ", ".join(f"{k} {v}/{done}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])) or "-"
                return text + (f" ({averaged} averaged)" if averaged else "")

            both = [r for r in rows if r.get("verdict_classifier")]
            agree = sum(r["verdict_nulls"]["kind"] == r["verdict_classifier"]["kind"] for r in both)
            acc = sum(r["heldout_accuracy"] for r in rows) / len(rows)
            seconds = sum(r["seconds"] for r in rows) / len(rows)
            lines.append(f"| {name} | {count('verdict_nulls')} | {count('verdict_classifier')} | "
                         f"{agree}/{len(both)} | {count('verdict_reference')} | "
                         f"{count('verdict_absolute')} | {acc:.2f} | {seconds:.0f} |")
        lines += ["", f"### {concept_name}: share of images the judge finds the concept in, per ψ, over all seed "
                  "sets (unlearned / upper null / lower null / gold standard)", "", "| model | " + " | ".join(f"ψ {p:g}" for p in PSIS) + " |",
                  "|---|" + "---|" * len(PSIS)]
        for name in CONCEPTS[concept_name]["models"]:
            rows = [r for r in mine if r["model"] == name]
            if not rows:
                continue
            cells = []
            for p in PSIS:
                def mean(src: str, p: float = p, rows: list[dict] = rows) -> float:
                    values = [v for r in rows for v in r["judged"][src][str(p)]]
                    return sum(values) / len(values)
                cells.append(f"{mean('unlearned'):.2f} / {mean('upper'):.2f} / {mean('lower'):.2f} / "
                             f"{mean('reference'):.2f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/calibration"))
    parser.add_argument("--sets", type=int, default=5, help="number of disjoint seed sets (32 seeds each)")
    parser.add_argument("--first-set", type=int, default=0)
    parser.add_argument("--concepts", nargs="*", default=list(CONCEPTS), choices=list(CONCEPTS))
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--classifier-sets", type=int, default=1,
                        help="seed sets on which the judge-free fallback (concept classifier) is measured too")
    parser.add_argument("--table", type=Path, default=None, help="write the markdown table here (and print it)")
    parser.add_argument("--rules-only", action="store_true", help="only build the table from earlier runs")
    args = parser.parse_args(argv)
    if not args.rules_only:
        measure(args.out, list(range(args.first_set, args.first_set + args.sets)), args.concepts, args.models,
                args.steps, args.classifier_sets)
    text = table(args.out)
    print(text)
    if args.table is not None:
        args.table.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
