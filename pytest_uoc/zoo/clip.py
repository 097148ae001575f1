"""The zoo's tiny CLIP: a ``CLIPModel`` folder trained on the digits world, for ``clip_judge`` offline.

    from pytest_uoc.judges import clip_judge
    judge = clip_judge(clip_dir(), concept=["a handwritten three"], others=["a handwritten eight"])

Trained by ``tools/zoo/clip.py`` (outside the package); its held-out figures are in
the folder's ``training.json``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CLIP_FOLDER", "clip_dir"]

CLIP_FOLDER = "clip"
_REBUILD = "python -m tools.zoo.clip --out pytest_uoc/zoo/weights/clip --steps 5000 --threads 1 --seed 0"


def clip_dir() -> Path:
    """The shipped tiny CLIP's folder (under ``zoo.weights_dir()``); FileNotFoundError with the rebuild command."""
    from . import weights_dir

    folder = weights_dir() / CLIP_FOLDER
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the zoo's tiny CLIP is missing from {folder}; rebuild it with `{_REBUILD}` "
            "(from a clone of the repository, with scikit-learn installed)"
        )
    return folder
