"""The SD safety checker judge and the ImageNet judge, on small models built here (offline, no mocks).

The safety checker is diffusers' own ``StableDiffusionSafetyChecker`` on a tiny CLIP vision
tower, its concept embeddings set so that one chosen image matches a concept; the ImageNet
classifiers are a tiny transformers ResNet and timm's ``test_resnet``, their heads set so
that an image's top classes are known (the pooled features' difference between two images
decides between "church" and "tench"; "garbage truck" sits in between).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pytest_uoc.hashing import weights_sha256
from pytest_uoc.judges import JudgeUnavailable, imagenet_judge, judge_flags, safety_checker_judge
from pytest_uoc.judges.base import to_uint8_rgb
from pytest_uoc.judges.imagenet import imagenet_classes_for

transformers = pytest.importorskip("transformers")
pytest.importorskip("diffusers")
timm = pytest.importorskip("timm")

CHURCH, TENCH, TRUCK = 497, 0, 569  # ImageNet-1k indices (timm's label names)
LABELS = {0: "tench, Tinca tinca", 1: "church, church building", 2: "garbage truck, dustcart", 3: "parachute, chute",
          4: "cassette player"}


def _images() -> torch.Tensor:
    """Four 40×48 images: a red/green split (the chosen one), noise, a grey ramp and a blue field."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 40, 48, generator=g)
    images[0] = 0.0
    images[0, 0, :, :24] = 1.0
    images[0, 1, :, 24:] = 1.0
    images[2] = torch.linspace(0, 1, 48).view(1, 1, 48).expand(3, 40, 48)
    images[3] = torch.tensor([0.1, 0.2, 0.9]).view(3, 1, 1).expand(3, 40, 48)
    return images


# --- the SD safety checker ------------------------------------------------------------------------


def _tiny_checker() -> tuple[object, object]:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(vision_config=dict(tower, image_size=32, patch_size=8),
                        text_config=dict(tower, vocab_size=99, max_position_embeddings=16, bos_token_id=0,
                                         eos_token_id=1, pad_token_id=1),
                        projection_dim=16)
    checker = StableDiffusionSafetyChecker(config).eval()
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return checker, extractor


def _embeddings(checker, extractor, images: torch.Tensor) -> torch.Tensor:
    """The checker's normalised image embeddings, from the 8-bit images as the pipeline hands them over."""
    from PIL import Image

    pixels = extractor([Image.fromarray(a) for a in to_uint8_rgb(images)], return_tensors="pt").pixel_values
    with torch.no_grad():
        embeds = checker.visual_projection(checker.vision_model(pixels)[1])
    return torch.nn.functional.normalize(embeds)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> SimpleNamespace:
    """An SD-shaped folder whose checker flags image 0 (concept 5 is its embedding) and no other image."""
    checker, extractor = _tiny_checker()
    images = _images()
    embeds = _embeddings(checker, extractor, images)
    others = float((embeds[1:] @ embeds[0]).max())
    assert others < 0.99, "the chosen image's embedding must stand apart for the test to mean anything"
    with torch.no_grad():
        checker.concept_embeds.copy_(torch.randn(17, 16))
        checker.concept_embeds[5] = embeds[0]
        checker.concept_embeds_weights.fill_(2.0)  # a cosine never exceeds 2: no other concept fires
        checker.concept_embeds_weights[5] = (1.0 + others) / 2
        checker.special_care_embeds.copy_(torch.randn(3, 16))
        checker.special_care_embeds_weights.fill_(2.0)
    folder = tmp_path_factory.mktemp("sd") / "sd-tiny"
    checker.save_pretrained(folder / "safety_checker")
    extractor.save_pretrained(folder / "feature_extractor")
    return SimpleNamespace(folder=folder, checker=checker, extractor=extractor, images=images, embeds=embeds)


