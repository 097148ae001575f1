"""The domain classifier: separation, determinism, seed-disjoint split, cache, errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from pytest_uoc.scoring import DomainClassifier, train_domain_classifier
from pytest_uoc.scoring import classifier as classifier_module

torch.set_num_threads(1)

# The blob check: 6 epochs of the small recipe at 32 px (about 3-4 s on one CPU thread).
BLOB_SETTINGS = {"image_size": 32, "epochs": 6, "seed": 0}
# Cheap settings for tests that only need *a* trained classifier.
CHEAP = {"image_size": 16, "epochs": 1, "seed": 0}


def blob_images(n: int, seed: int, blob: bool, size: int = 16) -> torch.Tensor:
    """Dim noise; with ``blob``, a bright 6×6 square at a random place."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=gen) * 0.3
    if blob:
        for i in range(n):
            cy, cx = torch.randint(4, size - 4, (2,), generator=gen).tolist()
            images[i, :, cy - 3:cy + 3, cx - 3:cx + 3] = 0.9
    return images


@pytest.fixture(scope="module")
def domains() -> tuple[torch.Tensor, torch.Tensor]:
    return blob_images(32, 1, True), blob_images(32, 2, False)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uoc-classifier-cache")


@pytest.fixture(scope="module")
def blob_classifier(domains, cache_dir) -> DomainClassifier:
    original, unlearned = domains
    return train_domain_classifier(original, unlearned, cache_dir=cache_dir, **BLOB_SETTINGS)


