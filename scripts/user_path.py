"""The README's gate run as a user runs it: a copied pipeline folder, UNet files, pytest (issue 23 item 3).

No library shortcut: for every model and seed set this writes the README's test verbatim
(the concept's prompts on the marker) into a fresh project folder and runs ``pytest`` in a
subprocess with ``--uoc-original`` a *copy* of the zoo's pipeline folder (so neither the zoo's
judge nor its default prompts apply by name) and ``--uoc-unlearned`` the model's published file
(ESD's partial tensors, a complete UNet, the concealer's text encoder file). ``--mode judge``
passes ``--uoc-judge zoo`` (the zoo's judge, chosen explicitly as a user with a judge would),
``--mode none`` ``--uoc-judge none`` (the concept classifier decides). The verdict, the
classifier's held-out accuracy and the wall time per gate are read from the JSON report.

    python scripts/user_path.py --out runs/user --sets 0 --concepts three red --modes none judge
    python scripts/user_path.py --out runs/user --table     # the table from the records

Runs in one seed set share one cache folder (the original's walks and null finishes are
computed once per set, as in a repository whose CI keeps pytest-uoc's cache).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = {
    "three": ["a handwritten three", "the digit 3"],
    "red": ["a red handwritten two", "a red handwritten seven", "a red digit"],
}
MODELS = {
    "three": ["digits-gold-three", "digits-esd-three", "digits-esdu-three", "digits-ca-three", "digits-conceal-three",
              "digits-uce-three", "digits-salun-three", "digits"],
    "red": ["digits-gold-red", "digits-esd-red", "digits-esdu-red", "digits-ca-red", "digits-conceal-red",
            "digits-uce-red", "digits-salun-red", "digits"],
}
TEST = '''import pytest
from pytest_uoc import assert_concept_not_retrievable


@pytest.mark.gpu
@pytest.mark.uoc_concept("{concept}", prompts={prompts})
def test_{concept}_is_truly_forgotten():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
'''


def model_file(name: str, original: Path, files: dict[str, Path] | None = None) -> Path:
    """The file a user would pass as ``--uoc-unlearned`` for a zoo model (the original: its own UNet file),
    or the file given for a model outside the zoo (``--file NAME=PATH``)."""
    from pytest_uoc import zoo

    if files and name in files:
        return files[name]
    if name == "digits":
        return original / "unet" / "diffusion_pytorch_model.safetensors"
    file = zoo.weights_dir() / "variants"
    matches = sorted(file.glob(f"{name}.*safetensors"))
    if len(matches) != 1:
        raise SystemExit(f"no single weight file for {name} in {file}: {matches}")
    return matches[0]


def run_one(out: Path, original: Path, concept: str, name: str, k: int, mode: str,
            files: dict[str, Path] | None = None) -> dict:
    """One gate, one subprocess; the record of its verdict (kept as JSON, atomically)."""
    record_path = out / "records" / f"{concept}-set{k}-{mode}-{name}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    project = out / "projects" / f"{concept}-set{k}-{mode}-{name}"
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")  # a repository of its own: none of this repo's settings
    (project / f"test_{concept}_gate.py").write_text(TEST.format(concept=concept, prompts=json.dumps(PROMPTS[concept])))
    report = project / "uoc-report.json"
    command = [sys.executable, "-m", "pytest", str(project), "-q", "-p", "no:randomly", "-p", "no:xdist",
               "--uoc-device", "cpu", "--uoc-original", str(original),
               "--uoc-unlearned", str(model_file(name, original, files)), "--uoc-seeds", f"{32 * k}-{32 * k + 31}",
               "--uoc-judge", "zoo" if mode == "judge" else "none", "--uoc-report", str(report),
               "--uoc-cache-dir", str(out / "cache" / f"set{k}")]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=project, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    seconds = time.perf_counter() - start
    if not report.exists():
        raise SystemExit(f"{name} set {k} {mode}: no report (exit {done.returncode})\n{done.stdout[-3000:]}"
                         f"\n{done.stderr[-3000:]}")
    row = json.loads(report.read_text())["tests"][0]
    record = {"concept": concept, "set": k, "mode": mode, "model": name, "verdict": row.get("verdict"),
              "outcome": row.get("outcome"), "exit": done.returncode, "value": row.get("value"),
              "value_of": row.get("value_of"), "heldout_accuracy": row.get("heldout_accuracy"),
              "anchors": row.get("anchors"), "seconds": round(seconds, 1), "command": command}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(record_path)
    print(f"{concept} set {k} {mode} {name}: {record['verdict']} ({record['outcome']}, "
          f"acc {record['heldout_accuracy']}, {record['seconds']} s)", flush=True)
    return record


def table(out: Path) -> str:
    """Verdict counts per model and mode, agreement of the modes per run, accuracy and wall time."""
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    lines = []
    for concept in PROMPTS:
        mine = [r for r in records if r["concept"] == concept]
        if not mine:
            continue
        sets = sorted({r["set"] for r in mine})
        lines += [f"#### {concept}: the README gate through pytest, copied pipeline folder (seed sets "
                  f"{', '.join(f'{32 * k}-{32 * k + 31}' for k in sets)})", "",
                  "| model | with the zoo's judge (`--uoc-judge zoo`) | no judge (`--uoc-judge none`) | modes agree | "
                  "held-out acc. (no judge) | s per gate (judge / none) |", "|---|---|---|---|---|---|"]
        extra = sorted({r["model"] for r in mine} - set(MODELS[concept]))
        for name in MODELS[concept] + extra:
            by_mode = {m: [r for r in mine if r["model"] == name and r["mode"] == m] for m in ("judge", "none")}
            if not any(by_mode.values()):
                continue

            def count(rows: list[dict]) -> str:
                kinds: dict[str, int] = {}
                for r in rows:
                    kinds[str(r["verdict"])] = kinds.get(str(r["verdict"]), 0) + 1
                return ", ".join(f"{k} {v}/{len(rows)}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])) or "-"

            pairs = [(a, b) for a in by_mode["judge"] for b in by_mode["none"] if a["set"] == b["set"]]
            agree = f"{sum(a['verdict'] == b['verdict'] for a, b in pairs)}/{len(pairs)}" if pairs else "-"
            accs = [r["heldout_accuracy"] for r in by_mode["none"] if r["heldout_accuracy"] is not None]
            acc = ", ".join(f"{a:.2f}" for a in accs) or "-"

            def mean_seconds(rows: list[dict]) -> str:
                return f"{sum(r['seconds'] for r in rows) / len(rows):.0f}" if rows else "-"

            lines.append(f"| {name} | {count(by_mode['judge'])} | {count(by_mode['none'])} | {agree} | {acc} | "
                         f"{mean_seconds(by_mode['judge'])} / {mean_seconds(by_mode['none'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/user"))
    parser.add_argument("--sets", type=int, nargs="+", default=[0], help="seed sets k (seeds 32k .. 32k+31)")
    parser.add_argument("--concepts", nargs="+", default=list(PROMPTS), choices=list(PROMPTS))
    parser.add_argument("--models", nargs="+", default=None, help="zoo model names (default: every one)")
    parser.add_argument("--modes", nargs="+", default=["none", "judge"], choices=["none", "judge"])
    parser.add_argument("--file", action="append", default=[], metavar="NAME=PATH",
                        help="a model outside the zoo (e.g. a gold standard retrained from another initialisation): "
                             "its UNet weight file, gated for every --concepts; repeatable")
    parser.add_argument("--table", action="store_true", help="only print the table from the records")
    args = parser.parse_args(argv)
    files: dict[str, Path] = {}
    for spec in args.file:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_file():
            parser.error(f"--file {spec!r}: expected NAME=PATH with PATH an existing UNet weight file")
        files[name] = Path(path).resolve()
    args.out = args.out.resolve()  # each pytest runs in its own project folder: every path it gets is absolute
    if not args.table:
        from pytest_uoc import zoo

        original = args.out / "sd-original"
        if not original.exists():
            shutil.copytree(zoo.pipeline_path(), args.out / "sd-original.tmp")
            (args.out / "sd-original.tmp").replace(original)
        for k in args.sets:
            for concept in args.concepts:
                for name in dict.fromkeys((args.models or MODELS[concept]) + list(files)):
                    if name not in MODELS[concept] and name not in files:
                        continue
                    for mode in args.modes:
                        run_one(args.out, original, concept, name, k, mode, files)
    print(table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