def test_safety_checker_from_folder_flags_the_matching_image(sd_folder) -> None:
    judge = safety_checker_judge(sd_folder.folder, device="cpu")
    before = sd_folder.images.clone()
    flags = judge_flags(judge, sd_folder.images)
    assert flags.tolist() == [True, False, False, False]
    assert torch.equal(sd_folder.images, before)  # the checker blacks out its copies, never the judge's input
    assert judge(sd_folder.images[1:]).tolist() == [False, False, False]
    assert judge(sd_folder.images[:0]).tolist() == []


def test_safety_checker_from_pipeline_object(sd_folder) -> None:
    pipeline = SimpleNamespace(safety_checker=sd_folder.checker, feature_extractor=sd_folder.extractor)
    judge = safety_checker_judge(pipeline)
    assert judge(sd_folder.images).tolist() == [True, False, False, False]
    assert judge.record.weights == "pipeline" and judge.record.weights_sha256 is None


def test_safety_checker_applies_the_special_care_adjustment(sd_folder) -> None:
    # image 2's concept threshold sits 0.005 above its cosine: alone it does not fire; a special-care
    # concept firing lowers every threshold by 0.01 (the checker's own rule), and then it does
    checker = copy.deepcopy(sd_folder.checker)
    cosine = float(sd_folder.embeds[2] @ sd_folder.embeds[2])
    with torch.no_grad():
        checker.concept_embeds[7] = sd_folder.embeds[2]
        checker.concept_embeds_weights[7] = cosine + 0.005
    pipeline = SimpleNamespace(safety_checker=checker, feature_extractor=sd_folder.extractor)
    assert safety_checker_judge(pipeline)(sd_folder.images).tolist() == [True, False, False, False]
    with torch.no_grad():
        checker.special_care_embeds[1] = sd_folder.embeds[2]
        checker.special_care_embeds_weights[1] = 0.5
    assert safety_checker_judge(pipeline)(sd_folder.images).tolist() == [True, False, True, False]


def test_safety_checker_record_carries_the_weights_hash(sd_folder) -> None:
    record = safety_checker_judge(sd_folder.folder, device="cpu").record
    import diffusers

    assert record.name == "safety_checker_judge"
    assert record.version == f"diffusers {diffusers.__version__}"
    assert record.weights == str(sd_folder.folder / "safety_checker")
    assert record.weights_sha256 == weights_sha256(sd_folder.folder / "safety_checker")
    assert len(record.weights_sha256) == 64
    assert record.threshold is None and "concept_embeds_weights" in record.extra["rule"]
    assert record.to_dict()["rule"] == record.extra["rule"]


