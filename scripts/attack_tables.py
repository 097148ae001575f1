"""Markdown tables of ``scripts/attack_zoo.py`` runs: shares after the attack and the gate's verdicts per seed set.

    python scripts/attack_tables.py runs/inv26/three-0-31.json runs/inv26/three-32-63.json runs/inv26/three-64-95.json

One row per model, one column group per file (a seed set): the unlearned model's share of drawings that
show the concept after the attack, and the gate's verdict with the gold standard / without it, decided again
from the recorded per-drawing values by today's rule. Then the counts of
each verdict per model over the files, and the attacked original's and gold standard's shares per file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _share(entry: dict) -> str:
    share = entry["share"]
    return f"{share['mean']:.3f} [{share['low']:.3f}, {share['high']:.3f}]"


def _plain_shares(paths: list[Path]) -> dict[tuple[str, tuple[int, ...]], dict]:
    """(model, scoring seeds) -> the unlearned model's own ψ = 0 share, from runs that recorded it."""
    found = {}
    for path in paths:
        for row in json.loads(path.read_text()):
            plain = (row.get("verdicts") or {}).get("without_reference", {}).get("plain")
            if plain is not None:
                found[(row["model"], tuple(row["seeds"]))] = plain
    return found


def _verdicts(row: dict, ccs_max: float, plain: dict | None = None) -> tuple[str, str]:
    """The gate's verdicts with and without the gold standard, decided again from the per-drawing values.

    Decided by today's ``decide_attack`` (a run records the values, so a changed rule needs no new run);
    ``not_erased`` from the unlearned model's own ψ = 0 images as the run recorded them. "(no ψ 0)" marks a
    run that did not record them.
    """
    from pytest_uoc.scoring.attack_verdict import decide_attack

    values = row["values"]
    plain = (row["verdicts"]["without_reference"] or {}).get("plain") or plain
    if plain is not None and plain["low"] > ccs_max:
        return "not_erased", "not_erased"
    attack, suffix = row.get("attack", "inversion"), "" if plain is not None else " (no ψ 0)"

    def decide(reference: list[float] | None) -> str:
        return decide_attack(attack, values["unlearned"], values["original"], reference, ccs_max=ccs_max).kind + suffix

    return decide(values["reference"]) if "reference" in values else "–", decide(None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--ccs-max", type=float, default=0.2)
    parser.add_argument("--plain-from", nargs="*", type=Path, default=(),
                        help="runs of the other attack on the same seeds whose recorded ψ = 0 shares (the same "
                             "images: no attack involved) stand in where a file did not record them")
    args = parser.parse_args()
    runs = [(path, json.loads(path.read_text())) for path in args.files]
    plains = _plain_shares(list(args.plain_from))
    labels = [f"seeds {rows[0]['seeds'][0] - len(rows[0]['seeds'])}–{rows[0]['seeds'][-1]}" for _, rows in runs]
    models = list(dict.fromkeys(row["model"] for _, rows in runs for row in rows))
    print("| model | " + " | ".join(f"{label}: share / with gold / without" for label in labels) + " |")
    print("|---|" + "---|" * len(runs))
    counts: dict[str, dict[str, Counter]] = {m: {"with": Counter(), "without": Counter()} for m in models}
    for model in models:
        cells = []
        for _, rows in runs:
            row = next((r for r in rows if r["model"] == model), None)
            if row is None or "verdicts" not in row:
                cells.append("–")
                continue
            with_gold, without = _verdicts(row, args.ccs_max, plains.get((model, tuple(row["seeds"]))))
            counts[model]["with"][with_gold] += 1
            counts[model]["without"][without] += 1
            cells.append(f"{_share(row['models']['unlearned'])} / {with_gold} / {without}")
        print(f"| {model} | " + " | ".join(cells) + " |")
    print()
    print("| model | with the gold standard (paired gap) | without (share against ccs_max) |")
    print("|---|---|---|")
    for model in models:
        def tally(counter: Counter) -> str:
            return ", ".join(f"{kind} {n}/{sum(counter.values())}" for kind, n in counter.most_common()) or "–"

        print(f"| {model} | {tally(counts[model]['with'])} | {tally(counts[model]['without'])} |")
    print()
    print("| seed set | the original after the same attack | the gold standard after the same attack |")
    print("|---|---|---|")
    for label, (_, rows) in zip(labels, runs, strict=True):
        first = rows[0]["models"]
        reference = _share(first["reference"]) if "reference" in first else "–"
        print(f"| {label} | {_share(first['original'])} | {reference} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
