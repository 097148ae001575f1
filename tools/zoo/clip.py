"""Train the zoo's tiny CLIP: a ``CLIPModel`` that reads the digits world's images and captions.

    python -m tools.zoo.clip --out pytest_uoc/zoo/weights/clip --steps 5000 --threads 1 --seed 0

(from the repository root, about 16 minutes on one core; needs scikit-learn:
``pip install -e ".[zoo]"``). The shipped folder's ``training.json`` holds the held-out
figures (digit accuracy 0.994 on real and VAE-reconstructed held-out images). It lets
``clip_judge`` (CLIP zero-shot) run offline on the zoo, so that a real CLIP judge's
code path is tested against the zoo's trained digit judge.

Contrastive training on ``load_digit_images()`` (a held-out fifth of the source
digits, the same split as the zoo's judge) with captions of the world's templates
(the digit in every language and as a numeral, the colour, or both). An image and a
caption match when every digit and colour the caption names is the image's, so the
targets of CLIP's two cross-entropies are spread over all matching pairs of the
batch (many images share a digit). Half the images are VAE reconstructions by the
zoo's own VAE, and every image is lightly shifted, scaled, rotated, dimmed and
noised, so that it reads generated images too. The tokenizer is the zoo pipeline's.
Written atomically: a temporary folder, then a rename.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pytest_uoc import zoo
from pytest_uoc.judges.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from pytest_uoc.zoo import world

from .data import DigitImages, load_digit_images

#: Sizes of the two towers (about 0.4 M parameters; ~1.5 MB in float32). Patches of 8×8 pixels
#: (2×2 of the 8×8 source digits): 16 image tokens, a quarter of the CPU cost of 4×4 patches.
WIDTH = 64
LAYERS = 3
HEADS = 4
PATCH = 8
IMAGE_SIZE = 32


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def tokenizer_dir() -> Path:
    return zoo.weights_dir() / "digits" / "tokenizer"


def build_model(tokenizer: Any, seed: int, *, width: int = WIDTH, layers: int = LAYERS, patch: int = PATCH) -> Any:
    """A tiny CLIPModel sized for 32×32 images and the zoo tokenizer's vocabulary and length."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    text = {"vocab_size": len(tokenizer), "hidden_size": width, "intermediate_size": width * 4,
            "num_hidden_layers": layers, "num_attention_heads": HEADS,
            "max_position_embeddings": int(tokenizer.model_max_length),
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    vision = {"image_size": IMAGE_SIZE, "patch_size": patch, "hidden_size": width, "intermediate_size": width * 4,
              "num_hidden_layers": layers, "num_attention_heads": HEADS}
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=width))


def caption_bank() -> tuple[list[str], torch.Tensor]:
    """Every caption of the world and which (digit, colour) pairs it fits: a captions × (10·colours) bool matrix."""
    colors = list(world.COLORS)
    bank = sorted({c for d in range(10) for color in colors for c in world.captions(d, color)})
    index = {c: i for i, c in enumerate(bank)}
    fits = torch.zeros(len(bank), 10 * len(colors), dtype=torch.bool)
    for d in range(10):
        for k, color in enumerate(colors):
            for caption in world.captions(d, color):
                fits[index[caption], d * len(colors) + k] = True
    return bank, fits


@torch.no_grad()
def reconstruct(images: torch.Tensor) -> torch.Tensor:
    """The images through the zoo pipeline's VAE (posterior mean), as generated images look."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(zoo.weights_dir() / "digits" / "vae"), local_files_only=True).float()
    vae.eval()
    return torch.cat([
        (vae.decode(vae.encode(images[i:i + 256] * 2 - 1).latent_dist.mean).sample / 2 + 0.5).clamp(0, 1)
        for i in range(0, len(images), 256)
    ])


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small random shifts, scaling and rotation, dimming and noise."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.12
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2.5 / 16)  # ±2.5 pixels in [-1, 1] coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = x * (0.75 + 0.35 * torch.rand(n, 1, 1, 1, generator=gen))
    x = x + torch.rand(n, 1, 1, 1, generator=gen) * 0.06 * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


def normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def soft_cross_entropy(logits: torch.Tensor, fits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row against the uniform distribution over its matching columns."""
    target = fits.float() / fits.float().sum(dim=1, keepdim=True)
    return -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()


