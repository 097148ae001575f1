"""One default gate at real image sizes: host memory, kept-image bytes, cache bytes and UNet evaluations.

    python benchmarks/bench_scale.py                          # SD 1.x shape at 512 px, then SDXL shape at 1024 px
    python benchmarks/bench_scale.py --family sd1 --steps 10  # one family
    python benchmarks/bench_scale.py --device cuda            # on a GPU (adds peak GPU memory)

Each family's pipeline has the real latent and image sizes (SD 1.x: 64×64×4 latents, 512 px images, SD 1.4's
PNDM scheduler config as it ships; SDXL: 128×128×4 latents, 1024 px, Euler) but narrow random weights, so
that a gate runs on 2 CPU cores. Weights do not change memory per image or the evaluation counts.

Three runs share one trajectory cache folder, each in a fresh process (so each peak is its own):

- cold: checkpoint A, empty cache;
- second checkpoint: checkpoint B (another unlearned UNet) against the same original;
- re-run: checkpoint A again.

Each runs the README's default gate (``assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)``: the calibrated
rule over the default ψ grid, 2 prompts, ``--seeds`` seeds, no judge: the domain classifier scores), and prints
peak host memory (the process's resident-set peak), kept-image bytes and bytes per kept pixel channel, cache
bytes, UNet evaluations in total and by the original, and wall time. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from sd_shapes import PROMPTS, build, unet  # noqa: E402 - the SD-shaped pipelines the smoke test uses too


def one_run(family: str, checkpoint: int, cache: Path, steps: int, seeds: int, device: str) -> dict[str, Any]:
    """One default gate in this process; its figures as a dict."""
    from pytest_uoc.concept import Concept
    from pytest_uoc.diffusion import PartialDiffusion
    from pytest_uoc.memory import peak_gpu_bytes, peak_host_bytes
    from pytest_uoc.probe import Probe, ProbeSettings
    from pytest_uoc.stores import TrajectoryCache

    original = build(family).to(device)
    unlearned = unet(family, 100 + checkpoint).to(device)
    before = peak_host_bytes()
    start = time.perf_counter()
    engine = PartialDiffusion(original, unlearned, num_inference_steps=steps, batch_size=8,
                              cache=TrajectoryCache(cache / "trajectories"))
    probe = Probe(Concept("old master", tuple(PROMPTS)), engine,
                  ProbeSettings(seeds=tuple(range(seeds)), classifier_cache=str(cache / "classifiers")))
    verdict = probe.verdict(0.55, 0.2)
    seconds = time.perf_counter() - start
    cost = probe.cost.to_dict()
    kept = [img for image_set in probe.bank.sweeps.values() for img in image_set.by_handoff.values()]
    kept += [img for image_set in probe.bank.training.values() for img in image_set.by_handoff.values()]
    channels = sum(img.numel() for img in kept)
    return {
        "family": family, "checkpoint": checkpoint, "verdict": verdict.kind, "seconds": round(seconds, 1),
        "unet_evals": cost["unet_evals"],
        "original_unet_evals": cost["unet_evals"] - cost["unlearned_unet_evals"] - cost["null_unet_evals"],
        "kept_images": sum(len(img) for img in kept), "kept_image_bytes": cost["kept_image_bytes"],
        "bytes_per_pixel_channel": round(cost["kept_image_bytes"] / channels, 3) if channels else None,
        "image_side": engine.height,
        "peak_host_bytes_before_gate": before, "peak_host_bytes": peak_host_bytes(), "peak_gpu_bytes": peak_gpu_bytes(),
        "seconds_by_phase": cost["seconds"],
        "cache_bytes": sum(f.stat().st_size for f in (cache / "trajectories").rglob("*") if f.is_file()),
    }


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=["sd1", "sdxl", "both"], default="both")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps (few are fine: memory per image and "
                        "the evaluation counts' ratios do not depend on them)")
    parser.add_argument("--seeds", type=int, default=32, help="seeds per prompt (half train the classifier)")
    parser.add_argument("--sdxl-seeds", type=int, default=16, help="seeds per prompt for the SDXL shape (CPU time)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", nargs=3, metavar=("FAMILY", "CHECKPOINT", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        family, checkpoint, cache = args.one
        seeds = args.seeds if family == "sd1" else args.sdxl_seeds
        print(json.dumps(one_run(family, int(checkpoint), Path(cache), args.steps, seeds, args.device)))
        return 0
    families = ["sd1", "sdxl"] if args.family == "both" else [args.family]
    for family in families:
        with tempfile.TemporaryDirectory() as folder:
            rows = []
            for label, checkpoint in (("cold", 0), ("second checkpoint", 1), ("re-run", 0)):
                out = subprocess.run(
                    [sys.executable, __file__, "--one", family, str(checkpoint), folder, "--steps", str(args.steps),
                     "--seeds", str(args.seeds), "--sdxl-seeds", str(args.sdxl_seeds), "--device", args.device],
                    check=True, capture_output=True, text=True,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append((label, row))
            print(f"\n{family}: {rows[0][1]['image_side']} px, {args.steps} steps, "
                  f"{args.seeds if family == 'sd1' else args.sdxl_seeds} seeds × {len(PROMPTS)} prompts, "
                  f"device {args.device}")
            print(f"{'run':<18} {'verdict':<13} {'s':>7} {'UNet evals':>11} {'by original':>12} {'peak host':>10} "
                  f"{'peak GPU':>10} {'kept images':>16} {'B/px·ch':>8} {'cache':>10}")
            for label, row in rows:
                print(f"{label:<18} {row['verdict']:<13} {row['seconds']:>7} {row['unet_evals']:>11} "
                      f"{row['original_unet_evals']:>12} {_gib(row['peak_host_bytes']):>10} "
                      f"{_gib(row['peak_gpu_bytes']):>10} "
                      f"{row['kept_images']:>5} {_gib(row['kept_image_bytes']):>10} "
                      f"{row['bytes_per_pixel_channel']!s:>8} {_gib(row['cache_bytes']):>10}")
            cold, second, rerun = (row for _, row in rows)
            print(f"kept image bytes per image: {cold['kept_image_bytes'] / max(1, cold['kept_images']) / 2**20:.2f} MiB; "
                  f"cache bytes after the cold gate: {_gib(cold['cache_bytes'])}; after both checkpoints: "
                  f"{_gib(second['cache_bytes'])}")
            print("seconds by phase (cold): " + ", ".join(f"{k} {v:.0f}" for k, v in cold["seconds_by_phase"].items()))
            print(f"second checkpoint: {second['original_unet_evals']} original evaluations "
                  f"(cold {cold['original_unet_evals']}); re-run: {rerun['unet_evals']} evaluations in total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