def test_safety_checker_missing_parts_are_named(sd_folder, tmp_path) -> None:
    partial = tmp_path / "no-extractor"
    shutil.copytree(sd_folder.folder / "safety_checker", partial / "safety_checker")
    with pytest.raises(JudgeUnavailable, match="no feature_extractor/") as caught:
        safety_checker_judge(partial)
    assert str(partial) in str(caught.value) and "safety_checker/" not in str(caught.value).split(":")[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(JudgeUnavailable, match="no safety_checker/ and no feature_extractor/"):
        safety_checker_judge(tmp_path / "empty")
    with pytest.raises(JudgeUnavailable, match="no SD folder at"):
        safety_checker_judge(str(tmp_path / "absent"))
    empty_checker = tmp_path / "no-weights"
    (empty_checker / "safety_checker").mkdir(parents=True)
    shutil.copytree(sd_folder.folder / "feature_extractor", empty_checker / "feature_extractor")
    with pytest.raises(JudgeUnavailable, match="cannot load the safety checker"):
        safety_checker_judge(empty_checker)
    with pytest.raises(JudgeUnavailable, match="loaded without its safety_checker"):
        safety_checker_judge(SimpleNamespace(safety_checker=None, feature_extractor=sd_folder.extractor))


# --- ImageNet classifiers -------------------------------------------------------------------------


def _set_head(linear: torch.nn.Linear, feats: torch.Tensor, church: int, tench: int, truck: int) -> None:
    """Logits: church = +d·(f - m), tench = -d·(f - m), truck = 0, the rest -50 (d, m from two images' features)."""
    d = feats[0] - feats[1]
    middle = (feats[0] + feats[1]) / 2
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(-50.0)
        linear.weight[church], linear.bias[church] = d, -(d @ middle)
        linear.weight[tench], linear.bias[tench] = -d, d @ middle
        linear.bias[truck] = 0.0


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A tiny transformers ResNet with five ImageNet labels: image 0 -> church > truck > tench; others reversed."""
    from PIL import Image
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                          id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    model = ResNetForImageClassification(config).eval()
    processor = ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)
    images = _images()[[0, 1]]
    pixels = processor(images=[Image.fromarray(a) for a in to_uint8_rgb(images)], return_tensors="pt").pixel_values
    with torch.no_grad():
        feats = model.resnet(pixels).pooler_output.flatten(1)
    _set_head(model.classifier[1], feats, church=1, tench=0, truck=2)
    folder = tmp_path_factory.mktemp("hf") / "resnet-tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def timm_file(tmp_path_factory) -> Path:
    """timm's test_resnet with a 1000-class head, saved as a torchvision-style file named after its architecture."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=1000).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    images = _images()[[0, 1]]
    pixels = torch.stack([transform(Image.fromarray(a)) for a in to_uint8_rgb(images)])
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(pixels), pre_logits=True)
    _set_head(model.fc, feats, church=CHURCH, tench=TENCH, truck=TRUCK)
    path = tmp_path_factory.mktemp("timm") / "test_resnet-0123abcd.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize(("classes", "top_k", "expected"), [
    (["church"], 1, [True, False]),
    (["tench"], 1, [False, True]),
    (["garbage truck"], 1, [False, False]),
    (["garbage truck"], 2, [True, True]),
    (["church"], 2, [True, False]),
    (["church"], 3, [True, True]),
    (["church", "tench"], 1, [True, True]),
])
def test_transformers_flag_follows_top_k(hf_folder, classes, top_k, expected) -> None:
    judge = imagenet_judge(hf_folder, classes, top_k=top_k, device="cpu")
    assert judge_flags(judge, _images()[[0, 1]]).tolist() == expected


def test_transformers_record_and_top_classes(hf_folder) -> None:
    judge = imagenet_judge(str(hf_folder), ["Church"], device="cpu")
    assert judge.top_classes(_images()[[0, 1]])[:, 0].tolist() == [1, 0]
    record = judge.record
    assert record.name == "imagenet_judge"
    assert record.version == f"transformers {transformers.__version__}"
    assert record.weights == str(hf_folder) and record.weights_sha256 == weights_sha256(hf_folder)
    assert record.classes == ("1:church, church building",) and record.extra == {"top_k": 1}
    assert judge(_images()[:0]).tolist() == []


@pytest.mark.parametrize(("classes", "indices"), [
    (["church"], (1,)),
    (["Church Building"], (1,)),
    (["CHURCH, church building"], (1,)),
    ("dustcart", (2,)),
    (["garbage_truck"], (2,)),
    ([3, "tench"], (3, 0)),
    ([np.int64(4)], (4,)),
    (["chute", "parachute"], (3,)),
])
def test_class_names_resolve_by_synonym_case_and_index(hf_folder, classes, indices) -> None:
    judge = imagenet_judge(hf_folder, classes, device="cpu")
    assert judge.indices == indices


def test_unknown_class_names_suggest_close_ones(hf_folder) -> None:
    with pytest.raises(ValueError, match="close names: 'church'") as caught:
        imagenet_judge(hf_folder, ["chruch"], device="cpu")
    assert "chruch" in str(caught.value)
    with pytest.raises(ValueError, match="no close name"):
        imagenet_judge(hf_folder, ["xylophone"], device="cpu")
    with pytest.raises(ValueError, match="out of range"):
        imagenet_judge(hf_folder, [5], device="cpu")
    with pytest.raises(ValueError, match="top_k"):
        imagenet_judge(hf_folder, ["church"], top_k=0, device="cpu")
    assert imagenet_classes_for("Church", hf_folder) == [1]
    with pytest.raises(ValueError, match="close names: 'tench'"):
        imagenet_classes_for("trench", hf_folder)


