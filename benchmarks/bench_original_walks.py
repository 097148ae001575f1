"""How many UNet evaluations one calibrated verdict costs, with λO (ψ = 1) swept apart or with the grid.

    python benchmarks/bench_original_walks.py [--cache]

"apart" reads the held-out accuracy first (λO of the scoring seeds swept on its own, as verdicts
did before λO joined the grid's sweep), then the verdict; "with the grid" is the verdict alone.
``--cache``: with the persistent trajectory cache (the plugin's default), which already serves the
original's walk to both. Zoo ESD-x, concept three, 10 steps, 16 seeds, ψ 0, 0.15, 0.35, 0.55.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _evals(apart: bool, cache: bool) -> tuple[str, int]:
    from pytest_uoc import zoo
    from pytest_uoc.concept import Concept
    from pytest_uoc.diffusion import PartialDiffusion
    from pytest_uoc.judges import zoo_digit_judge
    from pytest_uoc.probe import Probe, ProbeSettings
    from pytest_uoc.stores import TrajectoryCache

    original = zoo.load("digits")
    unlearned = zoo.load("digits-esd-three", original=original)
    with tempfile.TemporaryDirectory() as folder:
        store = TrajectoryCache(Path(folder) / "trajectories") if cache else None
        engine = PartialDiffusion(original, unlearned, num_inference_steps=10, batch_size=32, cache=store)
        probe = Probe(Concept("three", ("a handwritten three", "the digit 3")), engine,
                      ProbeSettings(seeds=tuple(range(16)), psis=(0.0, 0.15, 0.35, 0.55, 1.0)),
                      judge=zoo_digit_judge("three"))
        if apart:
            probe.heldout_accuracy  # noqa: B018 - λO swept on its own first
        verdict = probe.verdict(0.55, 0.2)
        return verdict.kind, probe.cost.unet_evals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", action="store_true", help="with the persistent trajectory cache")
    args = parser.parse_args()
    apart = _evals(True, args.cache)
    grid = _evals(False, args.cache)
    print(f"trajectory cache: {'on' if args.cache else 'off'}")
    print(f"λO swept apart:     {apart[1]} UNet evaluations ({apart[0]})")
    print(f"λO with the grid:   {grid[1]} UNet evaluations ({grid[0]})")
    print(f"ratio: {grid[1] / apart[1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
