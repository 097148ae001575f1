"""Which scorer can compare the unlearned model with the original's null finishes? (docs/metrics.md)

For one concept, seed set and zoo models, scores λP(ψ), both null finishes and the
gold standard's images with three classifiers and prints per ψ the mean score and
the paired excesses over the nulls:

- ``domain``: the paper's domain classifier (λO = 1 vs λU = 0);
- ``pure``: λO vs the original's own concept-free images (lower null at ψ = 0), from the original alone;
- ``mixed``: λO vs λU *and* the original's concept-free images (the probe's ``concept_classifier``).

    python scripts/calibration_scorers.py three 0 digits-gold-three digits-esd-three digits-conceal-three

Seed set k is seeds 32k .. 32k+31; settings as the example suite (25 steps, CFG 7.5).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import CONCEPTS, PSIS  # noqa: E402

from pytest_uoc import zoo  # noqa: E402
from pytest_uoc.concept import Concept  # noqa: E402
from pytest_uoc.diffusion import PartialDiffusion  # noqa: E402
from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache  # noqa: E402
from pytest_uoc.probe import Probe, ProbeSettings  # noqa: E402
from pytest_uoc.scoring import paired_bootstrap_diff, train_domain_classifier  # noqa: E402


def main(argv: list[str]) -> int:
    concept_name, k, names = argv[0], int(argv[1]), argv[2:]
    out = Path("runs/calibration-scorers")
    original = zoo.load("digits")
    cache = TrajectoryCache(out / "cache" / "trajectories")
    spec = CONCEPTS[concept_name]
    concept = Concept(concept_name, tuple(spec["prompts"]))
    seeds = tuple(range(32 * k, 32 * k + 32))
    gold = zoo.load(spec["gold"], original=original)

    def engine(model: object) -> PartialDiffusion:
        return PartialDiffusion(original, model, num_inference_steps=25, guidance_scale=7.5, batch_size=32,
                                cache=cache)

    for name in names:
        probe = Probe(concept, engine(zoo.load(name, original=original)),
                      ProbeSettings(seeds=seeds, psis=PSIS, classifier_cache=str(out / "cache" / "classifiers")),
                      reference_engine=engine(gold))
        start = time.perf_counter()
        train = probe.bank.training["unlearned"].get([0.0, 1.0])
        null0 = probe.bank.training["lower"].get([0.0])[0.0]
        groups = [s for _ in concept.prompts for s in probe.train_seeds]
        pure = train_domain_classifier(train[1.0], null0, groups=groups, cache_dir=str(out / "cache" / "classifiers"))
        images = {"U": probe.images(PSIS), "up": probe.null_images(PSIS, "upper"),
                  "lo": probe.null_images(PSIS, "lower"), "gold": probe.source_images(PSIS, "reference")}
        for label, classifier in (("domain", probe.classifier), ("pure", pure), ("mixed", probe.concept_classifier)):
            print(f"{name} [{label}] held-out accuracy {getattr(classifier, 'heldout_accuracy', None)}")
            for psi in PSIS:
                s = {key: classifier.probabilities(v[psi]).double().numpy() for key, v in images.items()}
                over_upper = paired_bootstrap_diff(s["U"], s["up"], confidence=1 - 0.05 / (len(PSIS) - 1))
                over_lower = paired_bootstrap_diff(s["U"], s["lo"])
                print(f"  psi {psi:.2f}: U {s['U'].mean():.2f} upper {s['up'].mean():.2f} lower {s['lo'].mean():.2f} "
                      f"gold {s['gold'].mean():.2f} | excess>upper [{over_upper.low:+.2f}, {over_upper.high:+.2f}] "
                      f"excess>lower [{over_lower.low:+.2f}, {over_lower.high:+.2f}]")
        print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