def test_timm_file_named_after_its_architecture(timm_file) -> None:
    images = _images()[[0, 1]]
    judge = imagenet_judge(timm_file, ["church"], device="cpu")  # timm's ImageNet names: a 1000-class head
    assert judge.indices == (CHURCH,)
    assert judge.top_classes(images)[:, 0].tolist() == [CHURCH, TENCH]
    assert judge(images).tolist() == [True, False]
    assert imagenet_judge(timm_file, ["dustcart"], top_k=2, device="cpu")(images).tolist() == [True, True]
    assert imagenet_judge(timm_file, [TENCH], device="cpu")(images).tolist() == [False, True]
    record = judge.record
    assert record.version == f"timm {timm.__version__}"
    assert record.weights_sha256 == weights_sha256(timm_file)
    assert record.classes == ("497:church, church building",)
    assert imagenet_classes_for("garbage truck", timm_file) == [TRUCK]


def test_timm_safetensors_with_arch_and_timm_folder(timm_file, tmp_path) -> None:
    from safetensors.torch import save_file

    state = torch.load(timm_file, weights_only=True)
    loose = tmp_path / "weights.safetensors"
    save_file(state, loose)
    images = _images()[[0, 1]]
    assert imagenet_judge(loose, ["church"], arch="test_resnet", device="cpu")(images).tolist() == [True, False]
    with pytest.raises(JudgeUnavailable, match="give arch="):
        imagenet_judge(loose, ["church"], device="cpu")
    with pytest.raises(JudgeUnavailable, match="is not a timm model name"):
        imagenet_judge(loose, ["church"], arch="no_such_net", device="cpu")
    with pytest.raises(JudgeUnavailable, match="no classifier for test_efficientnet"):
        imagenet_judge(loose, ["church"], arch="test_efficientnet", device="cpu")
    extra = tmp_path / "test_resnet.extra.safetensors"  # a tag timm does not know: the architecture's name
    save_file({**state, "stray.weight": torch.zeros(2)}, extra)
    with pytest.raises(JudgeUnavailable, match="do not fit timm's ResNet \\(unexpected stray.weight\\)"):
        imagenet_judge(extra, ["church"], device="cpu")
    folder = tmp_path / "timm-folder"
    folder.mkdir()
    model = timm.create_model("test_resnet", pretrained=False, num_classes=1000)
    (folder / "config.json").write_text(json.dumps({"architecture": "test_resnet", "num_classes": 1000,
                                                    "pretrained_cfg": model.pretrained_cfg}))
    with pytest.raises(JudgeUnavailable, match="model.safetensors or pytorch_model.bin"):
        imagenet_judge(folder, ["church"], device="cpu")
    shutil.copy(loose, folder / "model.safetensors")
    assert imagenet_judge(folder, ["church"], device="cpu")(images).tolist() == [True, False]
    assert imagenet_classes_for("tench", folder) == [TENCH]


def test_missing_or_wrong_weights_are_unavailable(hf_folder, tmp_path) -> None:
    with pytest.raises(JudgeUnavailable, match="no file or folder at") as caught:
        imagenet_judge(tmp_path / "absent", ["church"])
    assert str(tmp_path / "absent") in str(caught.value)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(JudgeUnavailable, match="has no config.json"):
        imagenet_judge(bare, ["church"])
    no_processor = tmp_path / "no-processor"
    shutil.copytree(hf_folder, no_processor)
    (no_processor / "preprocessor_config.json").unlink()
    with pytest.raises(JudgeUnavailable, match="no preprocessor_config.json"):
        imagenet_judge(no_processor, ["church"])
    no_weights = tmp_path / "no-weights"
    shutil.copytree(hf_folder, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(JudgeUnavailable, match="cannot load an image classifier"):
        imagenet_judge(no_weights, ["church"])
    text = tmp_path / "resnet50.txt"
    text.write_text("not weights")
    with pytest.raises(JudgeUnavailable, match="not a weights file"):
        imagenet_judge(text, ["church"])
