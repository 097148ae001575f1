"""Sequential decisions against the fixed 32-seed design, replayed on stored per-image runs (issue 13).

The calibrated card gate (ψ 0.55, ccs_max 0.2, judge, nulls) is decided again from the
per-image values that ``scripts/calibration.py`` stores for every zoo model, concept and
disjoint seed set. A sequential design looks after every round of seeds (the scored
seeds in order, every prompt of a seed together) and stops at the first decided verdict,
or at the budget (the fixed design's 32 seeds) with "inconclusive". Replaying is exact:
the images of a seed do not depend on which other seeds ran (same seed, same noise).

Designs compared (same data, same rule, only the intervals differ):

- ``fixed``: the library's design, 95% bootstrap intervals over all scored seeds;
- ``cs``: anytime-valid confidence sequences by betting (``scoring.sequential``), valid
  at every look, any number of looks;
- ``bonferroni``: bootstrap intervals at level 1 − 0.05/K at K planned looks (valid for
  those looks only, not anytime).

- ``naive``: the fixed design's 95% bootstrap at every look (at least 16 images), NOT valid
  (peeking inflates the error): an optimistic floor of what any valid design could cost with this
  rule and these statistics.

Cost: UNet evaluations per verdict counted from the schedule (``_item_costs``), as a cold run
of one checkpoint pays them: the classifier's training images (λO and λU of the training half,
which a sequential design also needs), and per scored prompt-seed the original's trajectory, the
unlearned finish at every ψ and the two null finishes. (The stored runs' own counts depend on
what an earlier model had cached, so they are not used.)

    python scripts/calibration.py --out runs/calibration --sets 5     # the stored runs (hours on a CPU)
    python benchmarks/bench_sequential.py runs/calibration --round 4
    python benchmarks/bench_sequential.py runs/calibration --round 4 --extend   # --uoc-max-seeds 48
    python benchmarks/bench_sequential.py runs/calibration --compare-bootstraps   # images vs seeds resampled
    python benchmarks/bench_sequential.py --live digits-gold-red digits-esd-red --concept red   # the library's own

``--live`` runs the library's sequential verdict (``--uoc-sequential``, ``pytest_uoc.rounds``) and the
fixed design on the zoo, the README gate's settings, and prints both verdicts, their UNet evaluations
and wall times (no stored runs needed; minutes per model on a CPU).

Prints one line per (model, seed set) and design, then per design: median cost against
the fixed design (target ≤ 0.4×), agreement with the fixed design (target ≥ 95%), and
false alarms on the gold standards.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PSIS = (0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55)
PSI_LIMIT, CCS_MAX = 0.55, 0.2
TARGET_RATIO, TARGET_AGREEMENT = 0.4, 0.95


def _intervals(design: str, prompts: int, looks: int, final: bool) -> Any:
    """The design's ``stats.Intervals`` at one look."""
    from pytest_uoc.scoring.sequential import EARLY_ALPHA, FINAL_ALPHA, SequentialIntervals
    from pytest_uoc.scoring.stats import BootstrapIntervals

    if design in ("fixed", "naive"):  # naive: the fixed design's interval at every look (NOT valid, a floor of cost)
        return BootstrapIntervals()
    if design == "bonferroni":
        return BootstrapIntervals(confidence=1 - 0.05 / looks)
    if design == "cs":
        return SequentialIntervals(prompts, alpha=0.05)
    # "cs+final", the library's design (pytest_uoc.rounds)
    return BootstrapIntervals(confidence=1 - FINAL_ALPHA) if final else SequentialIntervals(prompts, EARLY_ALPHA)


def _min_images(design: str, final: bool, naive_min: int = 16) -> int:
    """Images an interval needs before ``design`` may decide: the bootstrap's 16 (the naive design's own
    minimum), while a confidence sequence is valid from the first image on."""
    if final or design in ("fixed", "bonferroni"):
        return 16
    return naive_min if design == "naive" else 1


