"""``uoc audit``: run one concept's probe outside pytest and print the verdict.

    uoc audit --original zoo:digits --unlearned zoo:digits-esd-three --concept three

prints the CCS table and the verdict, and writes the curve plot, an image grid
and a JSON report (the same schema as ``--uoc-report``) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import (
    OPTIONS,
    SettingError,
    Settings,
    check_output_dir,
    check_seeds_for_prompts,
    resolve_settings,
)

__all__ = ["EXIT_FAILED", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "main"]

#: Exit codes of ``uoc audit``.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Plugin options that ``uoc audit`` takes under the same names (``--uoc-steps`` is ``--steps``).
_NOT_IN_CLI = ("report", "artifacts", "cache_clear")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uoc", description="pytest-uoc: unlearning or concealment?")
    commands = parser.add_subparsers(dest="command", required=True)
    audit = commands.add_parser(
        "audit", help="probe one concept and print its verdict", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 the gate passed, 1 it failed, 2 a usage error, 3 an internal error. "
               "Each option also reads its UOC_* environment variable, like the pytest plugin.")
    for option in OPTIONS:  # the plugin's options and validators: one set for both
        if option.name in _NOT_IN_CLI:
            continue
        default = "" if option.default is None else f" (default {_show(option.default)})"
        if option.name == "unlearned":
            audit.add_argument("--unlearned", dest="unlearned", action="append", default=None,
                               metavar=option.metavar or "LOCATION",
                               help=f"{option.help}; repeat it to compare checkpoints in one run (the original's "
                                    f"trajectories and nulls are shared) [env {option.env_var}]")
            continue
        audit.add_argument(_flag(option.name), dest=option.name, default=None,
                           metavar=option.metavar or option.name.upper(),
                           help=f"{option.help}{default} [env {option.env_var}]")
    audit.add_argument("--concept", action="append", default=None,
                       help="concept name (zoo concepts get default prompts; required unless --replay); repeat it "
                            "to audit several concepts")
    audit.add_argument("--replay", default=None, metavar="REPORT",
                       help="re-run the settings, concept and prompts of a report that uoc audit wrote and say "
                            "whether the verdict is the same (exit 0 when it is)")
    audit.add_argument("--prompt", action="append", default=None, help="a concept prompt (repeatable)")
    audit.add_argument("--prompts-file", default=None, help="text file of prompts, one per line")
    audit.add_argument("--concept-word", action="append", default=None, dest="concept_words",
                       help="a word or phrase that names the concept besides its name (repeatable; the anchors "
                            "are the prompts with these removed)")
    audit.add_argument("--psi", default="0.55", help="largest ψ the gate checks (default 0.55)")
    audit.add_argument("--ccs-max", default="0.2", help="CCS limit (default 0.2)")
    audit.add_argument("--attack", action="append", default=None, choices=("inversion", "prompt_attack"),
                       help="also run a learned recovery attack at its default budget (repeatable): inversion "
                            "(concept inversion) or prompt_attack (adversarial prompt search); docs/attacks.md")
    audit.add_argument("--attack-steps", type=int, default=None, metavar="N",
                       help="the --attack budget's steps (default: each attack's own, 300 and 40)")
    audit.add_argument("--cache-clear", action="store_true", help="clear the persistent cache first")
    audit.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                       help="a progress line on stderr: auto (when stderr is a terminal), always, never")
    audit.add_argument("--out", default="uoc-audit", help="folder for the plot, grid and JSON (default uoc-audit)")
    return parser


def _show(value: object) -> str:
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value) and value == tuple(range(len(value))):
        return str(len(value))
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _fail(message: str) -> int:
    print(f"uoc: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _rootdir() -> Path:
    """The folder ``pytest`` would take as rootdir here: the plugin's default cache lives under it."""
    try:
        from _pytest.config.findpaths import determine_setup

        return Path(determine_setup(inifile=None, override_ini=None, args=[], rootdir_cmd_arg=None,
                                    invocation_dir=Path.cwd())[0])
    except Exception:  # noqa: BLE001 - another pytest: the current folder
        return Path.cwd()


