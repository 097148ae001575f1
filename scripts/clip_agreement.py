"""Agreement of ``clip_judge`` (the zoo's tiny CLIP, zero-shot) with the zoo's digit judge on generated images.

    python scripts/clip_agreement.py --steps 25 --seeds 32 --threads 1      (from the repository root)

For each concept ("three", "red", "eight"): the concept's prompts (``world.concept_prompts``,
the prompts a zoo concept gets by default) go to the original ``zoo:digits`` and to every
shipped variant that unlearned the concept (``manifest.json``), one image per seed, the
prompts taken in turn (for "eight", the anchor of "three", the three-unlearned variants
asked for a three); the original also draws the rival prompts (every other digit's, or
colour's, prompts: the texts the CLIP judge weighs the concept against), so that both
judges see negatives as well as positives. Each image is judged by
``zoo_digit_judge(concept)`` and by ``clip_judge(clip_dir(), concept_prompts, rival prompts)``;
printed: per model and per concept the share each judge flags and the share where they agree.
Images come from the package's own loader (``zoo.load``), ``output_type="pt"``, guidance 7.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_uoc import zoo  # noqa: E402
from pytest_uoc.judges import clip_judge, zoo_digit_judge  # noqa: E402
from pytest_uoc.zoo import world  # noqa: E402
from pytest_uoc.zoo.clip import clip_dir  # noqa: E402
from tools.zoo.train import ANCHORS  # noqa: E402  (the zoo's anchor of each unlearned concept)

rival_prompts = world.rival_prompts


def variants_of(concept: str) -> list[str]:
    """The shipped variants that unlearned ``concept`` (manifest order)."""
    models = zoo.manifest()["models"]
    return [name for name in zoo.names()[1:] if models.get(name, {}).get("concept") == concept]


@torch.no_grad()
def generate(pipe, prompts: list[str], seeds: int, steps: int) -> torch.Tensor:
    """One image per seed 0..seeds-1, spreading the seeds evenly over ``prompts``."""
    chosen = [prompts[(i * len(prompts)) // seeds] for i in range(seeds)]
    generators = [torch.Generator().manual_seed(i) for i in range(seeds)]
    return pipe(chosen, num_inference_steps=steps, guidance_scale=7.5, generator=generators,
                output_type="pt").images.float().cpu()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=32, help="images per model (one per seed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--concepts", nargs="+", default=["three", "red", "eight"])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    original = zoo.load("digits")
    pipes = {"digits": original}
    results = {}
    for concept in args.concepts:
        prompts, rivals = world.concept_prompts(concept), rival_prompts(concept)
        clip = clip_judge(clip_dir(), prompts, rivals, device="cpu")
        trusted = zoo_digit_judge(concept)
        runs = [("digits", prompts), ("digits (rival prompts)", rivals)]
        runs += [(name, prompts) for name in variants_of(concept)]
        # The anchor of an unlearned concept (ANCHORS: three → eight): what the concept's variants draw when
        # asked for the concept they unlearned (Concept Ablation maps three to eight).
        for unlearned in (c for c, anchor in ANCHORS.items() if anchor == concept):
            runs += [(f"{name} ({unlearned} prompts)", world.concept_prompts(unlearned))
                     for name in variants_of(unlearned)]
        rows, all_zoo, all_clip = {}, [], []
        for label, texts in runs:
            name = label.split(" ")[0]
            if name not in pipes:
                pipes[name] = zoo.load(name, original=original)
            images = generate(pipes[name], texts, args.seeds, args.steps)
            z = torch.as_tensor(trusted(images)).bool().cpu()
            c = torch.from_numpy(clip(images))
            all_zoo.append(z)
            all_clip.append(c)
            rows[label] = {"n": len(z), "zoo_flags": z.float().mean().item(), "clip_flags": c.float().mean().item(),
                           "agreement": (z == c).float().mean().item()}
            print(f"  {concept:6s} {label:38s} n={len(z):3d} zoo {rows[label]['zoo_flags']:.3f} "
                  f"clip {rows[label]['clip_flags']:.3f} agree {rows[label]['agreement']:.3f}", flush=True)
        z, c = torch.cat(all_zoo), torch.cat(all_clip)
        both = (z & c).sum().item()
        results[concept] = {"n": len(z), "zoo_flags": z.float().mean().item(), "clip_flags": c.float().mean().item(),
                            "agreement": (z == c).float().mean().item(), "both_flag": both,
                            "zoo_only": (z & ~c).sum().item(), "clip_only": (~z & c).sum().item(), "models": rows}
        r = results[concept]
        print(f"{concept}: agreement {r['agreement']:.3f} on {r['n']} images; zoo judge flags {r['zoo_flags']:.3f}, "
              f"clip judge flags {r['clip_flags']:.3f} (both {both}, zoo only {r['zoo_only']}, "
              f"clip only {r['clip_only']})", flush=True)
    print(f"settings: steps {args.steps}, {args.seeds} seeds per model, guidance 7.5; {time.time() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "concepts": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
