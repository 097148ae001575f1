"""``--uoc-html PATH``: one self-contained HTML page a reviewer opens to see why a checkpoint was blocked.

The page holds the summary table and, per concept test, its verdict and reason, the judge and its
check, the anchors, the calibration table (per ψ: how often λP(ψ), both null finishes and the gold
standard show the concept, and the excesses), the gate's pictures (the calibration and CCS curves,
the labelled image grid: λO, λU, λP per ψ, the nulls) embedded as data URIs, the cost, and the run's
record (settings, versions). No network, no JavaScript framework: one small inline script only
marks, for tests, how many images decoded. Written atomically (``cache.atomic_write_bytes``).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .cache import atomic_write_bytes

__all__ = ["render_html", "write_html_report"]

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d1d1f;background:#fff}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-top:1px solid #ccc;padding-top:16px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f2f2f2}.passed{color:#0a7d32;font-weight:600}.failed,.error{color:#b3261e;font-weight:600}
.skipped,.xfailed,.interrupted{color:#8a6d00;font-weight:600}.reason{background:#f7f7f7;padding:8px;white-space:pre-wrap}
img{max-width:100%;border:1px solid #ddd;margin:4px 0;image-rendering:pixelated}figure{margin:8px 0}
figcaption{color:#555;font-size:12px}code{font-size:12px}details{margin:8px 0}
"""
_SCRIPT = ("window.addEventListener('load',function(){var i=document.images,n=0;for(var k=0;k<i.length;k++)"
           "{if(i[k].complete&&i[k].naturalWidth>0)n++}document.body.setAttribute('data-images',i.length);"
           "document.body.setAttribute('data-images-loaded',n)});")


def _esc(value: Any) -> str:
    return html.escape("–" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value)))


def _anchor_id(test: str) -> str:
    return "t-" + "".join(c if c.isalnum() else "-" for c in test)


def _estimate(value: Mapping[str, Any] | None) -> str:
    if not value:
        return "–"
    return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


def _calibration_table(calibration: Mapping[str, Any]) -> str:
    points = calibration.get("points") or []
    if not points:
        return ""
    with_ref = any("reference" in p for p in points)
    head = ["ψ" if calibration.get("axis", "psi") == "psi" else "strength", "original steps", "λP shows concept",
            "upper null", "lower null", "excess over upper", "excess over lower"]
    head += ["gold standard", "gap to gold"] if with_ref else []
    rows = []
    for p in points:
        cells = [f"{p['psi']:g}", f"{p['original_steps']}/{p['total_steps']}", _estimate(p.get("unlearned")),
                 _estimate(p.get("upper_null")), _estimate(p.get("lower_null")), _estimate(p.get("excess_over_upper")),
                 _estimate(p.get("excess_over_lower"))]
        if with_ref:
            cells += [_estimate(p.get("reference")), _estimate(p.get("gap_to_reference"))]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    scorer = html.escape(str(calibration.get("scorer", "")))
    return (f"<p>Calibration (shares counted by {scorer}; 95% intervals):</p><table><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")


def _picture(path: str) -> str:
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        return f"<p>picture {html.escape(path)} could not be read: {html.escape(str(exc))}</p>"
    kind = "image/png" if file.suffix.lower() == ".png" else "application/octet-stream"
    encoded = base64.b64encode(data).decode()
    return (f'<figure><img alt="{html.escape(file.name)}" src="data:{kind};base64,{encoded}">'
            f"<figcaption>{html.escape(file.name)}</figcaption></figure>")


def _judge(judge: Mapping[str, Any]) -> str:
    check = judge.get("check") or {}
    parts = [f"<b>{_esc(judge.get('name'))}</b>", _esc(judge.get("version"))]
    if judge.get("threshold") is not None:
        parts.append(f"threshold {_esc(judge['threshold'])}")
    if judge.get("weights_sha256"):
        parts.append(f"weights <code>{_esc(judge.get('weights'))}</code> sha256 <code>{_esc(judge['weights_sha256'])}"
                     "</code>")
    text = ", ".join(parts)
    if check:
        text += (f"; check on the training seeds: finds the concept in {check['original_share']:.3f} of the original's "
                 f"images (needs ≥ {check['min_original']:g}), {check['anchor_share']:.3f} of the anchor's "
                 f"(needs ≤ {check['max_anchor']:g}): {'believed' if check['believed'] else 'NOT believed'}")
    return f"<p>Judge: {text}</p>"


#: The learned attacks' names on the page.
_ATTACK_TITLES = {"inversion": "Concept inversion", "prompt_attack": "Adversarial prompt search"}


