"""Settings → models → probe: the one place that builds what the plugin and ``uoc audit`` test.

The device and dtype of the models, the partial-diffusion engines (inference steps,
guidance, batch size, branch mixing, ``torch.compile``, the trajectory cache under the
cache folder), the probe's settings (seeds, ψ grid, classifier backbone, accuracy floor,
rule, classifier cache) and the default judge of the calibrated rule. ``UocSession`` keeps
what this builds for the whole run; no torch at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .concept import Concept
from .config import Settings, check_seeds_for_prompts

__all__ = [
    "MIX_SETTING", "build_probe", "default_judge", "load_original", "load_unlearned", "missing_device",
    "probe_seeds",
    "resolve_device", "resolve_dtype", "zoo_concept",
]

#: ``--uoc-mix-branches`` values as ``PartialDiffusion(mix_branches=...)`` takes them.
MIX_SETTING: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


def resolve_device(setting: str, worker: str | None = None) -> str:
    """``auto`` → ``cuda:N`` (xdist worker N modulo the GPU count) or ``cpu``; ``cuda`` under xdist → ``cuda:N`` too."""
    import torch

    if setting == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        index = int(worker[2:]) if worker and worker.startswith("gw") else 0
        return f"cuda:{index % torch.cuda.device_count()}"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--uoc-device {setting}: CUDA is not available on this machine")
    if setting == "cuda" and worker and worker.startswith("gw"):
        # cuda without an index under -n N: spread the workers over the GPUs, as auto does.
        return f"cuda:{int(worker[2:]) % torch.cuda.device_count()}"
    return setting


def missing_device(setting: str) -> str | None:
    """Why an explicit ``cuda``/``cuda:N`` cannot run here ("no CUDA device", ...), or None when it can."""
    if not str(setting).startswith("cuda"):
        return None
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(str(setting).partition(":")[2] or 0)
    if index < count:
        return None
    return "no CUDA device" if count == 0 else f"{count} CUDA device(s) (cuda:0 to cuda:{count - 1})"


def resolve_dtype(setting: str, device: str) -> Any:
    """``auto`` → float16 on CUDA, float32 on the CPU; else the named torch dtype."""
    import torch

    if setting == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, setting)


#: Weight-file suffixes of a single-file checkpoint (``sd-v1-4.ckpt``, ``v1-5-pruned-emaonly.safetensors``).
SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")


def single_file_original(location: str | None) -> str | None:
    """What to do instead, when the original is a single checkpoint file rather than a diffusers folder; else None.

    pytest-uoc loads the original offline from a diffusers folder; a single file needs its
    family's configs, which ``from_single_file`` would fetch from the hub. Converting it once,
    offline, with the configs of a diffusers folder of the same family, gives that folder.
    """
    if not location or str(location).startswith("zoo:"):
        return None
    path = Path(str(location))
    if not path.is_file():
        return None
    kind = "a single checkpoint file" if path.suffix in SINGLE_FILE_SUFFIXES else "a file, not a folder"
    return (f"the original {str(path)!r} is {kind}; pytest-uoc loads the original from a diffusers pipeline "
            f"folder (model_index.json and its parts). Convert it once, offline, with the configs of a diffusers "
            f"folder of the same family (e.g. a saved SD 1.x pipeline): python -c \"from diffusers import "
            f"StableDiffusionPipeline as P; P.from_single_file('{path}', config='SD_FOLDER', "
            f"local_files_only=True).save_pretrained('sd-diffusers')\" (StableDiffusionXLPipeline for SDXL), then "
            f"give --uoc-original sd-diffusers")


def load_original(location: str, settings: Settings, device: str) -> Any:
    """The original pipeline at ``location`` on ``device`` in the dtype the settings name, progress bars off."""
    from . import zoo
    from .diffusion.loading import load_pipeline

    dtype = resolve_dtype(settings.dtype, device)
    if location.startswith(zoo.ZOO_PREFIX):
        pipe = zoo.load(location).to(device, dtype)
    else:
        pipe = load_pipeline(location, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_unlearned(location: str, original: Any, kind: str = "auto") -> Any:
    """An unlearned (or reference) model next to ``original``: its denoiser on the original's device and dtype."""
    from . import zoo
    from .diffusion.families import denoiser_of
    from .diffusion.loading import load_unlearned as load

    if location.startswith(zoo.ZOO_PREFIX):
        if kind not in (None, "auto"):
            raise ValueError(f"unlearned kind {kind!r} was given for {location}, but zoo models are loaded as they "
                             "ship (a UNet or text-encoder file each); leave --uoc-unlearned-kind at auto for zoo: "
                             "names, or give the path of a file of that kind")
        pipe = zoo.load(location, original=original)
        denoiser = denoiser_of(original)  # the UNet (SD 1.x/2.x, SDXL) or transformer (SD3, Flux)
        pipe.to(denoiser.device, denoiser.dtype)
        return pipe
    return load(original, location, kind=kind)


def probe_seeds(concept: Concept, settings: Settings) -> tuple[int, ...]:
    """The seeds of a probe: the option's when the user set it, else the marker's, else the default."""
    return tuple(settings.seeds if settings.explicit("seeds") or concept.seeds is None else concept.seeds)


def build_probe(concept: Concept, original: Any, unlearned: Any, reference: Any | None, settings: Settings,
                labels: dict[str, str], cache_dir: Path) -> Any:
    """A ``Probe`` of ``concept`` on these models, with engines and caches as the settings say.

    Raises ``SettingError`` (a ValueError) when the seeds are too few for the prompts.
    """
    seeds = probe_seeds(concept, settings)
    check_seeds_for_prompts(seeds, len(concept.prompts))
    from .diffusion import PartialDiffusion
    from .probe import Probe, ProbeSettings
    from .stores import TrajectoryCache

    cache = TrajectoryCache(Path(cache_dir) / "trajectories")

    def engine(other: Any) -> PartialDiffusion:
        return PartialDiffusion(original, other, num_inference_steps=settings.steps,
                                guidance_scale=settings.guidance_scale, batch_size=settings.batch_size,
                                cache=cache, mix_branches=MIX_SETTING[settings.mix_branches],
                                compile_unet=settings.compile)

    probe_settings = ProbeSettings(
        seeds=seeds, psis=settings.psis, backbone=settings.backbone, backbone_weights=settings.backbone_weights,
        classifier_recipe=settings.classifier_recipe, classifier_size=settings.classifier_size,
        accuracy_floor=settings.accuracy_floor, rule=settings.rule, classifier_cache=str(Path(cache_dir) / "classifiers"),
        sequential=settings.sequential, round_seeds=settings.round_seeds, max_seeds=settings.max_seeds,
    )
    return Probe(concept, engine(unlearned), probe_settings,
                 reference_engine=engine(reference) if reference is not None else None, labels=labels)


def zoo_concept(name: str) -> bool:
    """Whether ``name`` is a concept of the embedded zoo (which has default prompts and a judge)."""
    from .zoo import world

    try:
        world.concept_prompts(name)
    except (ValueError, KeyError, IndexError):
        return False
    return True


def default_judge(concept: Concept, zoo_original: bool) -> tuple[Any, str | None]:
    """The judge the calibrated rule counts a concept with when none is given, and its key.

    The zoo's digit judge for the zoo's concepts on the zoo's original model; else
    ``(None, None)``: the concept classifier decides.
    """
    if zoo_original and zoo_concept(concept.name):
        from .judges import zoo_digit_judge

        return zoo_digit_judge(concept.name), f"zoo:{concept.name}"
    return None, None
