"""The partial-diffusion engine and model loading (knows nothing of pytest)."""

from .engine import Images, PartialDiffusion, Sweep
from .loading import load_pipeline, load_unlearned
from .schedule import StepSplit, cutoff_timestep, split_steps

__all__ = [
    "Images",
    "PartialDiffusion",
    "StepSplit",
    "Sweep",
    "cutoff_timestep",
    "load_pipeline",
    "load_unlearned",
    "split_steps",
]
