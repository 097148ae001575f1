"""A ψ sweep on a full Stable Diffusion 1.x configuration (random weights): images/s and peak memory.

    python benchmarks/bench_gpu.py                         # CUDA, float16, SD 1.x size
    python benchmarks/bench_gpu.py --compile --batch 16    # with torch.compile
    python benchmarks/bench_gpu.py --device cpu --dtype float32 --steps 2 --seeds 1 --psis 0,0.55 --latent-size 16   # smoke run

Builds SD 1.x's UNet (4 levels, 320-1280 channels, 64×64×4 latents, 768-wide
cross-attention), VAE and CLIP-L-sized text encoder with random weights
(weights do not change speed) and runs the same sweep three ways:

- reference: one callback-swap pipeline call per ψ (the paper's procedure);
- pytest-uoc, separate branches: the shared original trajectory, one call per branch;
- pytest-uoc, mixed branches: the branches of different ψ finished in shared UNet calls.

It prints, for each, wall time, images per second (images of every ψ), UNet
evaluations and peak GPU memory (``torch.cuda.max_memory_allocated``), and the
ratios against the reference. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import torch

from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.diffusion.reference import reference_partial_diffusion

PSIS = (0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.75)
PROMPTS = ["a photograph of an astronaut riding a horse", "a painting in the style of an old master"]


def sd1_pipeline(device: str, dtype: torch.dtype, latent_size: int = 64) -> Any:
    """StableDiffusionPipeline with SD 1.x's architecture and random weights, built offline."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from pytest_uoc.zoo.build import build_tokenizer, sd_scheduler

    torch.manual_seed(0)
    words = " ".join(PROMPTS).split()
    tokenizer = build_tokenizer(words, max_length=77)
    unet = UNet2DConditionModel(sample_size=latent_size, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2, sample_size=latent_size * 8,
    )
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=sd_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(name: str, device: str, run: Any, images: int) -> dict[str, Any]:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    synchronize(device)
    start = time.perf_counter()
    evals = run()
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    row = {"name": name, "seconds": seconds, "images": images, "images_per_s": images / seconds,
           "unet_evals": evals, "peak_gib": peak}
    mem = f"{peak:.2f} GiB" if peak is not None else "n/a (CPU)"
    print(f"{name:<28} {seconds:8.2f} s  {images / seconds:7.2f} img/s  {evals:6d} evals  peak {mem}", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=8, help="seeds per prompt")
    parser.add_argument("--batch", type=int, default=8, help="images per UNet call (per branch)")
    parser.add_argument("--latent-size", type=int, default=64, help="latent side (64: SD 1.x's 512×512 images)")
    parser.add_argument("--psis", default=",".join(str(p) for p in PSIS), help="comma list of ψ")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet calls (warm-up run excluded)")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("CUDA is not available here; run on a GPU machine, or smoke-test with --device cpu")
    psis = [float(p) for p in args.psis.split(",") if p.strip()]
    dtype = getattr(torch, args.dtype)
    pipe = sd1_pipeline(args.device, dtype, args.latent_size)
    unlearned = type(pipe.unet).from_config(pipe.unet.config).to(args.device, dtype)
    seeds = list(range(args.seeds))
    images = len(PROMPTS) * len(seeds) * len(psis)
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else platform.processor()}), "
          f"{args.dtype}, SD 1.x UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.0f} M parameters, "
          f"{args.steps} steps, {len(PROMPTS)} prompts × {len(seeds)} seeds × {len(psis)} ψ = {images} images", flush=True)
    rows = []

    if not args.skip_reference:
        def reference() -> int:
            for psi in psis:
                reference_partial_diffusion(pipe, unlearned, PROMPTS, psi, seeds, num_inference_steps=args.steps)
            return len(PROMPTS) * len(seeds) * args.steps * len(psis)

        rows.append(measure("reference (call per psi)", args.device, reference, images))

    for mix in (False, True):
        engine = PartialDiffusion(pipe, unlearned, num_inference_steps=args.steps, batch_size=args.batch,
                                  mix_branches=mix, compile_unet=args.compile)
        if args.compile:  # compile outside the timed run
            engine.sweep(PROMPTS[:1], psis, seeds[:1])

        def ours(engine: PartialDiffusion = engine) -> int:
            return engine.sweep(PROMPTS, psis, seeds).unet_evals

        rows.append(measure(f"pytest-uoc, {'mixed' if mix else 'separate'} branches", args.device, ours, images))
    if not args.skip_reference:
        for row in rows[1:]:
            print(f"{row['name']}: wall {row['seconds'] / rows[0]['seconds']:.3f}× the reference, "
                  f"evals {row['unet_evals'] / rows[0]['unet_evals']:.3f}×")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
