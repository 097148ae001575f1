"""Measure the probe (domain classifier, CCS, CRS) on every zoo variant; print markdown tables.

    python scripts/metrics_table.py [--seeds 32] [--concepts three red] [--backbones resnet18 densenet121 efficientnet_b0]

For each concept and variant: the classifier's held-out accuracy and training
time, CCS(ψ) with 95% intervals over the grid, the paper's CCS aggregate, the
paper-compatible CRS, and the verdict at ψ ≤ 0.55, CCS ≤ 0.2. The backbone
comparison runs on one variant per concept (ESD-x). Every model pair shares
the original's trajectory through the persistent trajectory cache.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from pytest_uoc import zoo
from pytest_uoc.concept import Concept
from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache
from pytest_uoc.probe import Probe, ProbeSettings

PSIS = (0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.75)
PROMPTS = {"three": ("a handwritten three", "the digit 3"), "red": ("a red handwritten two", "a red digit")}
METHODS = ("gold", "esd", "esdu", "ca", "uce", "salun", "conceal")


def run(concept: str, name: str, backbone: str, seeds: int, cache: TrajectoryCache, original) -> dict:
    model = zoo.load(name, original=original)
    engine = PartialDiffusion(original, model, num_inference_steps=50, batch_size=64, cache=cache)
    probe = Probe(Concept(concept, PROMPTS[concept]), engine,
                  ProbeSettings(seeds=tuple(range(seeds)), psis=PSIS, backbone=backbone))
    start = time.perf_counter()
    curve = probe.ccs_curve(PSIS)
    verdict = probe.verdict(0.55, 0.2)
    crs = probe.crs()
    return {
        "name": name, "backbone": backbone, "heldout_accuracy": probe.heldout_accuracy,
        "classifier_seconds": probe.cost.seconds.get("classifier", 0.0),
        "curve": {p: (curve.at(p).mean, curve.at(p).low, curve.at(p).high) for p in PSIS},
        "paper_ccs": curve.paper_aggregate(), "crs": crs.value,
        "crs_signed": {p: v for p, v in getattr(crs, "signed", {}).items()},
        "verdict": verdict.kind, "seconds": time.perf_counter() - start, "cost": probe.cost.to_dict(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--concepts", nargs="+", default=["three", "red"])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "densenet121", "efficientnet_b0"])
    parser.add_argument("--json", default="docs/metrics.json")
    args = parser.parse_args()
    original = zoo.load("digits")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cache = TrajectoryCache(folder)
        for concept in args.concepts:
            for method in METHODS:
                name = f"digits-{method}-{concept}"
                backbones = args.backbones if method == "esd" else ["resnet18"]
                for backbone in backbones:
                    row = run(concept, name, backbone, args.seeds, cache, original)
                    row["concept"] = concept
                    rows.append(row)
                    print(f"{name:24s} {backbone:16s} acc {row['heldout_accuracy']:.3f} "
                          f"({row['classifier_seconds']:.1f} s) paperCCS {row['paper_ccs']:.3f} CRS {row['crs']:.3f} "
                          f"{row['verdict']} | " + " ".join(f"{p}:{v[0]:.2f}" for p, v in row["curve"].items()),
                          flush=True)
    Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    print()
    print("| concept | model | backbone | held-out acc | clf s | " + " | ".join(f"CCS ψ={p}" for p in PSIS)
          + " | paper CCS | CRS | verdict (ψ≤0.55, CCS≤0.2) |")
    print("|" + "---|" * (8 + len(PSIS)))
    for r in rows:
        cells = [f"{r['curve'][p][0]:.2f} [{r['curve'][p][1]:.2f}, {r['curve'][p][2]:.2f}]" for p in PSIS]
        print(f"| {r['concept']} | {r['name']} | {r['backbone']} | {r['heldout_accuracy']:.3f} | "
              f"{r['classifier_seconds']:.1f} | " + " | ".join(cells)
              + f" | {r['paper_ccs']:.3f} | {r['crs']:.3f} | {r['verdict']} |")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    raise SystemExit(main())
