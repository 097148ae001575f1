"""The reference partial diffusion: a plain pipeline call with a UNet swap.

This is the behaviour docs/definitions.md defines as ground truth, kept here so tests
and benchmarks can compare the engine against it: a diffusers pipeline call
whose ``callback_on_step_end`` swaps ``pipe.unet`` for the unlearned UNet once
the next timestep is below the cutoff, with one CPU generator per image.

For transformer pipelines (SD3, Flux) the swapped part is ``pipe.transformer``.
Their flow-matching schedules start at t = N (σ = 1), which ``t >= c`` would
give to the original even at ψ = 0; ψ = 0 means the unlearned model alone
(docs/definitions.md), so there the unlearned transformer runs from the first step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .schedule import cutoff_timestep

__all__ = ["reference_partial_diffusion"]


def reference_partial_diffusion(
    original: Any,
    unlearned_unet: Any,
    prompts: Sequence[str],
    psi: float,
    seeds: Sequence[int],
    *,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    eta: float = 0.0,
    **pipeline_kwargs: Any,
) -> torch.Tensor:
    """Images (N×C×H×W in [0, 1], prompt-major, seed-minor) from one pipeline call.

    ``pipeline_kwargs`` go to the pipeline call as they are (``height``, ``width``,
    ``max_sequence_length``, ``true_cfg_scale``, ...).
    """
    num_train = int(original.scheduler.config.num_train_timesteps)
    cutoff = cutoff_timestep(psi, num_train)
    attr = "transformer" if getattr(original, "transformer", None) is not None else "unet"
    original_unet = getattr(original, attr)
    all_prompts = [p for p in prompts for _ in seeds]
    generators = [torch.Generator("cpu").manual_seed(int(s)) for _ in prompts for s in seeds]

    def swap(pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        timesteps = pipe.scheduler.timesteps
        if step + 1 < len(timesteps) and timesteps[step + 1] < cutoff:
            setattr(pipe, attr, unlearned_unet)
        return callback_kwargs

    if attr == "unet":
        original.scheduler.set_timesteps(num_inference_steps)
        unlearned_first = bool(original.scheduler.timesteps[0] < cutoff)
    else:
        unlearned_first = psi == 0
    if unlearned_first:
        setattr(original, attr, unlearned_unet)
    try:
        kwargs: dict[str, Any] = dict(pipeline_kwargs)
        if eta:
            kwargs["eta"] = eta
        out = original(
            all_prompts,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generators,
            output_type="pt",
            callback_on_step_end=swap,
            **kwargs,
        )
    finally:
        setattr(original, attr, original_unet)
    return out.images.float().cpu()