class _Progress:
    """One updating line on stderr (``\r``): phase, seconds, UNet evaluations so far."""

    def __init__(self, enabled: bool, prefix: str = "") -> None:
        self.enabled, self.phase, self.probe, self.prefix = enabled, "starting", None, prefix
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if enabled else None
        if self._thread is not None:
            self._thread.start()

    def _line(self) -> str:
        from .progress import current

        evals = getattr(getattr(self.probe, "cost", None), "unet_evals", None)
        work = f", {evals} UNet evaluations" if evals else ""
        status = current()
        images = f"; {status.text()}" if status.planned else ""
        return f"uoc: {self.prefix}{self.phase} ({time.perf_counter() - self.started:.0f} s{work}){images}"

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            sys.stderr.write("\r\x1b[K" + self._line())
            sys.stderr.flush()

    def set(self, phase: str, probe: object = None) -> None:
        self.phase = phase
        if probe is not None:
            self.probe = probe

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _settings(args: argparse.Namespace) -> Settings:
    cli = {o.name: getattr(args, o.name, None) for o in OPTIONS}
    return resolve_settings(cli, {}, flag_prefix="--")


def _serialised(name: str, value: object) -> str | None:
    """A report's setting as the option's text (lists as comma lists), None when unset."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        separator = ";" if name == "anchor" else ","
        return separator.join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def replay(args: argparse.Namespace) -> int:
    """``uoc audit --replay REPORT``: the report's run again; 0 when every verdict is the same, 1 when one differs."""
    try:
        document = json.loads(Path(args.replay).read_text(encoding="utf-8"))
        rows, saved = document["tests"], document["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return _fail(f"--replay {args.replay!r}: not a pytest-uoc JSON report ({type(exc).__name__}: {exc})")
    audited = [r for r in rows if r.get("test") == "uoc audit"]
    if not audited:
        command = " ".join((document.get("record") or {}).get("command") or ["pytest", "..."])
        return _fail(f"--replay {args.replay!r}: a pytest run's report; replay it with its own command: {command}")
    row = audited[0]
    replayed = argparse.Namespace(**vars(args))
    for option in OPTIONS:
        if option.name in _NOT_IN_CLI:
            continue
        setattr(replayed, option.name, _serialised(option.name, saved.get(option.name)))
    replayed.concept, replayed.prompt, replayed.prompts_file = row.get("concept"), row.get("prompts"), None
    replayed.psi, replayed.ccs_max, replayed.replay = str(row.get("psi", 0.55)), str(row.get("ccs_max", 0.2)), None
    print(f"replaying {args.replay}: concept {row.get('concept')!r}, {saved.get('unlearned')} vs "
          f"{saved.get('original')}, recorded verdict {row.get('verdict')}")
    status = audit(replayed)
    if status not in (EXIT_OK, EXIT_FAILED):
        return status
    again = json.loads((Path(replayed.out) / "report.json").read_text(encoding="utf-8"))["tests"][0]
    same = again.get("verdict") == row.get("verdict")
    print(f"replay: {'the same verdict' if same else 'a DIFFERENT verdict'}: recorded {row.get('verdict')}, "
          f"now {again.get('verdict')}")
    return EXIT_OK if same else EXIT_FAILED


def audit(args: argparse.Namespace) -> int:
    """Run ``uoc audit``: one checkpoint and concept, or each given one against each other (``compare``)."""
    if getattr(args, "replay", None):
        return replay(args)
    unlearned = [args.unlearned] if isinstance(args.unlearned, str) else list(args.unlearned or [])
    concepts = [args.concept] if isinstance(args.concept, str) else list(args.concept or [])
    if not unlearned and os.environ.get("UOC_UNLEARNED", "").strip():
        unlearned = [os.environ["UOC_UNLEARNED"].strip()]
    missing = [flag for flag, value in (("--unlearned", unlearned), ("--concept", concepts)) if not value]
    if missing:
        return _fail(f"the following arguments are required: {', '.join(missing)} (or --replay REPORT)")
    if len(unlearned) == 1 and len(concepts) == 1:
        one = argparse.Namespace(**{**vars(args), "unlearned": unlearned[0], "concept": concepts[0]})
        return audit_one(one)
    from .compare import compare

    return compare(args, unlearned, concepts, audit_one)


def audit_one(args: argparse.Namespace, *, dry_run: bool = False) -> int:
    """``uoc audit`` of one checkpoint and one concept; returns the exit status.

    ``dry_run``: check every argument and stop before loading a model (EXIT_OK when all are right), so
    that a comparison finds a mistake in its last pair before it computes anything.
    """
    from .concept import Concept, read_prompt_file
    from .config import _float

    try:
        settings = _settings(args)
    except SettingError as exc:
        return _fail(str(exc))
    from .factory import missing_device

    have = missing_device(settings.device)
    if have is not None:
        return _fail(f"--device ({settings.sources.get('device', 'default')}) = {settings.device!r}, but this machine "
                     f"has {have}; use --device cpu or auto")
    limits = {}
    for flag, raw in (("--psi", args.psi), ("--ccs-max", args.ccs_max)):
        try:
            limits[flag] = _float(0.0, 1.0)(raw)
        except SettingError as exc:
            return _fail(f"{flag} = {raw!r}: {exc}")
    psi, ccs_max = limits["--psi"], limits["--ccs-max"]
    steps = getattr(args, "attack_steps", None)
    if steps is not None and (steps < 1 or not getattr(args, "attack", None)):
        return _fail(f"--attack-steps = {steps}: expected an integer >= 1, with --attack naming the attack"
                     if steps < 1 else "--attack-steps needs --attack inversion or --attack prompt_attack")
    try:
        out = Path(check_output_dir(args.out))
    except SettingError as exc:
        return _fail(f"--out = {args.out!r}: {exc}")
    prompts = tuple(args.prompt or ())  # a replay gives the recorded prompts
    if args.prompts_file:
        try:
            prompts += read_prompt_file(args.prompts_file)
        except (FileNotFoundError, ValueError) as exc:
            return _fail(str(exc))
    if not prompts:
        from .factory import zoo_concept

        if not zoo_concept(args.concept):
            return _fail(f"--concept {args.concept!r} is not a concept of the embedded zoo and no prompts were "
                         f"given; add --prompt 'a photo of {args.concept}' (repeatable) or --prompts-file FILE")
        if not str(settings.original).startswith("zoo:"):
            return _fail(f"no prompts for --concept {args.concept!r}: the zoo's default prompts apply only to the "
                         f"zoo's original model, not {settings.original}; add --prompt ... or --prompts-file FILE")
        from .zoo import world

        prompts = tuple(world.concept_prompts(args.concept))
    try:
        concept = Concept(args.concept, prompts, anchors=settings.anchor if settings.explicit("anchor") else None,
                          words=tuple(args.concept_words or ()))
        check_seeds_for_prompts(settings.seeds, len(prompts), where="--seeds: ")
        if settings.rule == "calibrated":
            concept.check_anchor_problems()
        from .judges.spec import check_judge_for_original, parse_judge_spec

        check_judge_for_original(parse_judge_spec(settings.judge), settings.original)
        from .factory import single_file_original

        problem = single_file_original(settings.original)
        if problem:
            raise ValueError(f"--original: {problem}")
    except (SettingError, ValueError) as exc:
        return _fail(str(exc))
    if dry_run:
        return EXIT_OK
    progress = _Progress(args.progress == "always" or args.progress == "auto" and sys.stderr.isatty(),
                         getattr(args, "progress_prefix", ""))
    try:
        return _run(args, settings, concept, psi, ccs_max, out, progress)
    finally:
        progress.close()


def _run(args: argparse.Namespace, settings: Settings, concept: object, psi: float, ccs_max: float, out: Path,
         progress: _Progress) -> int:
    from .cache import NotACacheError, clear_cache
    from .session import UocSession

    session = UocSession(settings=settings, rootdir=_rootdir())
    try:
        if args.cache_clear or settings.cache_clear:  # --cache-clear or UOC_CACHE_CLEAR
            removed, freed = clear_cache(session.cache_dir)
            print(f"cache: cleared {session.cache_dir} ({removed} file(s), {freed / 1e6:.1f} MB of pytest-uoc's "
                  "entries; nothing else touched)")
        session.open_cache()
    except NotACacheError as exc:
        return _fail(f"--cache-dir: {exc}")
    start = time.perf_counter()
    original, unlearned, reference = settings.original, settings.unlearned, settings.reference
    progress.set("loading models")
    try:
        original_pipe = session.load_original()
        unlearned_pipe = session.load_unlearned(unlearned, original_pipe)
        reference_pipe = session.load_unlearned(reference, original_pipe, role="reference") if reference else None
    except Exception as exc:  # noqa: BLE001 - a model that does not load is the user's to fix
        return _fail(f"could not load the models ({original}, {unlearned}{', ' + reference if reference else ''}): "
                     f"{type(exc).__name__}: {exc}")
    probe = session.probe(concept, original_pipe, unlearned_pipe, reference_pipe, settings,
                          {"original": str(original), "unlearned": str(unlearned)})
    from .judges import JudgeUnavailable
    from .judges.spec import build_judge

    try:
        judge, judge_key = build_judge(settings.judge, concept, original=str(original),
                                       zoo_original=str(original).startswith("zoo:"))
    except JudgeUnavailable as exc:
        return _fail(f"--judge {settings.judge!r}: {exc}")
    probe.use_judge(judge, judge_key)
    progress.set("probing: sweeps, null finishes and classifier", probe)
    from .report import (
        bracket_at,
        calibration_table,
        plot_calibrated,
        plot_curve,
        terminal_table,
        write_image_grid,
        write_json_report,
    )

    verdict = probe.verdict(psi, ccs_max)
    # The curve the verdict read (a judge that failed its check read ψ = 0 only: nothing more is swept).
    curve = verdict.ccs_curve if verdict.ccs_curve is not None else probe.ccs_curve(probe.verdict_grid(psi))
    heldout = probe.heldout_accuracy
    gap = probe.concealment_gap(curve.psis) if reference_pipe is not None else None
    attacks = _attacks(args, probe, ccs_max, progress)
    progress.set("writing the plot and image grid")
    images = probe.images(curve.psis)
    progress.close()
    print(f"concept {concept.name!r}, {unlearned} vs {original}: "
          f"{len(probe.eval_seeds) * len(concept.prompts)} images per psi")
    print(f"  {'psi':>6} | {'CCS':>6} | {'95% CI':^17}")
    for point in curve.psis:
        e = curve.at(point)
        print(f"  {point:>6.3f} | {e.mean:>6.3f} | [{e.low:.3f}, {e.high:.3f}]")
    print(f"classifier held-out accuracy {heldout:.3f} ({settings.backbone})")
    from .rows import ResultRow

    row = ResultRow(test="uoc audit", model=unlearned, concept=concept.name,
                    outcome="passed" if verdict.passed else "failed", values={
        "verdict": verdict.kind, "psi": psi, "ccs_max": ccs_max, "ccs_at_zero": curve.at(0.0).mean,
        "ccs_at_psi": curve.at(psi).mean if psi in curve else None, "threshold": verdict.first_retrieving_psi, "heldout_accuracy": heldout,
        "curve": curve.to_dict(),
        "rule": "absolute" if verdict.calibration is None else f"calibrated:{verdict.calibration['mode']}",
        "reason": verdict.reason, "anchors": list(probe.anchors), "prompts": list(concept.prompts),
        "gate": "not_retrievable", "calibration": verdict.calibration,
        "bracket_at_psi": bracket_at(verdict, psi), "judge": verdict.judge},
        seconds=round(time.perf_counter() - start, 1), cost=probe.cost.to_dict())
    if gap is not None:
        row.values["gap"] = gap.to_dict()
        print("concealment gap (unlearned - reference): "
              + ", ".join(f"psi={p:.2f}: {gap.at(p).mean:+.3f}" for p in gap.psis))
    if verdict.calibration is not None:
        for line in calibration_table(verdict):
            print(line)
    for line in terminal_table([row.to_dict()]):
        print(line)
    if verdict.judge:
        from .gates._common import judge_line

        print(judge_line(verdict.judge))
    print(f"verdict: {verdict.kind.upper()}: {verdict.reason}")
    if attacks:  # the partial-diffusion gate's entry first, so the report's deciding gate is the first that failed
        from .gates._common import verdict_checks
        from .rows import GateEntry

        row.gates.append(GateEntry.of("not_retrievable", verdict_checks(verdict, curve, ccs_max),
                                      passed=verdict.passed))
    for attack, result in attacks:
        row.apply(result.row)
        print(f"attack {attack}: {result.verdict.kind.upper()}: {result.verdict.reason}")
        if not result.passed:
            print("\n".join(result.message.splitlines()[1:]))
    passed = verdict.passed and all(result.passed for _, result in attacks)
    row.outcome = "passed" if passed else "failed"
    from .record import page_record, probe_record

    row.values["run"] = probe_record(probe)
    written = []  # an output error never costs the verdict: it is printed above, the exit status stands
    for write in (
        lambda: plot_curve(curve, out / "ccs_curve.png", limit=ccs_max, psi_limit=psi,
                           title=f"{concept.name}: {unlearned}"),
        lambda: write_image_grid(images, out / "image_grid.png"),
        *([lambda: plot_calibrated(verdict.calibration, out / "calibration.png", limit=ccs_max, psi_limit=psi,
                                   title=f"{concept.name}: {unlearned}")] if verdict.calibration else []),
    ):
        try:
            written.append(str(write()))
        except OSError as exc:
            print(f"uoc: warning: could not write into {out}: {exc}", file=sys.stderr)
    row.values["pictures"] = [w for w in written if w.endswith(".png")]
    documents = [lambda: write_json_report(out / "report.json", [row.to_dict()], settings)]
    if settings.html:
        from .html_report import write_html_report

        documents.append(lambda: write_html_report(settings.html, [row.to_dict()], page_record(settings)))
    for write in documents:
        try:
            written.append(str(write()))
        except OSError as exc:
            print(f"uoc: warning: could not write a report: {exc}", file=sys.stderr)
    if written:
        print("written: " + ", ".join(written))
    print(_cache_line(session))
    print(json.dumps({"verdict": verdict.kind, "passed": passed,
                      **{attack: result.verdict.kind for attack, result in attacks}}))
    return EXIT_OK if passed else EXIT_FAILED


def _attacks(args: argparse.Namespace, probe: Any, ccs_max: float, progress: _Progress) -> list[tuple[str, Any]]:
    """The gates of the ``--attack`` names (each once, in the order given), at their budgets (``--attack-steps``)."""
    from .gates import attacked

    results = []
    steps = getattr(args, "attack_steps", None)
    for attack in dict.fromkeys(getattr(args, "attack", None) or ()):
        progress.set(f"attack: {attack}", probe)
        settings = attacked.attack_settings(attack, None if steps is None else {"steps": steps}, probe.settings.seed)
        results.append((attack, attacked.evaluate(probe, attack, ccs_max, settings)))
    return results


def _cache_line(session: object) -> str:
    """Trim the cache to its size limit; one line saying where it is and what was evicted."""
    from .cache import cache_size, evict_lru

    limit = session.settings.cache_max_mb
    removed, freed = evict_lru(session.cache_dir, limit * 1_000_000) if limit else (0, 0)
    line = f"cache: {session.cache_dir} ({cache_size(session.cache_dir) / 1e6:.1f} MB"
    line += f" of {limit} MB)" if limit else ")"
    if removed:
        line += f"; evicted {removed} least recently used file(s), {freed / 1e6:.1f} MB"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``uoc``."""
    args = _parser().parse_args(argv)  # argparse's own usage errors exit with 2
    if args.command != "audit":  # pragma: no cover - argparse enforces the command
        return EXIT_USAGE
    try:
        return audit(args)
    except KeyboardInterrupt:
        print("uoc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug of ours, not the user's mistake
        import traceback

        traceback.print_exc()
        print(f"uoc: internal error: {type(exc).__name__}: {exc} (please report it with the command line)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
