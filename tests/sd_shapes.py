"""SD 1.x- and SDXL-shaped pipelines at their real sizes, with narrow random weights, built offline.

SD 1.x: 64×64×4 latents, 512 px images, SD 1.4's scheduler config as its folder ships it (PNDM,
``tests/data/sd-v1-4-scheduler_config.json``); SDXL: 128×128×4 latents, 1024 px, Euler. The VAE has
SD's four levels (8× down), so latent and image sizes, and so memory per image and the number of
UNet evaluations, are the real ones; the weights are narrow so that a gate runs on 2 CPU cores.
Shared by ``benchmarks/bench_scale.py`` and the real-resolution smoke test (``test_real_resolution.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

PROMPTS = ("a painting in the style of an old master", "an old master's portrait of a woman")
WORDS = "a painting in the style of an old master an master's portrait woman photo of landscape".split()
SCHEDULER_CONFIG = Path(__file__).resolve().parent / "data" / "sd-v1-4-scheduler_config.json"
SIDES = {"sd1": 512, "sdxl": 1024}


def _text_encoder(tokenizer: Any, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=32,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _vae(side: int) -> Any:
    """SD's VAE shape (4 levels: 8× down), narrow: real latent and image sizes."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        sample_size=side,
    )


def unet(family: str, seed: int) -> Any:
    """A narrow UNet of the family's latent size (another seed: another "checkpoint" of the same shape)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    common = dict(sample_size=SIDES[family] // 8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=4)
    if family == "sd1":
        return UNet2DConditionModel(cross_attention_dim=32, **common)
    return UNet2DConditionModel(cross_attention_dim=64, transformer_layers_per_block=1, addition_embed_type="text_time",
                                addition_time_embed_dim=8, projection_class_embeddings_input_dim=80, **common)


def build(family: str) -> Any:
    """The family's pipeline (``"sd1"`` or ``"sdxl"``) with narrow random weights and real sizes."""
    from diffusers import (
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    from pytest_uoc.zoo.build import build_tokenizer

    if family not in SIDES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(SIDES)}")
    torch.manual_seed(0)
    tokenizer = build_tokenizer(WORDS, 77)
    if family == "sd1":
        scheduler = PNDMScheduler.from_config(json.loads(SCHEDULER_CONFIG.read_text()))
        pipe = StableDiffusionPipeline(vae=_vae(512), text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer,
                                       unet=unet("sd1", 0), scheduler=scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    else:
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           steps_offset=1, timestep_spacing="leading")
        pipe = StableDiffusionXLPipeline(vae=_vae(1024), text_encoder=_text_encoder(tokenizer),
                                         text_encoder_2=_text_encoder(tokenizer, projection=True),
                                         tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet("sdxl", 0),
                                         scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe
