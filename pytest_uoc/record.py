"""The reproducibility record: what a figure depends on, written into the JSON and HTML reports.

Benchmark users' first complaint is numbers nobody can reproduce (which judge version, which
threshold, which seeds, which model files). The record holds the package versions, the command
line, every setting, each model location's SHA-256 (``hashing``: a large file read once per
process) and, per test, what its probe ran with: scheduler class and config, steps, guidance,
seeds, ψ grid, device and dtype (``probe_record``); the judge's record is in the row already.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "model_files", "page_record", "probe_record", "run_record", "settings_dict", "versions"]

#: Packages whose version a figure can depend on (those not installed are left out).
PACKAGES = ("pytest-uoc", "pytest", "torch", "diffusers", "transformers", "timm", "torchmetrics", "numpy",
            "safetensors", "peft", "nudenet", "onnxruntime", "opencv-python-headless")


def versions() -> dict[str, str]:
    """Python's and each installed package's version (``PACKAGES``)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _location_path(location: str) -> Path | None:
    if location.startswith("zoo:"):
        from . import zoo

        name = str(zoo.resolve(location)).removeprefix("zoo:")
        try:
            return zoo.pipeline_path() if name == zoo.ORIGINAL else zoo.unet_path(name)
        except (ValueError, KeyError):
            return zoo.weights_dir() / "variants"
    return Path(location)


def model_files(settings: Any) -> dict[str, dict[str, Any]]:
    """Per model role (original, unlearned, reference): its location, the file or folder hashed, and SHA-256."""
    from .hashing import weights_sha256

    out: dict[str, dict[str, Any]] = {}
    for role in ("original", "unlearned", "reference"):
        location = getattr(settings, role, None)
        if not location:
            continue
        entry: dict[str, Any] = {"location": str(location)}
        path = _location_path(str(location))
        if path is not None and path.exists():
            entry["path"] = str(path.resolve())
            try:
                entry["sha256"] = weights_sha256(path)
            except OSError as exc:  # a record is never worth the run
                entry["sha256_error"] = str(exc)
        out[role] = entry
    return out


def run_record(settings: Any, *, command: Sequence[str] | None = None) -> dict[str, Any]:
    """The whole run's record: versions, command line, model files and their hashes."""
    return {"versions": versions(), "command": list(command if command is not None else sys.argv),
            "models": model_files(settings) if settings is not None else {}}


def settings_dict(settings: Any) -> dict[str, Any]:
    """Every setting's value (not where it came from), as the reports write them; {} without settings."""
    return {k: v for k, v in vars(settings).items() if k != "sources"} if settings is not None else {}


def page_record(settings: Any) -> dict[str, Any]:
    """What the HTML page shows of the run: ``run_record`` and the settings."""
    return {**run_record(settings), "settings": settings_dict(settings)}


def probe_record(probe: Any) -> dict[str, Any]:
    """What one probe ran with: scheduler class and config, steps, guidance, seeds, ψ grid, device, dtype."""
    engine = probe.engine
    scheduler = engine.original.scheduler
    unet = getattr(engine.original, "unet", None) or getattr(engine.original, "transformer", None)
    parameter = next(unet.parameters(), None) if unet is not None else None
    config: Mapping[str, Any] = dict(getattr(scheduler, "config", {}) or {})
    return {
        "scheduler": type(scheduler).__name__,
        "scheduler_config": {k: v for k, v in config.items() if not k.startswith("_")},
        "steps": engine.num_inference_steps, "guidance_scale": engine.guidance_scale,
        "seeds": list(probe.settings.seeds), "psis": list(probe.settings.psis),
        "device": None if parameter is None else str(parameter.device),
        "dtype": None if parameter is None else str(parameter.dtype).removeprefix("torch."),
    }