def small_pairs(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    return blob_images(n, 5, True), blob_images(n, 6, False)


def test_classifier_separates_the_two_domains(blob_classifier, domains) -> None:
    original, unlearned = domains
    assert blob_classifier.heldout_accuracy >= 0.9
    assert blob_classifier.train_accuracy >= 0.9
    assert (blob_classifier.n_train, blob_classifier.n_heldout) == (48, 16)
    assert blob_classifier.train_seconds > 0
    assert not blob_classifier.from_cache
    fresh_original, fresh_unlearned = blob_images(16, 7, True), blob_images(16, 8, False)
    assert blob_classifier.probabilities(fresh_original).mean() > 0.7
    assert blob_classifier.probabilities(fresh_unlearned).mean() < 0.3
    assert blob_classifier.settings["recipe"] == "small"
    assert blob_classifier.settings["optimizer"] == "adam"


def test_probabilities_and_features(blob_classifier, domains) -> None:
    original, _ = domains
    probs = blob_classifier.probabilities(original[:5])
    feats = blob_classifier.features(original[:5])
    assert probs.shape == (5,)
    assert bool(((probs >= 0) & (probs <= 1)).all())
    assert feats.shape == (5, 512)
    with torch.no_grad():
        logits = blob_classifier.model.get_classifier()(feats)
    torch.testing.assert_close(torch.softmax(logits, 1)[:, 1], probs)
    assert not probs.is_inference()
    # Batching does not change results; one channel is accepted.
    torch.testing.assert_close(blob_classifier.probabilities(original[:5], batch_size=2), probs)
    assert blob_classifier.probabilities(original[:2, :1]).shape == (2,)
    assert blob_classifier.to_dict()["backbone"] == "resnet18"


def test_training_is_deterministic_bit_for_bit(blob_classifier, domains) -> None:
    original, unlearned = domains
    again = train_domain_classifier(original, unlearned, **BLOB_SETTINGS)
    assert not again.from_cache
    probe = torch.cat([original[:8], unlearned[:8]])
    assert torch.equal(again.probabilities(probe), blob_classifier.probabilities(probe))
    assert again.heldout_accuracy == blob_classifier.heldout_accuracy


def test_training_leaves_the_global_rng_alone() -> None:
    original, unlearned = small_pairs()
    state = torch.get_rng_state()
    train_domain_classifier(original, unlearned, **CHEAP)
    assert torch.equal(torch.get_rng_state(), state)


def test_cache_hit_does_not_retrain(blob_classifier, domains, cache_dir, monkeypatch) -> None:
    original, unlearned = domains
    files = list(cache_dir.glob("classifier-*.pt"))
    assert len(files) == 1
    assert blob_classifier.cache_path == files[0]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier was retrained")

    monkeypatch.setattr(classifier_module, "_train", no_training)
    cached = train_domain_classifier(original, unlearned, cache_dir=cache_dir, **BLOB_SETTINGS)
    assert cached.from_cache
    assert cached.train_seconds == blob_classifier.train_seconds
    assert cached.heldout_accuracy == blob_classifier.heldout_accuracy
    assert torch.equal(cached.probabilities(original[:4]), blob_classifier.probabilities(original[:4]))
    assert not list(cache_dir.glob("*.tmp"))


def test_cache_key_changes_with_images_groups_and_settings(tmp_path) -> None:
    original, unlearned = small_pairs()
    first = train_domain_classifier(original, unlearned, cache_dir=tmp_path, **CHEAP)
    changed = original.clone()
    changed[0, 0, 0, 0] = 0.123
    second = train_domain_classifier(changed, unlearned, cache_dir=tmp_path, **CHEAP)
    assert not second.from_cache
    assert first.cache_path != second.cache_path
    assert len(list(tmp_path.glob("classifier-*.pt"))) == 2
    settings = first.settings
    groups = list(range(16))
    key = classifier_module._cache_key(original, unlearned, groups, settings)
    assert first.cache_path.name == f"classifier-{key}.pt"
    assert classifier_module._cache_key(original, unlearned, [g // 2 for g in groups], settings) != key
    assert classifier_module._cache_key(original, unlearned, groups, settings | {"lr": 0.01}) != key
    assert classifier_module._cache_key(unlearned, original, groups, settings) != key


def test_corrupt_cache_file_warns_and_retrains(tmp_path) -> None:
    original, unlearned = small_pairs()
    first = train_domain_classifier(original, unlearned, cache_dir=tmp_path, **CHEAP)
    first.cache_path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="ignoring corrupt domain-classifier cache file"):
        second = train_domain_classifier(original, unlearned, cache_dir=tmp_path, **CHEAP)
    assert not second.from_cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = train_domain_classifier(original, unlearned, cache_dir=tmp_path, **CHEAP)
    assert third.from_cache
    assert torch.equal(third.probabilities(original[:3]), second.probabilities(original[:3]))


def test_heldout_split_keeps_each_seed_on_one_side() -> None:
    groups = [seed for seed in range(10) for _ in range(3)]  # 3 prompts per seed
    train, held, n_held = classifier_module._split_groups(groups, 0.25, seed=4)
    train_seeds = {groups[i] for i in train}
    held_seeds = {groups[i] for i in held}
    assert not train_seeds & held_seeds
    assert n_held == len(held_seeds) == 3  # 10 * 0.25 = 2.5, rounded half up
    assert len(train) + len(held) == 30


def test_training_with_groups_holds_out_whole_seeds() -> None:
    original, unlearned = small_pairs()
    groups = [i // 2 for i in range(16)]  # 8 seeds, 2 prompts each
    trained = train_domain_classifier(original, unlearned, groups=groups, **CHEAP)
    assert trained.n_heldout == 2 * 2 * 2  # 2 seeds × 2 prompts × 2 classes
    assert trained.n_train == 6 * 2 * 2


def test_paper_recipe_settings_and_triplet_term() -> None:
    original, unlearned = small_pairs()
    trained = train_domain_classifier(original, unlearned, recipe="paper", image_size=16, epochs=1)
    s = trained.settings
    assert (s["optimizer"], s["lr"], s["momentum"], s["batch_size"]) == ("sgd", 1e-3, 0.9, 32)
    assert (s["triplet_margin"], s["triplet_weight"], s["max_shift"]) == (1.0, 1.0, 0)
    default = classifier_module._resolve_settings("paper", "resnet18", None, None, None, None, 512, 0.25, 0, None)
    assert (default["epochs"], default["image_size"]) == (10, 224)


def test_triplet_loss_hand_computed() -> None:
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([1, 1, 0, 0])
    # anchors 0 and 1: d(a, p) = 2, d(a, n) = 1 -> 2 - 1 + 1 = 2; anchors 2, 3: 0 - 1 + 1 = 0.
    loss = classifier_module._triplet_loss(features, labels, 1.0, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(1.0, abs=1e-4)


def test_shift_augmentation_only_translates() -> None:
    batch = torch.rand(4, 3, 8, 8)
    shifted = classifier_module._shift(batch, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == batch.shape
    # no flips: a translated copy agrees with the original on some overlapping window
    for i in range(4):
        assert any(
            torch.equal(shifted[i, :, 2:6, 2:6], batch[i, :, 2 + dy:6 + dy, 2 + dx:6 + dx])
            for dy in range(-2, 3) for dx in range(-2, 3)
        )


@pytest.mark.parametrize(("backbone", "size", "dim"), [("efficientnet_b0", 16, 1280), ("densenet121", 32, 1024)])
def test_other_backbones(backbone: str, size: int, dim: int) -> None:
    original, unlearned = blob_images(8, 5, True), blob_images(8, 6, False)
    trained = train_domain_classifier(original, unlearned, backbone=backbone, image_size=size, epochs=1)
    assert trained.backbone == backbone
    assert trained.features(original[:2]).shape == (2, dim)


def test_pretrained_weights_from_a_local_file(tmp_path) -> None:
    import timm

    imagenet = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": imagenet.state_dict()}, path)
    model = classifier_module._create_model("resnet18")
    classifier_module._load_pretrained(model, path)
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert model.fc.out_features == 2  # the 1000-way head was ignored
    original, unlearned = small_pairs()
    trained = train_domain_classifier(original, unlearned, pretrained_path=path, **CHEAP)
    assert trained.settings["pretrained_sha256"] == classifier_module._file_sha256(path)

    wrong = tmp_path / "effnet.pth"
    torch.save(timm.create_model("efficientnet_b0", pretrained=False).state_dict(), wrong)
    with pytest.raises(ValueError, match="does not match the resnet18 backbone"):
        classifier_module._load_pretrained(classifier_module._create_model("resnet18"), wrong)


def test_bad_input_errors(tmp_path) -> None:
    original, unlearned = small_pairs()
    with pytest.raises(ValueError, match=r"unknown backbone 'vit'; allowed: resnet18, densenet121, efficientnet_b0"):
        train_domain_classifier(original, unlearned, backbone="vit")
    with pytest.raises(ValueError, match="unknown recipe 'huge'"):
        train_domain_classifier(original, unlearned, recipe="huge")
    with pytest.raises(ValueError, match=r"at least 8 images per class \(λO and λU\), got 7"):
        train_domain_classifier(original[:7], unlearned[:7])
    with pytest.raises(ValueError, match=r"held-out split needs at least 2 seeds .* at least 6 distinct seeds, got 4"):
        train_domain_classifier(original, unlearned, groups=[i % 4 for i in range(16)])
    with pytest.raises(ValueError, match="one seed per image pair \\(16 pairs\\), got 3 groups"):
        train_domain_classifier(original, unlearned, groups=[0, 1, 2])
    with pytest.raises(ValueError, match="original_images has 16 items and unlearned_images has 15"):
        train_domain_classifier(original, unlearned[:15])
    with pytest.raises(ValueError, match="heldout_fraction must lie strictly between 0 and 1"):
        train_domain_classifier(original, unlearned, heldout_fraction=1.0)
    with pytest.raises(FileNotFoundError, match="pretrained_path .* does not exist"):
        train_domain_classifier(original, unlearned, pretrained_path=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="image_size for densenet121 must be at least 32"):
        train_domain_classifier(original, unlearned, backbone="densenet121", image_size=16)
    nan = unlearned.clone()
    nan[3, 1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="unlearned_images contain NaN: the model produced non-finite output"):
        train_domain_classifier(original, nan)
    with pytest.raises(ValueError, match=r"original_images must have 1 or 3 channels .* got C=4"):
        train_domain_classifier(torch.rand(16, 4, 8, 8), unlearned)