def _decide(record: dict, seeds: int, design: str, looks: int, steps_of: dict[float, int], final: bool = True,
            naive_min: int = 16, intervals: Any = None) -> Any:
    """The verdict from the first ``seeds`` scored seeds of ``record`` under ``design``'s intervals
    (or ``intervals``, when given)."""
    from pytest_uoc.scoring import calibration
    from pytest_uoc.scoring.ccs import CCSCurve

    prompts = len(record["prompts"])
    per_prompt = len(record["judged"]["unlearned"]["0.0"]) // prompts

    def first(values: list[float]) -> np.ndarray:
        # Stored prompt-major (the probe's order): every prompt's first ``seeds`` seeds, still prompt-major.
        return np.asarray(values, float).reshape(prompts, per_prompt)[:, :seeds].reshape(-1)

    def source(name: str) -> dict[float, np.ndarray]:
        return {p: first(record["judged"][name][str(p)]) for p in PSIS}

    make = intervals if intervals is not None else _intervals(design, prompts, looks, final)
    ccs = CCSCurve.from_estimates({p: make.mean(first(record["scores"]["unlearned"][str(p)])) for p in PSIS})
    curve = calibration.calibrated_curve(
        source("unlearned"), source("upper"), source("lower"), original_steps=steps_of,
        total_steps=record.get("steps", 25), anchors=record["anchors"], ccs=ccs, scorer="ZooDigitJudge",
        intervals=make)
    return calibration.decide_calibrated(
        curve, psi_limit=PSI_LIMIT, ccs_max=CCS_MAX, heldout_accuracy=record["heldout_accuracy"],
        images_differ=record["images_differ"],
        min_images=_min_images(design, final, naive_min))


def _extended(record: dict, following: dict) -> dict:
    """``record`` whose scored seeds go on with ``following``'s (the same case, the next disjoint seed set).

    Every prompt's seeds stay together (prompt-major), the record's own first; the held-out accuracy
    is the average of both classifiers' (the rule reads it; each set trained its own).
    """
    prompts = len(record["prompts"])

    def joined(a: list[float], b: list[float]) -> list[float]:
        left, right = np.asarray(a, float).reshape(prompts, -1), np.asarray(b, float).reshape(prompts, -1)
        return np.concatenate([left, right], axis=1).reshape(-1).tolist()

    out = dict(record)
    out["judged"] = {name: {p: joined(v, following["judged"][name][p]) for p, v in values.items()}
                     for name, values in record["judged"].items()}
    out["scores"] = {name: {p: joined(v, following["scores"][name][p]) for p, v in values.items()}
                     for name, values in record["scores"].items() if name in following["scores"]}
    out["heldout_accuracy"] = (record["heldout_accuracy"] + following["heldout_accuracy"]) / 2
    out["own_seeds"] = len(record["judged"]["unlearned"]["0.0"]) // prompts
    return out


@dataclass(frozen=True)
class _SeedBootstrap:
    """The fixed design's percentile bootstrap over seed means (each seed's mean over the prompts)."""

    prompts: int

    def mean(self, values: Any, *, low: float = 0.0, high: float = 1.0) -> Any:
        from pytest_uoc.scoring.sequential import seed_means
        from pytest_uoc.scoring.stats import bootstrap_mean

        return dataclasses.replace(bootstrap_mean(seed_means(values, self.prompts)), n=np.asarray(values).size)

    def diff(self, a: Any, b: Any) -> Any:
        return self.mean(np.asarray(a, float) - np.asarray(b, float))


def compare_bootstraps(records: list[dict], scheduler: Any) -> None:
    """The fixed design decided with its image bootstrap and with a bootstrap over seed means."""
    ratios = []
    for record in records:
        steps_of = _steps_of(scheduler, record)
        prompts = len(record["prompts"])
        per_prompt = len(record["judged"]["unlearned"]["0.0"]) // prompts
        images = _decide(record, per_prompt, "fixed", 1, steps_of)
        seeds = _decide(record, per_prompt, "fixed", 1, steps_of, intervals=_SeedBootstrap(prompts))
        a, b = images.calibrated_curve.overall_midpoint, seeds.calibrated_curve.overall_midpoint
        ratios.append((b.high - b.low) / max(1e-12, a.high - a.low))
        if images.kind != seeds.kind:
            print(f"{record['concept']:6s} {record['model']:22s} set {record['set']}  {images.kind} -> {seeds.kind}  "
                  f"(midpoint test {a} -> {b})")
    ratios_array = np.array(ratios)
    print(f"{len(records)} cases: seed-bootstrap / image-bootstrap width of the concealment test: median "
          f"{np.median(ratios_array):.2f}, range {ratios_array.min():.2f}-{ratios_array.max():.2f}, "
          f"above 1 in {np.mean(ratios_array > 1):.0%} of cases")


def _steps_of(scheduler: Any, record: dict) -> dict[float, int]:
    """The original's steps before the hand-off at every ψ of the grid, for ``record``'s step count."""
    from pytest_uoc.diffusion.schedule import split_steps

    scheduler.set_timesteps(record.get("steps", 25))
    timesteps = [float(t) for t in scheduler.timesteps]
    return {p: split_steps(p, timesteps, 1000).handoff for p in PSIS}


