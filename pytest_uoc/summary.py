"""The CI summary: a Markdown table of the concept tests, appended to GitHub Actions' step summary.

When ``GITHUB_STEP_SUMMARY`` names a file (GitHub Actions sets it for every step), the controller
appends the summary table (one row per concept test: outcome, verdict, gate, deciding value and
limit) and, for each failing test, its reason, so that a reviewer sees on the run's page why a
checkpoint was blocked. A summary that cannot be written is reported, never a failed run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["STEP_SUMMARY_ENV", "append_step_summary", "markdown_summary"]

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
_COLUMNS = (("test", "test"), ("model", "model"), ("concept", "concept"), ("outcome", "outcome"),
            ("verdict", "verdict"), ("gate", "gate"), ("value", "value"), ("limit", "limit"))
_SIGN = {"max": "≤ ", "min": "≥ "}


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary as Markdown: a heading, the table, then one line per failing test with its reason."""
    ordered = sorted(rows, key=lambda r: str(r.get("test", "")))
    failed = [r for r in ordered if r.get("outcome") in ("failed", "error")]
    lines = [f"### pytest-uoc: {len(ordered) - len(failed)} of {len(ordered)} concept tests passed", "",
             "| " + " | ".join(title for _, title in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in ordered:
        cells = []
        for key, _ in _COLUMNS:
            value = row.get(key)
            if key == "test" and isinstance(value, str):
                value = value.split("::")[-1]
            if key == "limit" and isinstance(value, int | float):
                value = f"{_SIGN.get(str(row.get('limit_kind')), '')}{value:g}"
            if key == "outcome" and value in ("failed", "error"):
                value = f"**{value}**"
            cells.append(_cell(value))
        lines.append("| " + " | ".join(cells) + " |")
    if failed:
        lines += ["", "Why the failing tests failed:", ""]
        for row in failed:
            reason = row.get("reason") or "failed before a verdict (see the test's output)"
            lines.append(f"- `{row.get('test')}`: {_cell(row.get('verdict'))}: {_cell(reason)}")
    return "\n".join(lines) + "\n"


def append_step_summary(rows: Sequence[Mapping[str, Any]], environ: Mapping[str, str] | None = None) -> Path | None:
    """Append ``markdown_summary(rows)`` to the file ``GITHUB_STEP_SUMMARY`` names; None when it is unset.

    OSError when the file cannot be written (the caller reports it; the run's outcome stands).
    """
    target = (environ if environ is not None else os.environ).get(STEP_SUMMARY_ENV, "").strip()
    if not target or not rows:
        return None
    path = Path(target)
    with open(path, "a", encoding="utf-8") as handle:  # GitHub's file: appended to, as every step does
        handle.write(markdown_summary(rows) + "\n")
    return path
