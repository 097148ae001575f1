"""What colour the zoo's models draw when asked for red (docs/zoo.md, "What the shipped zoo shows").

    python scripts/zoo_colours.py

For the original (asked for red and for yellow) and the gold standard retrained without red (asked
for "a red handwritten two" and "a red digit"): 16 images each (seeds 1000-1015, 25 steps of the
zoo's scheduler, CFG 7.5), the zoo judge's mean colour probabilities (red, green, blue, yellow), the
share it calls red, and the mean colour of the stroke pixels (brightest channel above 0.4).
"""

from __future__ import annotations

import torch

from pytest_uoc import zoo
from pytest_uoc.judges import zoo_digit_judge

CASES = (("original", "a red handwritten two"), ("original", "a yellow handwritten two"),
         ("gold standard (red)", "a red handwritten two"), ("gold standard (red)", "a red digit"))


def main() -> None:
    torch.set_num_threads(2)
    original = zoo.load("digits")
    models = {"original": original, "gold standard (red)": zoo.load("digits-gold-red", original=original)}
    judge = zoo.load_judge()
    is_red = zoo_digit_judge("red", model=judge)
    for name, prompt in CASES:
        generators = [torch.Generator().manual_seed(1000 + i) for i in range(16)]
        images = models[name]([prompt] * 16, num_inference_steps=25, guidance_scale=7.5, generator=generators,
                              output_type="pt").images
        with torch.no_grad():
            probabilities = judge(images)[1].softmax(1)
        stroke = images.max(1).values > 0.4
        colour = [float(((images[:, k] * stroke).sum((1, 2)) / stroke.sum((1, 2))).mean()) for k in range(3)]
        red = float(is_red(images).float().mean())
        print(f"{name:20s} {prompt!r:28s} judge probabilities {[round(v, 2) for v in probabilities.mean(0).tolist()]} "
              f"called red {red:.2f}  stroke RGB {[round(v, 2) for v in colour]}")


if __name__ == "__main__":
    main()
