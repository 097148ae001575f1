"""Build tiny Stable-Diffusion-architecture pipelines offline.

Everything here is made from code: a word-level CLIP BPE vocabulary written to
disk, a small ``CLIPTextModel``, ``AutoencoderKL`` and ``UNet2DConditionModel``
and Stable Diffusion 1.x's DDIM scheduler configuration. The zoo's training
(``tools/zoo/train.py``, outside the package) trains these; tests use them with
random weights.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "PipelineSize", "ZOO_SIZE", "TEST_SIZE", "UNET_STYLES", "build_pipeline", "build_tokenizer", "sd_scheduler",
    "sd14_scheduler",
]

# UNet text conditioning: "pooled" (the zoo's: cross-attention at the lower level plus diffusers'
# "text" addition embedding), "sd1" (SD 1.x: cross-attention only, at the lower level) and "sd1-wide"
# (SD 1.x: cross-attention only, at both levels, so at 16×16 too).
UNET_STYLES = ("pooled", "sd1", "sd1-wide")

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass(frozen=True)
class PipelineSize:
    """Widths of a tiny pipeline; the image is ``latent_size * 2`` pixels square."""

    latent_size: int = 16
    unet_channels: tuple[int, ...] = (32, 64)
    vae_channels: tuple[int, ...] = (32, 64)
    text_width: int = 64
    text_layers: int = 2
    max_length: int = 16
    attention_head_dim: int = 8
    norm_groups: int = 8
    vae_groups: int = 8
    pool_heads: int = 64  # heads of the pooled text embedding (diffusers' default; the zoo was trained so)


ZOO_SIZE = PipelineSize(unet_channels=(32, 48), vae_channels=(16, 32))
TEST_SIZE = PipelineSize(
    latent_size=8, unet_channels=(8, 16), vae_channels=(8, 16), text_width=16, text_layers=1,
    attention_head_dim=4, norm_groups=4, vae_groups=4, pool_heads=4,
)


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte-to-character table (the same table CLIPTokenizer uses)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _word_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Left-to-right merges that build each word as one token (where ranks allow)."""
    byte_chars = _bytes_to_unicode()
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in sorted(set(words), key=lambda w: (len(w), w)):
        symbols = [byte_chars[b] for b in word.encode("utf-8")]
        if len(symbols) < 2:
            continue
        symbols[-1] += "</w>"
        current = symbols[0]
        for nxt in symbols[1:]:
            pair = (current, nxt)
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            current = current + nxt
    return merges


def build_tokenizer(words: Iterable[str], max_length: int, folder: str | Path | None = None) -> Any:
    """A CLIPTokenizer whose vocabulary holds every byte and the given words."""
    from transformers import CLIPTokenizer

    split = sorted({w for text in words for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", text.lower())})
    chars = list(_bytes_to_unicode().values())
    vocab_tokens = chars + [c + "</w>" for c in chars]
    merges = _word_merges(split)
    vocab_tokens += ["".join(pair) for pair in merges]
    vocab_tokens += [BOS, EOS]
    vocab: dict[str, int] = {}
    for token in vocab_tokens:
        vocab.setdefault(token, len(vocab))
    target = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="uoc-tokenizer-"))
    target.mkdir(parents=True, exist_ok=True)
    (target / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (target / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
    )
    return CLIPTokenizer(
        str(target / "vocab.json"), str(target / "merges.txt"), model_max_length=max_length
    )


def sd_scheduler(prediction_type: str = "epsilon") -> Any:
    """Stable Diffusion 1.x's DDIM scheduler configuration (SD 2.x's with ``v_prediction``)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading",
        prediction_type=prediction_type,
    )


def sd14_scheduler(prediction_type: str = "epsilon") -> Any:
    """The scheduler configuration Stable Diffusion 1.4 ships (PNDM, PLMS steps only)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, prediction_type=prediction_type,
        trained_betas=None,
    )


def build_unet(size: PipelineSize, seed: int = 0, style: str = "pooled") -> Any:
    """A UNet2DConditionModel of the given size with seeded random weights (``style``: see UNET_STYLES)."""
    from diffusers import UNet2DConditionModel

    if style not in UNET_STYLES:
        raise ValueError(f"unknown UNet style {style!r}; known: {', '.join(UNET_STYLES)}")
    torch.manual_seed(seed)
    n = len(size.unet_channels)
    if style == "sd1-wide":
        down = ("CrossAttnDownBlock2D",) * n
        up = ("CrossAttnUpBlock2D",) * n
    else:
        # Cross-attention below the top resolution only: it is where text conditioning acts
        # and the top level's self-attention would dominate the CPU cost.
        down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
        up = ("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",)
    pooled = (
        {"addition_embed_type": "text", "addition_embed_type_num_heads": size.pool_heads}
        if style == "pooled" else {}
    )
    return UNet2DConditionModel(
        sample_size=size.latent_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=size.unet_channels, down_block_types=down, up_block_types=up,
        cross_attention_dim=size.text_width, attention_head_dim=size.attention_head_dim,
        norm_num_groups=size.norm_groups,
        # Besides cross-attention, an attention-pooled text embedding joins the time embedding
        # (diffusers' "text" addition embedding): a tiny UNet learns to follow the digit word
        # through it within a CPU budget, where cross-attention alone did not (measured: after
        # 1600 steps the digit word was ignored and only the colour followed). The "sd1" styles
        # leave it out: the prompt acts through cross-attention only, as in SD 1.x.
        **pooled,
    )


def build_vae(size: PipelineSize, seed: int = 0) -> Any:
    """An AutoencoderKL that halves the resolution into 4 latent channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * len(size.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(size.vae_channels),
        block_out_channels=size.vae_channels, norm_num_groups=size.vae_groups,
        sample_size=size.latent_size * 2, mid_block_add_attention=False,
    )


def build_text_encoder(size: PipelineSize, tokenizer: Any, seed: int = 0) -> Any:
    """A small CLIPTextModel matching the tokenizer's vocabulary and length."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=size.text_width, intermediate_size=size.text_width * 2,
        num_hidden_layers=size.text_layers, num_attention_heads=4, max_position_embeddings=size.max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, projection_dim=size.text_width,
    )
    return CLIPTextModel(config)


def build_pipeline(
    words: Iterable[str], size: PipelineSize = TEST_SIZE, seed: int = 0, prediction_type: str = "epsilon",
    unet_style: str = "pooled", scheduler: str = "ddim",
) -> Any:
    """A complete StableDiffusionPipeline with random weights, built offline.

    ``scheduler``: "ddim" (SD 1.x's DDIM configuration) or "pndm" (the PNDM one SD 1.4 ships).
    """
    if scheduler not in ("ddim", "pndm"):
        raise ValueError(f"scheduler must be 'ddim' or 'pndm', got {scheduler!r}")
    make_scheduler = sd14_scheduler if scheduler == "pndm" else sd_scheduler
    from diffusers import StableDiffusionPipeline

    tokenizer = build_tokenizer(words, size.max_length)
    pipe = StableDiffusionPipeline(
        vae=build_vae(size, seed), text_encoder=build_text_encoder(size, tokenizer, seed),
        tokenizer=tokenizer, unet=build_unet(size, seed, unet_style), scheduler=make_scheduler(prediction_type),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