def _attack(attack: str, data: Mapping[str, Any]) -> str:
    """A learned attack's verdict, reason, share per attacked model and (prompt search) the prompts it found."""
    parts = [f"<p>{_ATTACK_TITLES[attack]}: <b>{_esc(data.get('kind'))}</b> (rule: {_esc(data.get('rule'))}, "
             f"ccs_max {_esc(data.get('ccs_max'))}, budget {_esc(json.dumps(data.get('settings')))})</p>"]
    if data.get("reason"):
        parts.append(f'<div class="reason">{html.escape(str(data["reason"]))}</div>')
    rows = []
    for model, entry in (data.get("models") or {}).items():
        found = "; ".join(str(item.get("text")) for item in entry.get("found") or [])
        rows.append(f"<tr><td>{html.escape(str(model))}</td><td>{html.escape(_estimate(entry.get('share')))}</td>"
                    f"<td>{html.escape(found)}</td></tr>")
    if rows:
        last = "found prompts" if attack == "prompt_attack" else ""
        parts.append("<table><tr><th>attacked model</th><th>share showing the concept</th>"
                     f"<th>{last}</th></tr>{''.join(rows)}</table>")
    return "\n".join(parts)


def _section(row: Mapping[str, Any]) -> str:
    test = str(row.get("test", ""))
    outcome = str(row.get("outcome") or "")
    parts = [f'<section class="test" id="{_anchor_id(test)}" data-test="{html.escape(test)}">',
             f"<h2>{html.escape(test)} <span class=\"{html.escape(outcome)}\">{html.escape(outcome)}</span></h2>",
             f"<p>model <code>{_esc(row.get('model'))}</code>, concept <b>{_esc(row.get('concept'))}</b>, verdict "
             f"<b>{_esc(row.get('verdict'))}</b>, gate {_esc(row.get('gate'))}: value {_esc(row.get('value'))} "
             f"(limit {_esc(row.get('limit'))})</p>"]
    if row.get("reason"):
        parts.append(f'<div class="reason">{html.escape(str(row["reason"]))}</div>')
    if row.get("judge"):
        parts.append(_judge(row["judge"]))
    elif (row.get("calibration") or {}).get("scorer"):
        parts.append(f"<p>Instrument: {_esc(row['calibration']['scorer'])}; classifier held-out accuracy "
                     f"{_esc(row.get('heldout_accuracy'))}</p>")
    prompts, anchors = row.get("prompts") or [], row.get("anchors") or []
    if anchors:
        pairs = "".join(f"<tr><td>{html.escape(str(p))}</td><td>{html.escape(str(a))}</td></tr>"
                        for p, a in zip(prompts or [""] * len(anchors), anchors, strict=False))
        how = "derived" if row.get("anchors_derived") else "given"
        parts.append(f"<p>Anchors ({how}):</p><table><tr><th>prompt</th><th>anchor</th></tr>{pairs}</table>")
    if row.get("calibration"):
        parts.append(_calibration_table(row["calibration"]))
    for attack in ("inversion", "prompt_attack"):
        if isinstance(row.get(attack), Mapping):
            parts.append(_attack(attack, row[attack]))
    for path in row.get("pictures") or []:
        parts.append(_picture(str(path)))
    if row.get("cost"):
        parts.append(f"<details><summary>cost ({_esc(row.get('seconds'))} s)</summary><pre>"
                     f"{html.escape(json.dumps(row['cost'], indent=1, default=str))}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(rows: Sequence[Mapping[str, Any]], record: Mapping[str, Any] | None = None, *,
                title: str = "pytest-uoc report") -> str:
    """The page as a string (``record``: the run's settings and versions, shown at the end)."""
    ordered = sorted(rows, key=lambda r: str(r.get("test", "")))
    passed = sum(1 for r in ordered if r.get("outcome") == "passed")
    head = ["test", "model", "concept", "outcome", "verdict", "gate", "value", "limit"]
    table = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in ordered:
        test = str(row.get("test", ""))
        outcome = str(row.get("outcome") or "")
        table.append(f'<tr><td><a href="#{_anchor_id(test)}">{html.escape(test.split("::")[-1])}</a></td>'
                     f"<td>{_esc(row.get('model'))}</td><td>{_esc(row.get('concept'))}</td>"
                     f'<td class="{html.escape(outcome)}">{html.escape(outcome)}</td><td>{_esc(row.get("verdict"))}</td>'
                     f"<td>{_esc(row.get('gate'))}</td><td>{_esc(row.get('value'))}</td><td>{_esc(row.get('limit'))}</td></tr>")
    table.append("</table>")
    run = (f"<h2>The run</h2><pre>{html.escape(json.dumps(record, indent=1, default=str))}</pre>" if record else "")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
            f"<h1>{html.escape(title)}: {passed} of {len(ordered)} concept tests passed</h1>"
            + "\n".join(table) + "\n" + "\n".join(_section(r) for r in ordered) + run + "</body></html>\n")


def write_html_report(path: str | Path, rows: Sequence[Mapping[str, Any]], record: Mapping[str, Any] | None = None,
                      ) -> Path:
    """Write the page atomically; OSError when it cannot be written (the verdicts stand)."""
    return atomic_write_bytes(path, render_html(rows, record).encode())
