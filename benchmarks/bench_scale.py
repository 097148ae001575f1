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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ["a painting in the style of an old master", "an old master's portrait of a woman"]
WORDS = "a painting in the style of an old master an master's portrait woman photo of landscape".split()
SCHEDULER_CONFIG = Path(__file__).resolve().parents[1] / "tests" / "data" / "sd-v1-4-scheduler_config.json"


def _text_encoder(tokenizer: Any, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=32,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _vae(size: int) -> Any:
    """SD's VAE shape (4 levels: 8× down), narrow: real latent and image sizes."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        sample_size=size,
    )


def sd1_unet(seed: int) -> Any:
    from diffusers import UNet2DConditionModel

    torch_seed(seed)
    return UNet2DConditionModel(
        sample_size=64, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4,
    )


def sdxl_unet(seed: int) -> Any:
    from diffusers import UNet2DConditionModel

    torch_seed(seed)
    return UNet2DConditionModel(
        sample_size=128, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=4, transformer_layers_per_block=1,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
    )


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def build(family: str) -> Any:
    """The family's pipeline with narrow random weights and real sizes."""
    from diffusers import (
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    from pytest_uoc.zoo.build import build_tokenizer

    torch_seed(0)
    tokenizer = build_tokenizer(WORDS, 77)
    if family == "sd1":
        scheduler = PNDMScheduler.from_config(json.loads(SCHEDULER_CONFIG.read_text()))
        pipe = StableDiffusionPipeline(vae=_vae(512), text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer,
                                       unet=sd1_unet(0), scheduler=scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    else:
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           steps_offset=1, timestep_spacing="leading")
        pipe = StableDiffusionXLPipeline(vae=_vae(1024), text_encoder=_text_encoder(tokenizer),
                                         text_encoder_2=_text_encoder(tokenizer, projection=True),
                                         tokenizer=tokenizer, tokenizer_2=tokenizer, unet=sdxl_unet(0),
                                         scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def one_run(family: str, checkpoint: int, cache: Path, steps: int, seeds: int, device: str) -> dict[str, Any]:
    """One default gate in this process; its figures as a dict."""
    from pytest_uoc.concept import Concept
    from pytest_uoc.diffusion import PartialDiffusion
    from pytest_uoc.memory import peak_gpu_bytes, peak_host_bytes
    from pytest_uoc.probe import Probe, ProbeSettings
    from pytest_uoc.stores import TrajectoryCache

    original = build(family).to(device)
    unlearned = (sd1_unet if family == "sd1" else sdxl_unet)(100 + checkpoint).to(device)
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
