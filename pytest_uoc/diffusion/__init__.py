"""The partial-diffusion engine, the restoration attack and model loading (knows nothing of pytest)."""

from .engine import Images, PartialDiffusion, Sweep
from .loading import load_pipeline, load_unlearned
from .restore import Restoration, restore, restore_start
from .sampler import GuidedModel, Sampler, Trajectory
from .schedule import StepSplit, cutoff_timestep, split_steps

__all__ = [
    "GuidedModel",
    "Images",
    "PartialDiffusion",
    "Restoration",
    "Sampler",
    "StepSplit",
    "Sweep",
    "Trajectory",
    "cutoff_timestep",
    "load_pipeline",
    "load_unlearned",
    "restore",
    "restore_start",
    "split_steps",
]
