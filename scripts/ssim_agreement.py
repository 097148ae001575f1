"""SSIM (torchmetrics, reflect-padded borders) against the hand-written valid-only SSIM it replaced, on zoo images.

    python scripts/ssim_agreement.py   (from the repository root; about a minute on 2 cores)
"""
import sys

import numpy as np

from pytest_uoc import zoo
from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.scoring.retention import ssim

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests"))
from test_scoring_retention import naive_ssim

orig = zoo.load("digits")
esd = zoo.load("zoo:digits-esd-red", original=orig)
prompts = ["a yellow handwritten two", "a yellow digit"]
seeds = list(range(16, 32))
eng = PartialDiffusion(orig, esd.unet, num_inference_steps=25, batch_size=32)
sw = eng.sweep(prompts, [0.0, 1.0], seeds)
a, b = sw[1.0].double(), sw[0.0].double()
new = 1 - ssim(a, b).numpy()
old = np.array([1 - np.mean([naive_ssim(a[i, c].numpy(), b[i, c].numpy(), 11, reflect=False) for c in range(3)]) for i in range(len(a))])
print("images", a.shape, "new mean", new.mean(), "old mean", old.mean(), "max abs diff", np.abs(new - old).max())
