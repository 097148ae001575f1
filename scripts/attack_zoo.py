"""The learned recovery attacks on the embedded zoo: share of drawings that show the concept, and the gate's verdicts.

    python scripts/attack_zoo.py --attack inversion --models digits-gold-three digits-esd-three --concept three \
        --seeds 0-31 --cache runs/attacks
    python scripts/attack_zoo.py --attack prompt_attack --models digits-gold-red digits-esd-red --concept red

For each unlearned model: the attack (concept inversion, or adversarial prompt search) against it, the
original and (``--reference``, default the concept's gold standard) the gold standard, each with what was
learned against it, scored by the zoo's judge on the scoring seeds (the second half of ``--seeds``). Prints
one row per model with the gate's verdict (``scoring.attack_verdict.decide_attack``) with the gold standard
(paired gap) and without it (the unlearned model's share against ``--ccs-max``), and writes ``--out`` (JSON,
after every model, with each model's per-drawing values). With ``--cache`` what was learned and drawn is
kept: the original's and the gold standard's are learned once for all models, and a re-run only scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch

    from pytest_uoc import zoo
    from pytest_uoc.attacks.inversion import InversionSettings
    from pytest_uoc.attacks.prompt_search import PromptSearchSettings
    from pytest_uoc.concept import Concept
    from pytest_uoc.config import parse_seeds
    from pytest_uoc.diffusion import PartialDiffusion
    from pytest_uoc.judges import zoo_digit_judge
    from pytest_uoc.probe import Probe, ProbeSettings
    from pytest_uoc.scoring.attack_verdict import decide_attack
    from pytest_uoc.zoo import world

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attack", choices=("inversion", "prompt_attack"), default="inversion")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--concept", default="three")
    parser.add_argument("--reference", default=None, help="gold standard (default digits-gold-CONCEPT; 'none': none)")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-31"))
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--attack-steps", type=int, default=None, help="the attack's steps (default: its own)")
    parser.add_argument("--lr", type=float, default=None, help="the attack's learning rate (default: its own)")
    parser.add_argument("--tokens", type=int, default=None, help="prompt search: tokens prepended (default: its own)")
    parser.add_argument("--attack-seed", type=int, default=0, help="seed of the attack's own draws (timesteps, noise)")
    parser.add_argument("--ccs-max", type=float, default=0.2, help="the gate's ccs_max (default: its default, 0.2)")
    parser.add_argument("--skip-plain", action="store_true",
                        help="do not draw the unlearned models' own ψ = 0 images (the same for every attack: "
                             "attack_tables.py --plain-from takes them from another run)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder keeping learned tokens and drawings (the original's and the gold standard's are "
                             "then learned once for all models)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reference_name = args.reference or f"digits-gold-{args.concept}"
    original = zoo.load("digits")
    reference = None if reference_name == "none" else zoo.load(reference_name, original=original)
    prompts = tuple(world.concept_prompts(args.concept))
    budget = {k: v for k, v in {"steps": args.attack_steps, "lr": args.lr, "tokens": args.tokens}.items()
              if v is not None}
    if args.attack == "inversion":
        if "tokens" in budget:
            parser.error("--tokens is for --attack prompt_attack")
        settings = InversionSettings(**budget, seed=args.attack_seed)
    else:
        settings = PromptSearchSettings(**budget, seed=args.attack_seed)
    rows = []
    print(f"concept {args.concept}, seeds {args.seeds[0]}-{args.seeds[-1]}, {args.steps} steps, {args.attack} "
          f"{settings}; share of drawings the zoo judge finds the concept in")
    print(f"{'model':<24} {'unlearned':>22} {'original':>22} {'reference':>22} {'s':>6}  "
          f"{'with gold':>12} {'without':>12}")
    for name in args.models:
        start = time.perf_counter()
        unlearned = original if name == "digits" else zoo.load(name, original=original)

        def engine(other):
            return PartialDiffusion(original, other, num_inference_steps=args.steps, batch_size=64)

        probe = Probe(Concept(args.concept, prompts), engine(unlearned), ProbeSettings(seeds=args.seeds,
                      classifier_cache=None if args.cache is None else str(args.cache)),
                      judge=zoo_digit_judge(args.concept),
                      reference_engine=engine(reference) if reference is not None else None)
        result = probe.inversion(settings) if args.attack == "inversion" else probe.prompt_attack(settings)
        # The gate's rule with the gold standard (paired gap) and without it (the share against ccs_max), as the
        # gate runs it: with the unlearned model's own images of the prompts (ψ = 0, scoring seeds) for not_erased.
        plain = None if args.skip_plain else probe.concept_values([0.0])[0.0].numpy()
        verdicts = {"with_reference": None if reference is None else decide_attack(
                        args.attack, result.values["unlearned"], result.values["original"],
                        result.values["reference"], plain=plain, ccs_max=args.ccs_max, seed=settings.seed),
                    "without_reference": decide_attack(args.attack, result.values["unlearned"],
                                                       result.values["original"], plain=plain,
                                                       ccs_max=args.ccs_max, seed=settings.seed)}
        row = {"model": name, **result.to_dict(), "seconds": round(time.perf_counter() - start, 1),
               "verdicts": {k: None if v is None else v.to_dict() for k, v in verdicts.items()},
               "values": {m: [float(x) for x in v] for m, v in result.values.items()}}
        rows.append(row)
        cells = [str(result.share(m)) if m in result.values else "-" for m in ("unlearned", "original", "reference")]
        kinds = [v.kind if v is not None else "-" for v in verdicts.values()]
        print(f"{name:<24} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22} {row['seconds']:>6}  "
              f"{kinds[0]:>12} {kinds[1]:>12}", flush=True)
        if args.out:  # after every model, atomically: a stopped run keeps what it measured
            partial = args.out.with_name(args.out.name + ".tmp")
            partial.write_text(json.dumps(rows, indent=1))
            partial.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