def train(data: DigitImages, reconstructions: torch.Tensor, train_idx: torch.Tensor, *, steps: int, seed: int,
          batch: int = 64, lr: float = 2e-3, **size: int) -> tuple[Any, Any]:
    """Contrastive training; returns the model and the tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir()), local_files_only=True)
    model = build_model(tokenizer, seed, **size)
    bank, fits = caption_bank()
    # Padded to the longest caption only: the causal text tower pools at the end token, so padding after it
    # changes nothing but the cost.
    ids = tokenizer(bank, padding=True, truncation=True, return_tensors="pt").input_ids
    colors = len(data.color_names)
    pair = data.digits * colors + data.colors
    index = {c: i for i, c in enumerate(bank)}

    def class_sets(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bank rows of one drawn template and naming: (digit, colour) pairs, digits, colours, in label order."""
        def pick(options: Sequence[Any]) -> Any:
            return options[int(torch.randint(0, len(options), (1,), generator=gen))]

        lang = pick(["numeral", *world.LANGUAGES])
        names = [str(d) if lang == "numeral" else world.DIGIT_WORDS[lang][d] for d in range(10)]
        with_color, no_color = pick(world.TEMPLATES_WITH_COLOR), pick(world.TEMPLATES_NO_COLOR)
        color_only = pick(world.COLOR_ONLY)
        both = [with_color.format(d=n, c=c) for n in names for c in data.color_names]
        return (torch.tensor([index[c] for c in both]), torch.tensor([index[no_color.format(d=n)] for n in names]),
                torch.tensor([index[color_only.format(c=c)] for c in data.color_names]))
    # The captions each (digit, colour) pair has, to draw one per image.
    per_pair = [torch.nonzero(fits[:, p]).squeeze(1) for p in range(fits.shape[1])]
    gen = torch.Generator().manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    model.train()
    start = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = train_idx[torch.randint(0, len(train_idx), (batch,), generator=gen)]
        use_rec = torch.rand(batch, generator=gen) < 0.5
        x = torch.where(use_rec.view(-1, 1, 1, 1), reconstructions[idx], data.images[idx])
        x = normalise(augment(x, gen))
        pairs = pair[idx]
        choice = [per_pair[int(p)][int(torch.randint(0, len(per_pair[int(p)]), (1,), generator=gen))]
                  for p in pairs]
        captions = torch.stack(choice)
        match = fits[captions][:, pairs].T  # image i × caption j: caption j fits image i
        image = model.get_image_features(pixel_values=x)
        text = model.get_text_features(input_ids=ids[captions])
        image, text = (t if isinstance(t, torch.Tensor) else t.pooler_output for t in (image, text))
        image = F.normalize(image, dim=-1)
        logits = model.logit_scale.exp() * image @ F.normalize(text, dim=-1).T
        loss = (soft_cross_entropy(logits, match) + soft_cross_entropy(logits.T, match.T)) / 2
        # Zero-shot as the judge runs it: every image against one template's 40 (digit, colour) captions,
        # 10 digit captions and 4 colour captions, in one language drawn per step.
        sets = class_sets(gen)
        for (captions_of, target) in ((sets[0], pairs), (sets[1], data.digits[idx]), (sets[2], data.colors[idx])):
            text = model.get_text_features(input_ids=ids[captions_of])
            text = text if isinstance(text, torch.Tensor) else text.pooler_output
            logits = model.logit_scale.exp() * image @ F.normalize(text, dim=-1).T
            loss = loss + F.cross_entropy(logits, target) / 3
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 250 == 0 or step == steps - 1:
            log(f"step {step}/{steps} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} "
                f"({time.time() - start:.0f} s)")
    model.eval()
    return model, tokenizer


def preprocessor_config() -> dict[str, Any]:
    """A CLIPImageProcessor configuration for 32×32 images with OpenAI CLIP's normalisation."""
    return {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": IMAGE_SIZE},
            "resample": 3, "do_center_crop": True, "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(OPENAI_CLIP_MEAN),
            "image_std": list(OPENAI_CLIP_STD), "do_convert_rgb": True}


