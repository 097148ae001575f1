"""Session state: loaded models, probes per concept, and the results to report.

One ``UocSession`` lives in ``config.stash`` for the whole pytest run. It
loads every model location once, hands out one probe per (models, concept,
settings), and collects one result row per concept test for the terminal
summary, the JSON report and, under xdist, the controller. No torch at import.
"""

from __future__ import annotations

import contextvars
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .concept import Concept
from .config import Settings

__all__ = ["CURRENT_REQUEST", "UocSession", "resolve_device"]

#: The fixture request of the running test, set by an autouse fixture so that
#: assertions called without ``probe=`` find the test's probe.
CURRENT_REQUEST: contextvars.ContextVar[Any] = contextvars.ContextVar("uoc_current_request", default=None)


def resolve_device(setting: str, worker: str | None = None) -> str:
    """``auto`` → ``cuda:N`` (xdist worker N modulo the GPU count) or ``cpu``."""
    import torch

    if setting == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        index = int(worker[2:]) if worker and worker.startswith("gw") else 0
        return f"cuda:{index % torch.cuda.device_count()}"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--uoc-device {setting}: CUDA is not available on this machine")
    return setting


#: ``--uoc-mix-branches`` values as ``PartialDiffusion(mix_branches=...)`` takes them.
MIX_SETTING: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


def resolve_dtype(setting: str, device: str) -> Any:
    import torch

    if setting == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, setting)


@dataclass
class UocSession:
    """Everything pytest-uoc keeps for one pytest run."""

    settings: Settings
    rootdir: Path
    worker: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    _models: dict[tuple[str, str], Any] = field(default_factory=dict)
    _probes: dict[tuple, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    #: Node ids of the tests that finished; ``unfinished`` is set when a run is interrupted.
    finished: set[str] = field(default_factory=set)
    unfinished: list[str] = field(default_factory=list)
    #: Files and bytes the cache size limit evicted at the end of the run.
    evicted: tuple[int, int] = (0, 0)
    report_error: str | None = None

    @property
    def device(self) -> str:
        return resolve_device(self.settings.device, self.worker)

    @property
    def cache_dir(self) -> Path:
        if self.settings.cache_dir:
            return Path(self.settings.cache_dir)
        return self.rootdir / ".pytest_cache" / "uoc"

    # -- models ------------------------------------------------------------------------

    def load_original(self, location: str | None = None) -> Any:
        """The original pipeline at ``location`` (default: the configured one), loaded once."""
        location = location or self.settings.original
        if not location:
            raise ValueError("no original model: give --uoc-original LOCATION (a diffusers folder or zoo:NAME)")
        key = ("original", location)
        if key not in self._models:
            from . import zoo
            from .diffusion.loading import load_pipeline

            dtype = resolve_dtype(self.settings.dtype, self.device)
            if location.startswith(zoo.ZOO_PREFIX):
                pipe = zoo.load(location).to(self.device, dtype)
            else:
                pipe = load_pipeline(location, dtype=dtype).to(self.device)
            pipe.set_progress_bar_config(disable=True)
            self._models[key] = pipe
        return self._models[key]

    def load_unlearned(self, location: str, original: Any, role: str = "unlearned", kind: str | None = None) -> Any:
        """An unlearned (or reference) model next to ``original``, loaded once per location and kind.

        ``kind`` (what the file holds, see ``load_unlearned``) defaults to ``--uoc-unlearned-kind``
        for the unlearned model and to ``auto`` for the reference.
        """
        if kind is None:
            kind = getattr(self.settings, "unlearned_kind", "auto") if role == "unlearned" else "auto"
        key = (f"{role}:{id(original)}", location) if kind == "auto" else (f"{role}:{id(original)}", location, kind)
        if key not in self._models:
            from . import zoo
            from .diffusion.families import denoiser_of
            from .diffusion.loading import load_unlearned

            if location.startswith(zoo.ZOO_PREFIX):
                pipe = zoo.load(location, original=original)
                denoiser = denoiser_of(original)  # the UNet (SD 1.x/2.x, SDXL) or transformer (SD3, Flux)
                pipe.to(denoiser.device, denoiser.dtype)
            else:
                pipe = load_unlearned(original, location, kind=kind)
            self._models[key] = pipe
        return self._models[key]

    # -- probes -------------------------------------------------------------------------

    def probe(self, concept: Concept, original: Any, unlearned: Any, reference: Any | None,
              settings: Settings, labels: dict[str, str]) -> Any:
        """The probe for this concept and these models, created once per session."""
        seeds = settings.seeds if settings.explicit("seeds") or concept.seeds is None else concept.seeds
        from .config import check_seeds_for_prompts

        check_seeds_for_prompts(tuple(seeds), len(concept.prompts))  # a SettingError (ValueError) when too few
        key = (id(original), id(unlearned), id(reference), concept, seeds, settings.steps, settings.guidance_scale,
               settings.psis, settings.backbone, settings.backbone_weights, settings.accuracy_floor,
               settings.batch_size, settings.mix_branches, settings.compile, settings.rule)
        if key not in self._probes:
            from .diffusion import PartialDiffusion
            from .diffusion.trajectory_cache import TrajectoryCache
            from .probe import Probe, ProbeSettings

            cache = TrajectoryCache(self.cache_dir / "trajectories")

            def engine(other: Any) -> PartialDiffusion:
                return PartialDiffusion(original, other, num_inference_steps=settings.steps,
                                        guidance_scale=settings.guidance_scale, batch_size=settings.batch_size,
                                        cache=cache, mix_branches=MIX_SETTING[settings.mix_branches],
                                        compile_unet=settings.compile)

            probe_settings = ProbeSettings(
                seeds=tuple(seeds), psis=settings.psis, backbone=settings.backbone,
                backbone_weights=settings.backbone_weights, accuracy_floor=settings.accuracy_floor, rule=settings.rule,
                classifier_cache=str(self.cache_dir / "classifiers"),
            )
            self._probes[key] = Probe(concept, engine(unlearned), probe_settings,
                                      reference_engine=engine(reference) if reference is not None else None,
                                      labels=labels)
        return self._probes[key]

    # -- results ------------------------------------------------------------------------

    def record(self, row: dict[str, Any]) -> None:
        self.results.append(row)

    def worker_id(self) -> str | None:
        return self.worker or os.environ.get("PYTEST_XDIST_WORKER")
