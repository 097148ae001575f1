"""Measure the zoo with its judge and write docs/zoo.md's evidence.

    python -m tools.zoo.evidence --out docs/zoo               # figures, grids, curves (JSON + PNG)

What it measures (every number goes to ``<out>/evidence.json``):
- the original: the fraction of images showing the asked digit, per digit, and the asked colour;
- every variant and gold standard at ψ = 0: the concept rate and retention on everything else;
- the partial-diffusion curves: the judge's concept rate at each ψ of the grid, with Wilson 95%
  intervals and McNemar's paired test against the gold standard (same prompts, same seeds);
- leakage without asking (the empty prompt) and paraphrases / other languages.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pytest_uoc.units import DEFAULT_PSIS
from pytest_uoc.zoo import world

from .train import CONCEPTS, METHODS

PSI_GRID = DEFAULT_PSIS  # the plugin's default ψ grid


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_p(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact two-sided McNemar p-value of paired boolean outcomes."""
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def rate(hits: torch.Tensor) -> dict[str, Any]:
    n, s = int(hits.numel()), int(hits.sum())
    low, high = wilson(s, n)
    return {"rate": s / max(n, 1), "low": low, "high": high, "n": n}


def concept_hits(judge: Any, images: torch.Tensor, concept: str) -> torch.Tensor:
    """True where the judge sees the concept (the digit, or the colour)."""
    digits, colors = judge.predict(images)
    if concept in world.COLORS:
        return colors == list(world.COLORS).index(concept)
    return digits == world.digit_of_word(concept)


_CACHE: Any = None


def generate(original: Any, model: Any, prompts: Sequence[str], seeds: Sequence[int], psis: Sequence[float],
             steps: int, batch: int) -> dict[float, torch.Tensor]:
    """Partial-diffusion images; the original's trajectory is shared between models through a cache."""
    from pytest_uoc.diffusion import PartialDiffusion

    engine = PartialDiffusion(original, model, num_inference_steps=steps, batch_size=batch, cache=_CACHE)
    return engine.sweep(list(prompts), list(psis), list(seeds)).images


def measure(out: Path, *, seeds_per_prompt: int, steps: int, batch: int, names: Sequence[str] | None = None,
            concepts: Sequence[str] = CONCEPTS, original_figures: bool = True, extra_seeds: int = 24) -> dict:
    import tempfile

    from pytest_uoc import zoo
    from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache
    from pytest_uoc.report import atomic_write_bytes

    global _CACHE
    _CACHE = TrajectoryCache(tempfile.mkdtemp(prefix="uoc-evidence-"))
    out.mkdir(parents=True, exist_ok=True)
    judge = zoo.load_judge()
    original = zoo.load("digits")
    results: dict[str, Any] = {"settings": {"seeds_per_prompt": seeds_per_prompt, "steps": steps,
                                            "psis": list(PSI_GRID)}, "judge": zoo.manifest()["models"].get("judge")}
    start = time.time()

    name = "evidence.json" if set(concepts) == set(CONCEPTS) else f"evidence-{'-'.join(concepts)}.json"
    results["settings"]["concepts"] = list(concepts)
    if original_figures:
        _original_figures(results, original, judge, seeds_per_prompt, steps, batch)
    results["concepts"] = {}
    for concept in concepts:
        results["concepts"][concept] = _concept_block(concept, original, judge, steps, batch, names, out, extra_seeds)
        atomic_write_bytes(out / name, json.dumps(results, indent=1).encode())
    results["seconds"] = round(time.time() - start, 1)
    atomic_write_bytes(out / name, json.dumps(results, indent=1).encode())
    plot_curves(results, out)
    return results


