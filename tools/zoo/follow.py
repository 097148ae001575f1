"""How well an original follows the prompt, read by the zoo's judge (issue 21).

    python -m tools.zoo.follow --work runs/zoo             # a trained (not installed) original
    python -m tools.zoo.follow --zoo                       # the shipped original

Samples with SD 1.4's PNDM scheduler configuration (50 steps, CFG 7.5 by default; for a
v-prediction original the same configuration with ``prediction_type="v_prediction"``) and reports:
the fraction of images showing the asked digit (prompts ``a handwritten <digit>``), per digit; the
fraction showing the asked colour (prompts ``a <colour> handwritten <w>`` for ``--color-digits``, by
default two, five and seven), per colour;
and how often a three is drawn for the other digits' prompts.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pytest_uoc.zoo import world
from pytest_uoc.zoo.build import PipelineSize, build_pipeline, sd14_scheduler

COLOR_DIGITS = ("two", "five", "seven")


def load_work(work: Path) -> Any:
    """The original trained in a ``train`` work folder (its VAE, text encoder and UNet), PNDM scheduler."""
    from .train import _load_state

    settings = json.loads((work / "manifest.json").read_text())["settings"]
    size = PipelineSize(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings["size"].items()})
    pipe = build_pipeline(world.all_words(), size, seed=settings["seed"], prediction_type=settings["prediction_type"],
                          unet_style=settings.get("unet_style", "pooled"), scheduler="pndm")
    _load_state(pipe.vae, work / "vae.safetensors")
    pipe.vae.register_to_config(**json.loads((work / "vae_scale.json").read_text()))
    _load_state(pipe.unet, work / "unet.safetensors")
    _load_state(pipe.text_encoder, work / "text_encoder.safetensors")
    return pipe


def load_shipped() -> Any:
    from pytest_uoc import zoo

    pipe = zoo.load("digits")
    pipe.scheduler = sd14_scheduler(pipe.scheduler.config.prediction_type)
    return pipe


@torch.no_grad()
def sample(pipe: Any, prompts: Sequence[str], seeds: Sequence[int], steps: int, guidance: float) -> torch.Tensor:
    """Images in [0, 1] for each (prompt, seed) pair, with classifier-free guidance."""
    from diffusers.utils.torch_utils import randn_tensor

    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    ids = pipe.tokenizer(list(prompts) + [""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    emb = pipe.text_encoder(ids)[0]
    cond, empty = emb[:-1], emb[-1:].expand(len(prompts), -1, -1)
    size = pipe.unet.config.sample_size
    x = torch.cat([randn_tensor((1, 4, size, size), generator=torch.Generator().manual_seed(s)) for s in seeds])
    x = x * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        xin = scheduler.scale_model_input(torch.cat([x, x]), t)
        u, c = pipe.unet(xin, t, encoder_hidden_states=torch.cat([empty, cond])).sample.chunk(2)
        x = scheduler.step(u + guidance * (c - u), t, x).prev_sample
    images = pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample
    return (images / 2 + 0.5).clamp(0, 1)


def judged(pipe: Any, judge: Any, prompts: Sequence[str], seeds: Sequence[int], steps: int, guidance: float,
           batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The judge's (digit, colour) for every prompt × seed, prompt-major."""
    pairs = [(p, s) for p in prompts for s in seeds]
    digits, colors = [], []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        images = sample(pipe, [p for p, _ in chunk], [s for _, s in chunk], steps, guidance)
        d, c = judge.predict(images)
        digits.append(d)
        colors.append(c)
    return torch.cat(digits), torch.cat(colors)


def measure(pipe: Any, *, seeds: Sequence[int], steps: int = 50, guidance: float = 7.5, batch: int = 64,
            colors: bool = True, color_digits: Sequence[str] = COLOR_DIGITS) -> dict:
    from pytest_uoc import zoo

    judge = zoo.load_judge()
    n = len(seeds)
    start = time.time()
    words = world.DIGIT_WORDS["en"]
    d, _ = judged(pipe, judge, [f"a handwritten {w}" for w in words], seeds, steps, guidance, batch)
    asked = torch.arange(10).repeat_interleave(n)
    per_digit = {str(k): float((d[asked == k] == k).float().mean()) for k in range(10)}
    others = asked != 3
    out: dict[str, Any] = {
        "seeds": [min(seeds), max(seeds)], "images_per_prompt": n, "steps": steps, "guidance": guidance,
        "scheduler": dict(pipe.scheduler.config),
        "per_digit": per_digit, "digit_accuracy": float((d == asked).float().mean()),
        "three_from_other_digits": float((d[others] == 3).float().mean()),
        "three_from_other_digits_per_prompt": {words[k]: float((d[asked == k] == 3).float().mean())
                                                for k in range(10) if k != 3},
        "drawn_digit_histogram": torch.bincount(d, minlength=10).tolist(),
    }
    if colors:
        names = list(world.COLORS)
        prompts = [f"a {c} handwritten {w}" for c in names for w in color_digits]
        dc, cc = judged(pipe, judge, prompts, seeds, steps, guidance, batch)
        asked_c = torch.arange(len(names)).repeat_interleave(len(color_digits) * n)
        asked_d = torch.tensor([world.digit_of_word(w) for w in color_digits]).repeat_interleave(n).repeat(len(names))
        out["per_color"] = {c: float((cc[asked_c == k] == k).float().mean()) for k, c in enumerate(names)}
        out["color_accuracy"] = float((cc == asked_c).float().mean())
        out["digit_accuracy_coloured_prompts"] = {w: float((dc[asked_d == world.digit_of_word(w)]
                                                            == world.digit_of_word(w)).float().mean())
                                                  for w in color_digits}
        out["color_prompts"] = prompts
        out["three_from_coloured_prompts"] = float((dc == 3).float().mean())
    out["seconds"] = round(time.time() - start, 1)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.zoo.follow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--work", type=Path, help="a train work folder holding the original's stage outputs")
    source.add_argument("--zoo", action="store_true", help="the shipped original")
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=64, help="seeds per prompt")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--no-colors", action="store_true")
    parser.add_argument("--color-digits", nargs="+", default=list(COLOR_DIGITS),
                        help="digit words of the colour prompts (a <colour> handwritten <word>)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_shipped() if args.zoo else load_work(args.work)
    figures = measure(pipe, seeds=range(args.seed_start, args.seed_start + args.seeds), steps=args.steps,
                      guidance=args.guidance, batch=args.batch, colors=not args.no_colors,
                      color_digits=args.color_digits)
    figures["model"] = "shipped digits" if args.zoo else str(args.work)
    text = json.dumps(figures, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
