"""``uoc audit --unlearned A --unlearned B [--concept X --concept Y]``: many checkpoints side by side.

Researchers compare unlearned checkpoints in tables of methods × concepts (HUB, UnlearnCanvas,
UnlearnDiffAtk). Each (checkpoint, concept) is audited as ``uoc audit`` audits one, into a folder
of its own under ``--out``; all of them share the persistent cache, so the original's trajectories
and both null finishes are made once: the second and later checkpoints pay only their own steps
(the table's "original evals" column says so). Then one comparison table (checkpoint × concept:
verdict, the deciding value and its interval), ``comparison.json`` and ``comparison.png`` (and,
with ``--html``, one page of every audit). Exit status 0 only when every gate passed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["compare", "deciding_value"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-40:] or "x"


def deciding_value(row: dict[str, Any]) -> tuple[str, dict[str, float] | None]:
    """What decided a calibrated row, and its estimate: the averaged excess over the nulls' midpoint (or the gap
    to the gold standard); for the absolute rule, CCS at the asserted ψ."""
    averaged = ((row.get("calibration") or {}).get("averaged_over_tested") or {})
    for key, name in (("gap_to_reference", "gap to gold standard"), ("excess_over_midpoint", "excess over midpoint")):
        if averaged.get(key):
            return name, averaged[key]
    return "CCS at psi", None if row.get("ccs_at_psi") is None else {"mean": row["ccs_at_psi"]}


def _original_evals(cost: dict[str, Any] | None) -> int | None:
    if not cost or "unet_evals" not in cost:
        return None
    return int(cost["unet_evals"]) - int(cost.get("unlearned_unet_evals", 0)) - int(cost.get("null_unet_evals", 0))


def _plot(entries: Sequence[dict[str, Any]], path: Path) -> Path:
    from .report import _axes, _save_figure

    fig, ax = _axes((max(4.0, 1.2 * len(entries) + 1.5), 3.4))
    labels, means, errors, colours = [], [], [], []
    for entry in entries:
        value = entry["value"] or {}
        labels.append(f"{Path(entry['checkpoint']).name}\n{entry['concept']}")
        mean = value.get("mean", 0.0)
        means.append(mean)
        errors.append([[mean - value.get("low", mean)], [value.get("high", mean) - mean]])
        colours.append("tab:green" if entry["passed"] else "tab:red")
    for i, (mean, error, colour) in enumerate(zip(means, errors, colours, strict=True)):
        ax.bar(i, mean, color=colour, alpha=0.7)
        ax.errorbar(i, mean, yerr=error, color="black", capsize=3)
    ax.axhline(0.0, color="gray", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel(entries[0]["value_of"] if entries else "")
    ax.set_title("checkpoints compared (green: forgotten)")
    return _save_figure(fig, path, "checkpoints compared")


def compare(args: argparse.Namespace, unlearned: Sequence[str], concepts: Sequence[str],
            audit_one: Callable[..., int]) -> int:
    """Audit every (checkpoint, concept), then print and write the comparison; the exit status."""
    from .cli import EXIT_FAILED, EXIT_OK, _fail
    from .config import SettingError, check_output_dir

    if len(concepts) > 1 and (args.prompt or args.prompts_file):
        return _fail("--prompt and --prompts-file describe one concept; with several --concept use the zoo's "
                     "concepts, or run one audit per concept")
    try:
        out = Path(check_output_dir(args.out))
    except SettingError as exc:
        return _fail(f"--out = {args.out!r}: {exc}")
    pairs = list(itertools.product(unlearned, concepts))
    for checkpoint, concept in pairs:  # every pair's arguments checked before anything is computed
        status = audit_one(argparse.Namespace(**{**vars(args), "unlearned": checkpoint, "concept": concept}),
                           dry_run=True)
        if status != EXIT_OK:
            return status
    entries, rows = [], []
    for number, (checkpoint, concept) in enumerate(pairs, start=1):
        folder = out / f"{number:02d}-{_slug(checkpoint)}-{_slug(concept)}"
        print(f"== [{number}/{len(pairs)}] {checkpoint} × {concept} -> {folder}")
        one = argparse.Namespace(**{**vars(args), "unlearned": checkpoint, "concept": concept, "out": str(folder),
                                    "html": None, "progress_prefix": f"[{number}/{len(pairs)}] "})
        status = audit_one(one)
        if status not in (EXIT_OK, EXIT_FAILED):
            return status
        row = json.loads((folder / "report.json").read_text(encoding="utf-8"))["tests"][0]
        row["test"] = f"{checkpoint} × {concept}"
        rows.append(row)
        value_of, value = deciding_value(row)
        entries.append({"checkpoint": checkpoint, "concept": concept, "verdict": row.get("verdict"),
                        "passed": status == EXIT_OK, "value_of": value_of, "value": value,
                        "original_unet_evals": _original_evals(row.get("cost")),
                        "unet_evals": (row.get("cost") or {}).get("unet_evals"), "folder": str(folder)})
    print(_table(entries))
    from .cache import atomic_write_bytes

    written = []
    for write in (lambda: atomic_write_bytes(out / "comparison.json", json.dumps(
                      {"schema": "pytest-uoc/comparison", "entries": entries}, indent=2).encode()),
                  lambda: _plot(entries, out / "comparison.png")):
        try:
            written.append(str(write()))
        except OSError as exc:
            print(f"uoc: warning: could not write into {out}: {exc}")
    if args.html:
        from .html_report import write_html_report
        from .record import run_record

        try:
            written.append(str(write_html_report(args.html, rows, run_record(None))))
        except OSError as exc:
            print(f"uoc: warning: could not write {args.html}: {exc}")
    print("written: " + ", ".join(written))
    passed = all(e["passed"] for e in entries)
    print(json.dumps({"passed": passed, "gates": len(entries), "forgotten": sum(e["passed"] for e in entries)}))
    return EXIT_OK if passed else EXIT_FAILED


def _table(entries: Sequence[dict[str, Any]]) -> str:
    head = ["checkpoint", "concept", "verdict", "deciding value [95% CI]", "original evals", "UNet evals"]
    lines = [head]
    for e in entries:
        v = e["value"] or {}
        shown = "-" if not v else (f"{v['mean']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]" if "low" in v
                                   else f"{v['mean']:.3f}")
        lines.append([e["checkpoint"], e["concept"], str(e["verdict"]), f"{e['value_of']}: {shown}",
                      str(e["original_unet_evals"]), str(e["unet_evals"])])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines)