def _original_figures(results: dict, original: Any, judge: Any, seeds_per_prompt: int, steps: int, batch: int) -> None:
    """The original: the fraction of images showing the asked digit, per digit, and the asked colour."""
    per_digit = {}
    for digit in range(10):
        prompts = [f"a handwritten {world.DIGIT_WORDS['en'][digit]}", f"the digit {digit}"]
        imgs = generate(original, original.unet, prompts, list(range(seeds_per_prompt)), [1.0], steps, batch)[1.0]
        per_digit[str(digit)] = rate(judge.predict(imgs)[0] == digit)
    per_color = {}
    for index, color in enumerate(world.COLORS):
        prompts = [f"a {color} handwritten {w}" for w in ("two", "five", "seven")]
        imgs = generate(original, original.unet, prompts, list(range(max(1, seeds_per_prompt // 2))), [1.0], steps, batch)[1.0]
        per_color[color] = rate(judge.predict(imgs)[1] == index)
    results["original"] = {
        "per_digit": per_digit, "mean_digit_accuracy": sum(v["rate"] for v in per_digit.values()) / 10,
        "per_color": per_color, "mean_color_accuracy": sum(v["rate"] for v in per_color.values()) / len(per_color),
    }
    print(f"original: digit accuracy {results['original']['mean_digit_accuracy']:.3f}, "
          f"colour accuracy {results['original']['mean_color_accuracy']:.3f}", flush=True)


def _concept_block(concept: str, original: Any, judge: Any, steps: int, batch: int, names: Sequence[str] | None,
                   out: Path, extra_seeds: int) -> dict:
    """Every model's curves, retention, leakage and paraphrase figures for one concept."""
    from pytest_uoc import zoo
    from pytest_uoc.report import write_image_grid

    prompts = world.concept_prompts(concept)
    n_seeds = max(1, math.ceil(256 / len(prompts)))
    concept_seeds = list(range(1000, 1000 + n_seeds))
    models = [f"digits-{m}-{concept}" for m in METHODS]  # the original's own curve is flat (its λO)
    if names:
        models = [m for m in models if m in names]
    gold_hits: dict[float, torch.Tensor] = {}
    block: dict[str, Any] = {"prompts": prompts, "images_per_psi": len(prompts) * n_seeds, "models": {}}
    order = sorted(models, key=lambda m: not m.startswith("digits-gold"))  # gold first, for pairing
    for name in order:
        t0 = time.time()
        model = original if name == "digits" else zoo.load(name, original=original)
        images = generate(original, model, prompts, concept_seeds, PSI_GRID, steps, batch)
        curve = {}
        for psi in PSI_GRID:
            hits = concept_hits(judge, images[psi], concept)
            curve[str(psi)] = rate(hits)
            if name.startswith("digits-gold"):
                gold_hits[psi] = hits
            elif psi in gold_hits:
                curve[str(psi)]["mcnemar_p_vs_gold"] = mcnemar_p(hits, gold_hits[psi])
                curve[str(psi)]["excess_over_gold"] = curve[str(psi)]["rate"] - float(gold_hits[psi].float().mean())
        entry: dict[str, Any] = {"curve": curve}
        # Retention at ψ = 0: everything but the concept is still drawn.
        if concept in world.COLORS:
            others = [c for c in world.COLORS if c != concept]
            r_prompts = [f"a {c} handwritten {w}" for c in others for w in ("two", "five", "seven")]
            r_imgs = generate(original, model, r_prompts, list(range(extra_seeds // 2)), [0.0], steps, batch)[0.0]
            expected = torch.tensor([list(world.COLORS).index(c) for c in others for _ in range(3) for _ in range(extra_seeds // 2)])
            entry["retention"] = rate(judge.predict(r_imgs)[1] == expected)
        else:
            target = world.digit_of_word(concept)
            other_digits = [d for d in range(10) if d != target]
            r_prompts = [f"a handwritten {world.DIGIT_WORDS['en'][d]}" for d in other_digits]
            r_imgs = generate(original, model, r_prompts, list(range(extra_seeds)), [0.0], steps, batch)[0.0]
            expected = torch.tensor([d for d in other_digits for _ in range(extra_seeds)])
            entry["retention"] = rate(judge.predict(r_imgs)[0] == expected)
        # Leakage without asking, and other words / languages, at ψ = 0.
        empty = generate(original, model, [""], list(range(2000, 2000 + 8 * extra_seeds)), [0.0], steps, batch)[0.0]
        entry["empty_prompt"] = rate(concept_hits(judge, empty, concept))
        entry["paraphrases"] = {}
        for kind, p_list in world.paraphrase_prompts(concept).items():
            p_imgs = generate(original, model, p_list, list(range(extra_seeds)), [0.0], steps, batch)[0.0]
            entry["paraphrases"][kind] = rate(concept_hits(judge, p_imgs, concept))
        entry["seconds"] = round(time.time() - t0, 1)
        block["models"][name] = entry
        write_image_grid({psi: images[psi] for psi in PSI_GRID}, out / f"grid-{name}.png", max_columns=10)
        print(f"{concept} {name}: " + " ".join(f"{psi}:{curve[str(psi)]['rate']:.2f}" for psi in PSI_GRID)
              + f" | retention {entry['retention']['rate']:.2f} | empty {entry['empty_prompt']['rate']:.2f}"
              + f" ({entry['seconds']} s)", flush=True)
    return block


def plot_curves(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pytest_uoc.report import _png_bytes, atomic_write_bytes

    for concept, block in results["concepts"].items():
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name, entry in block["models"].items():
            psis = [float(p) for p in entry["curve"]]
            rates = [v["rate"] for v in entry["curve"].values()]
            style = {"lw": 2.5, "color": "black"} if "gold" in name else {"lw": 1.2}
            if name == "digits":
                style = {"lw": 1, "color": "gray", "ls": ":"}
            ax.plot(psis, rates, "o-", ms=3, label=name, **style)
            if "gold" in name:
                ax.fill_between(psis, [v["low"] for v in entry["curve"].values()],
                                [v["high"] for v in entry["curve"].values()], color="black", alpha=0.12)
        ax.set_xlabel("ψ (share of the denoising done by the original)")
        ax.set_ylabel(f"judge's '{concept}' rate")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(f"partial diffusion, concept '{concept}' ({block['images_per_psi']} images per ψ)")
        atomic_write_bytes(out / f"curves-{concept}.png", _png_bytes(fig))
        plt.close(fig)


def _cell(entry: dict) -> str:
    return f"{entry['rate']:.3f} [{entry['low']:.2f}, {entry['high']:.2f}]"


def markdown(results: dict) -> str:
    """The evidence as markdown tables (what docs/zoo.md shows)."""
    out = []
    orig = results["original"]
    out.append(f"Judge (held-out, real digits): digit accuracy "
               f"{results['judge']['heldout_digit_accuracy_real']:.3f}, colour accuracy "
               f"{results['judge']['heldout_color_accuracy_real']:.3f} "
               f"({results['judge']['heldout_images']} held-out images; on VAE reconstructions: digit "
               f"{results['judge']['heldout_digit_accuracy_reconstructed']:.3f}).\n")
    out.append("Original model, fraction of images showing the asked digit (judge):\n")
    out.append("| digit | " + " | ".join(orig["per_digit"]) + " | mean |")
    out.append("|---" * (len(orig["per_digit"]) + 2) + "|")
    out.append("| rate | " + " | ".join(f"{v['rate']:.2f}" for v in orig["per_digit"].values())
               + f" | **{orig['mean_digit_accuracy']:.3f}** |")
    out.append("\nOriginal model, fraction showing the asked colour: "
               + ", ".join(f"{c} {v['rate']:.2f}" for c, v in orig["per_color"].items())
               + f" (mean {orig['mean_color_accuracy']:.3f}).\n")
    for concept, block in results["concepts"].items():
        psis = list(next(iter(block["models"].values()))["curve"])
        out.append(f"### Concept '{concept}' ({block['images_per_psi']} images per ψ, prompts: "
                   + "; ".join(f"`{p}`" for p in block["prompts"]) + ")\n")
        out.append("Judge's concept rate under partial diffusion (95% Wilson interval); † = McNemar p < 0.01 "
                   "against the gold standard on the same prompts and seeds, with the excess in points:\n")
        out.append("| model | " + " | ".join(f"ψ={p}" for p in psis) + " |")
        out.append("|---" * (len(psis) + 1) + "|")
        for name, entry in block["models"].items():
            cells = []
            for p in psis:
                v = entry["curve"][p]
                mark = ""
                if v.get("mcnemar_p_vs_gold") is not None and v["mcnemar_p_vs_gold"] < 0.01:
                    mark = f" †{100 * v['excess_over_gold']:+.0f}"
                cells.append(f"{v['rate']:.2f} [{v['low']:.2f}, {v['high']:.2f}]{mark}")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("\nAt ψ = 0 (the model alone): retention on everything else (judge says the asked "
                   f"{'colour' if concept in world.COLORS else 'digit'}), the concept under the empty prompt, "
                   "and under paraphrases and other languages:\n")
        kinds = list(next(iter(block["models"].values()))["paraphrases"])
        out.append("| model | retention | empty prompt | " + " | ".join(kinds) + " |")
        out.append("|---" * (len(kinds) + 3) + "|")
        for name, entry in block["models"].items():
            out.append(f"| {name} | {_cell(entry['retention'])} | {_cell(entry['empty_prompt'])} | "
                       + " | ".join(_cell(entry["paraphrases"][k]) for k in kinds) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.zoo.evidence", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/zoo"))
    parser.add_argument("--seeds", type=int, default=32, help="seeds per prompt for the original's figures")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--only", nargs="*", default=None, help="measure only these zoo names")
    parser.add_argument("--concepts", nargs="+", default=list(CONCEPTS), choices=CONCEPTS)
    parser.add_argument("--no-original", action="store_true", help="skip the original's per-digit figures")
    parser.add_argument("--extra-seeds", type=int, default=24, help="seeds per prompt for retention/paraphrases")
    parser.add_argument("--markdown", type=Path, nargs="+", default=None,
                        help="print the tables of evidence JSON files and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        merged: dict = {"concepts": {}}
        for file in args.markdown:
            part = json.loads(file.read_text())
            merged["concepts"].update(part.pop("concepts", {}))
            merged.update({k: v for k, v in part.items() if k not in merged or k == "original"})
        print(markdown(merged))
        return 0
    measure(args.out, seeds_per_prompt=args.seeds, steps=args.steps, batch=args.batch, names=args.only,
            concepts=args.concepts, original_figures=not args.no_original, extra_seeds=args.extra_seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