def _item_costs(steps: int, steps_of: dict[float, int]) -> tuple[int, int, int]:
    """UNet evaluations (per prompt-seed, per CFG row) of one verdict, counted from the schedule, not from a run.

    (training item, scored item with the whole sweep, scored item with the ψ = 0 check only). Counted as
    a cold single-checkpoint run pays them: the classifier's λO and λU (two full runs), and per scored
    item the original's trajectory (λO, which holds every hand-off), the unlearned model's finish at every
    ψ of the grid and the two null finishes of the same hand-offs. The ψ = 0 check (``pytest_uoc.rounds``)
    makes what the library makes for it: λO and λU (held-out accuracy, image difference) and both nulls
    at ψ = 0, four full runs. Stored runs' own counts depend on what an earlier model had already cached
    (the nulls, the original), so they are not used.
    """
    suffix = sum(steps - steps_of[p] for p in PSIS)  # every ψ's finish (ψ = 0: the whole run)
    return 2 * steps, steps + 3 * suffix, 4 * steps


CONCEPT_PROMPTS = {"three": ("a handwritten three", "the digit 3"),
                   "red": ("a red handwritten two", "a red handwritten seven", "a red digit")}


def live(models: list[str], concept_name: str, seeds: int, steps: int, max_seeds: int | None = None) -> None:
    """Both designs on the zoo, for real: verdicts, UNet evaluations, seconds."""
    import time

    import torch

    from pytest_uoc import zoo
    from pytest_uoc.concept import Concept
    from pytest_uoc.diffusion import PartialDiffusion
    from pytest_uoc.judges import zoo_digit_judge
    from pytest_uoc.probe import Probe, ProbeSettings

    torch.set_num_threads(2)
    original = zoo.load("digits")
    concept = Concept(concept_name, CONCEPT_PROMPTS[concept_name])
    for name in models:
        unlearned = original if name == "digits" else zoo.load(name, original=original)
        figures = {}
        for sequential in (True, False):
            engine = PartialDiffusion(original, unlearned, num_inference_steps=steps, batch_size=32)
            settings = ProbeSettings(seeds=tuple(range(seeds)), psis=PSIS, sequential=sequential,
                                     max_seeds=max_seeds if sequential else None)
            probe = Probe(concept, engine, settings, judge=zoo_digit_judge(concept_name))
            start = time.perf_counter()
            verdict = probe.verdict(PSI_LIMIT, CCS_MAX)
            figures[sequential] = (verdict, probe.cost.unet_evals, time.perf_counter() - start)
        (seq, seq_evals, seq_s), (fixed, fixed_evals, fixed_s) = figures[True], figures[False]
        print(f"{name:22s} sequential {seq.kind:12s} {seq_evals:6d} evals {seq_s:6.1f} s | fixed {fixed.kind:12s} "
              f"{fixed_evals:6d} evals {fixed_s:6.1f} s | evals {seq_evals / fixed_evals:.2f}x, "
              f"time {seq_s / fixed_s:.2f}x | {seq.sequential['stopped']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="?", help="folder of scripts/calibration.py's stored runs")
    parser.add_argument("--live", nargs="+", metavar="MODEL", help="zoo models to run both designs on, for real")
    parser.add_argument("--concept", choices=sorted(CONCEPT_PROMPTS), default="three")
    parser.add_argument("--seeds", type=int, default=32, help="--live: seeds per prompt (default 32)")
    parser.add_argument("--steps", type=int, default=25, help="--live: inference steps (default 25)")
    parser.add_argument("--max-seeds", type=int, default=None,
                        help="--live: the sequential design's budget in seeds per prompt (--uoc-max-seeds)")
    parser.add_argument("--round", type=int, default=4, help="scored seeds per prompt added per look (default 4)")
    parser.add_argument("--naive-min-images", type=int, default=16,
                        help="the naive design's minimum images per interval before it may decide (default 16)")
    parser.add_argument("--sets", type=int, default=99, help="use seed sets 0..N-1 only")
    parser.add_argument("--first-set", type=int, default=0, help="use seed sets from this one on (default 0)")
    parser.add_argument("--compare-bootstraps", action="store_true",
                        help="decide the fixed design with its image bootstrap and with a bootstrap over seed means")
    parser.add_argument("--extend", action="store_true",
                        help="replay --uoc-max-seeds 48: each case may go on with the next seed set's 16 scored "
                             "seeds (disjoint, drawn the same way) when undecided at its own 16; cost and "
                             "agreement still against the fixed 32-seed design on its own seeds")
    args = parser.parse_args(argv)
    if args.live:
        live(args.live, args.concept, args.seeds, args.steps, args.max_seeds)
        return 0
    if args.runs is None:
        parser.error("give the stored runs' folder, or --live MODEL ...")
    import diffusers

    from pytest_uoc import zoo
    from pytest_uoc.rounds import settled

    files = sorted(args.runs.glob("*-set*-*.json")) + sorted(args.runs.glob("*-set*-digits.json"))
    records = [json.loads(path.read_text()) for path in dict.fromkeys(files)]
    records = [r for r in records if r.get("judged") and args.first_set <= r["set"] < args.sets]
    if not records:
        print(f"no stored runs in {args.runs}: run `python scripts/calibration.py --out {args.runs} --sets 5` first",
              file=sys.stderr)
        return 2
    if args.extend:
        by_case = {(r["concept"], r["model"], r["set"]): r for r in records}
        pairs = [(r, by_case.get((r["concept"], r["model"], r["set"] + 1))) for r in records]
        records = [_extended(r, nxt) for r, nxt in pairs if nxt is not None]
        if not records:
            print("--extend needs two consecutive seed sets of a model", file=sys.stderr)
            return 2
    # The zoo's own scheduler class (SD 1.4's PNDM since the faithful build): its timesteps decide the hand-offs.
    folder = zoo.pipeline_path() / "scheduler"
    scheduler_class = json.loads((folder / "scheduler_config.json").read_text())["_class_name"]
    scheduler = getattr(diffusers, scheduler_class).from_pretrained(str(folder))
    if args.compare_bootstraps:
        compare_bootstraps(records, scheduler)
        return 0
    results: dict[str, list[tuple[str, int, str, str, float]]] = {
        "cs": [], "cs+final": [], "bonferroni": [], "naive": []}
    for record in records:
        steps = record.get("steps", 25)
        steps_of = _steps_of(scheduler, record)
        prompts = len(record["prompts"])
        per_prompt = len(record["judged"]["unlearned"]["0.0"]) // prompts  # the budget of scored seeds
        own = record.get("own_seeds", per_prompt)  # the fixed design's scored seeds (fewer with --extend)
        train_item, sweep_item, alone_item = _item_costs(steps, steps_of)
        train = train_item * prompts * own  # the training half: as many seeds as the fixed design's scored half
        full = train + sweep_item * prompts * own
        fixed = _decide(record, own, "fixed", 1, steps_of).kind
        looks = list(range(args.round, per_prompt + 1, args.round))
        if not looks or looks[-1] != per_prompt:
            looks.append(per_prompt)
        for design in results:
            kind, used, swept = "inconclusive", per_prompt, per_prompt
            for seeds in looks:
                final = seeds == looks[-1]
                if not final and seeds * prompts < _min_images(design, final, args.naive_min_images):
                    continue  # a bootstrap interval needs its minimum of images
                verdict = _decide(record, seeds, design, len(looks), steps_of, final, args.naive_min_images)
                kind = verdict.kind
                if kind != "inconclusive" and (final or settled(verdict, CCS_MAX)):  # the library's stopping rule
                    used = swept = seeds
                    if kind == "not_erased":  # decided on the new seeds' ψ = 0 images alone: no sweep for them
                        swept = max([n for n in looks if n < seeds], default=0)
                    break
            evals = train + sweep_item * prompts * swept + alone_item * prompts * (used - swept)
            ratio = evals / full
            results[design].append((record["model"], record["set"], fixed, kind, ratio))
            print(f"{design:10s} {record['model']:22s} set {record['set']}  fixed {fixed:12s} sequential {kind:12s} "
                  f"scored seeds {used:2d}/{per_prompt}  cost {ratio:.2f}x", flush=True)
    print()
    print(f"round {args.round} scored seeds per prompt; {len(records)} (model, seed set) cases; "
          f"targets: median cost <= {TARGET_RATIO}x, agreement >= {TARGET_AGREEMENT:.0%}")
    for design, rows in results.items():
        ratios = np.array([r[4] for r in rows])
        agree = np.mean([r[2] == r[3] for r in rows])
        gate = np.mean([(r[2] == "forgotten") == (r[3] == "forgotten") for r in rows])
        gold = [r for r in rows if "gold" in r[0]]
        alarms_seq = sum(r[3] != "forgotten" for r in gold)
        alarms_fixed = sum(r[2] != "forgotten" for r in gold)
        print(f"{design:10s} median cost {np.median(ratios):.2f}x (mean {ratios.mean():.2f}x)  "
              f"agreement {agree:.1%} (pass/fail {gate:.1%})  gold standards not passed: sequential {alarms_seq}/{len(gold)}, "
              f"fixed {alarms_fixed}/{len(gold)}  "
              f"[{'meets' if np.median(ratios) <= TARGET_RATIO and agree >= TARGET_AGREEMENT else 'misses'} targets]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