def save(model: Any, out: Path, figures: dict[str, Any], check: Any = None) -> None:
    """config.json, model.safetensors, the tokenizer and preprocessor configs into ``out``, atomically.

    ``check(folder)`` (the held-out evaluation) runs on the written folder before the
    rename; what it returns joins ``figures`` in ``training.json``.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    for file in sorted(tokenizer_dir().iterdir()):
        shutil.copy2(file, tmp / file.name)
    (tmp / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(), indent=2) + "\n")
    if check is not None:
        figures.update(check(tmp))
    (tmp / "training.json").write_text(json.dumps(figures, indent=1) + "\n")
    if out.exists():
        out.rename(old)
    for file in tmp.iterdir():
        file.chmod(0o644)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def evaluate(folder: Path, data: DigitImages, reconstructions: torch.Tensor, held: torch.Tensor) -> dict[str, Any]:
    """Held-out zero-shot figures of the saved folder, through ``clip_judge`` (what users run)."""
    from pytest_uoc.judges.clip import clip_judge

    figures: dict[str, Any] = {}
    colors = list(world.COLORS)
    digit_texts = [f"a handwritten {w}" for w in world.DIGIT_WORDS["en"]]
    color_texts = [f"a {c} digit" for c in colors]
    # One judge per text against the rest: its probability is that text's softmax share, so argmax classifies.
    digit_judges = [clip_judge(folder, [t], [o for o in digit_texts if o != t], device="cpu") for t in digit_texts]
    color_judges = [clip_judge(folder, [t], [o for o in color_texts if o != t], device="cpu") for t in color_texts]
    concept_judges = {c: clip_judge(folder, *concept_texts(c), device="cpu") for c in ("three", "red")}
    digits, cols = data.digits[held], data.colors[held]
    for name, images in (("real", data.images[held]), ("reconstructed", reconstructions[held])):
        for kind, judges, truth in (("digit", digit_judges, digits), ("color", color_judges, cols)):
            probs = torch.stack([judge.probabilities(images) for judge in judges], 1)
            figures[f"heldout_{kind}_accuracy_{name}"] = round((probs.argmax(1) == truth).float().mean().item(), 4)
        for concept, judge in concept_judges.items():
            flags = torch.from_numpy(judge(images))
            truth = cols == colors.index(concept) if concept in colors else digits == world.digit_of_word(concept)
            figures[f"heldout_{concept}_flag_rate_{name}"] = round(flags[truth].float().mean().item(), 4)
            figures[f"heldout_not_{concept}_flag_rate_{name}"] = round(flags[~truth].float().mean().item(), 4)
    figures["heldout_images"] = int(held.sum())
    return figures


def concept_texts(concept: str) -> tuple[list[str], list[str]]:
    """A zoo concept's prompts, and those of every other digit (or colour) as the others."""
    if concept in world.COLORS:
        rivals = [c for c in world.COLORS if c != concept]
    else:
        digit = world.digit_of_word(concept)
        rivals = [w for d, w in enumerate(world.DIGIT_WORDS["en"]) if d != digit]
    return world.concept_prompts(concept), [p for r in rivals for p in world.concept_prompts(r)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.zoo.clip", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(zoo.__file__).parent / "weights" / "clip")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=WIDTH, help="hidden size of both towers")
    parser.add_argument("--layers", type=int, default=LAYERS, help="layers of each tower")
    parser.add_argument("--patch", type=int, default=PATCH, help="patch size of the vision tower (pixels)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    data = load_digit_images()
    source = torch.arange(len(data)) % (len(data) // len(data.color_names))
    held = source % 5 == 0
    reconstructions = reconstruct(data.images)
    model, _ = train(data, reconstructions, torch.nonzero(~held).squeeze(1), steps=args.steps, seed=args.seed,
                     batch=args.batch, lr=args.lr, width=args.width, layers=args.layers, patch=args.patch)
    seconds = round(time.time() - start, 1)
    figures = {"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed, "width": args.width,
               "layers": args.layers, "patch": args.patch, "seconds": seconds,
               "threads": torch.get_num_threads(),
               "command": f"python -m tools.zoo.clip --out {args.out} --steps {args.steps} --batch {args.batch} "
                          f"--lr {args.lr} --width {args.width} --layers {args.layers} --patch {args.patch} "
                          f"--threads {args.threads} --seed {args.seed}"}
    save(model, args.out, figures, check=lambda folder: evaluate(folder, data, reconstructions, held))
    log(f"trained in {seconds} s; {json.dumps(figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
