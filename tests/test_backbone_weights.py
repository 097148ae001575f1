"""The domain classifier's starting weights: a given file, timm's weights cached on disk, or random (warned)."""

from __future__ import annotations

import hashlib
import types
import warnings
from pathlib import Path

import pytest
import torch

from pytest_uoc.concept import Concept
from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.probe import Probe, ProbeSettings
from pytest_uoc.scoring.backbone_weights import find_backbone_weights, random_init_warning


def _timm_state(seed: int = 0) -> dict[str, torch.Tensor]:
    import timm

    with torch.random.fork_rng():  # the global RNG of later tests in this worker stays as it was
        torch.manual_seed(seed)
        return timm.create_model("resnet18", pretrained=False).state_dict()  # with its 1000-class head, as timm ships it


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No Hugging Face or torch hub weights on disk (whatever this machine holds)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch-hub"))
    yield tmp_path
    torch.hub.set_dir(previous)


def _hf_cached(root: Path, repo: str, filename: str, state: dict) -> Path:
    """A file laid out as huggingface_hub's cache keeps it (refs/main -> snapshots/<commit>/file)."""
    from safetensors.torch import save_file

    folder = root / "hf" / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / filename))
    return snapshot / filename


def test_given_weights_win(empty_caches, tmp_path):
    found = find_backbone_weights("resnet18", tmp_path / "mine.pt")
    assert found.source == "given" and found.path == tmp_path / "mine.pt"


def test_nothing_on_disk_means_random_weights_and_the_advice_names_the_repository(empty_caches):
    found = find_backbone_weights("resnet18")
    assert found.path is None and found.source == "none" and found.wanted == "timm/resnet18.a1_in1k"
    advice = random_init_warning("resnet18", found)
    assert "--uoc-backbone-weights PATH" in advice and "huggingface-cli download timm/resnet18.a1_in1k" in advice
    assert "never downloads" in advice


def test_timm_weights_in_the_hugging_face_cache_are_found_offline(empty_caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _hf_cached(empty_caches, "timm/resnet18.a1_in1k", "model.safetensors", _timm_state())
    found = find_backbone_weights("resnet18")
    assert found.source == "huggingface cache" and found.path == path


def test_timm_weights_in_the_torch_hub_folder_are_found(empty_caches):
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(_timm_state(), checkpoints / "resnet18_a1_0-d63eafa0.pth")
    found = find_backbone_weights("resnet18")
    assert found.source == "torch hub cache" and found.path == checkpoints / "resnet18_a1_0-d63eafa0.pth"


def _probe(tiny_pipe, tiny_unet, **settings) -> Probe:
    engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=2)
    return Probe(Concept("three", ("a red handwritten three", "a handwritten three")), engine,
                 ProbeSettings(seeds=tuple(range(16)), psis=(0.0, 0.5), n_boot=50, **settings))


def test_the_probe_trains_from_cached_weights_with_its_recipe_and_size(empty_caches, tiny_pipe, tiny_unet):
    path = _hf_cached(empty_caches, "timm/resnet18.a1_in1k", "model.safetensors", _timm_state(3))
    probe = _probe(tiny_pipe, tiny_unet, classifier_size=48)
    classifier = probe.classifier
    assert probe.backbone_weights.source == "huggingface cache"
    assert classifier.settings["pretrained_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert classifier.image_size == 48 and classifier.settings["recipe"] == "small"
    assert classifier.device == probe.engine.device  # trained where the pipeline runs
    summary = probe.summary()["classifier"]
    assert summary["weights"] == "huggingface cache" and summary["weights_path"] == str(path)


def test_random_weights_are_warned_about_once_on_real_sized_images(empty_caches, tiny_pipe, tiny_unet, monkeypatch):
    from pytest_uoc import probe as probe_module

    monkeypatch.setattr(probe_module, "_WARNED_RANDOM_INIT", set())
    small = _probe(tiny_pipe, tiny_unet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert small.backbone_weights.path is None  # 16 px: random initialisation is what was measured, no warning
    for _ in range(2):
        real = _probe(tiny_pipe, tiny_unet)
        real.engine = types.SimpleNamespace(height=512, width=512, device=torch.device("cpu"))
        if not probe_module._WARNED_RANDOM_INIT:
            with pytest.warns(UserWarning, match=r"resnet18 backbone starts from random weights.*--uoc-backbone-weights"):
                assert real.backbone_weights.source == "none"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert real.backbone_weights.source == "none"  # once per process and backbone
    assert probe_module._WARNED_RANDOM_INIT == {"resnet18"}
