"""``uoc audit``: run one concept's probe outside pytest and print the verdict.

    uoc audit --original zoo:digits --unlearned zoo:digits-esd-three --concept three

prints the CCS table and the verdict, and writes the curve plot, an image grid
and a JSON report (the same schema as ``--uoc-report``) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .config import OPTIONS, SettingError, parse_seeds

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uoc", description="pytest-uoc: unlearning or concealment?")
    commands = parser.add_subparsers(dest="command", required=True)
    audit = commands.add_parser("audit", help="probe one concept and print its verdict",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    audit.add_argument("--original", default="zoo:digits", help="diffusers folder or zoo:NAME (default zoo:digits)")
    audit.add_argument("--unlearned", required=True, help="diffusers folder, unet/ folder, UNet weight file or zoo:NAME")
    audit.add_argument("--reference", default=None, help="gold-standard model (optional): adds the concealment gap")
    audit.add_argument("--concept", required=True, help="concept name (zoo concepts get default prompts)")
    audit.add_argument("--prompt", action="append", default=None, help="a concept prompt (repeatable)")
    audit.add_argument("--prompts-file", default=None, help="text file of prompts, one per line")
    audit.add_argument("--seeds", default="32", help="seeds per prompt: N, A-B or a comma list (default 32)")
    audit.add_argument("--psi", type=float, default=0.55, help="largest ψ the gate checks (default 0.55)")
    audit.add_argument("--ccs-max", type=float, default=0.2, help="CCS limit (default 0.2)")
    audit.add_argument("--steps", type=int, default=50)
    audit.add_argument("--guidance-scale", type=float, default=7.5)
    audit.add_argument("--batch-size", type=int, default=32)
    audit.add_argument("--backbone", default="resnet18")
    audit.add_argument("--device", default="auto")
    audit.add_argument("--out", default="uoc-audit", help="folder for the plot, grid and JSON (default uoc-audit)")
    return parser


def _fail(message: str) -> int:
    print(f"uoc: error: {message}", file=sys.stderr)
    return 2


def audit(args: argparse.Namespace) -> int:
    from .concept import Concept, default_prompts, read_prompt_file

    by_name = {o.name: o for o in OPTIONS}
    try:
        original = by_name["original"].parse(args.original)
        unlearned = by_name["unlearned"].parse(args.unlearned)
        reference = by_name["reference"].parse(args.reference) if args.reference else None
        seeds = parse_seeds(args.seeds)
        device = by_name["device"].parse(args.device)
        backbone = by_name["backbone"].parse(args.backbone)
    except SettingError as exc:
        return _fail(str(exc))
    if not 0 <= args.psi <= 1 or not 0 <= args.ccs_max <= 1:
        return _fail(f"--psi and --ccs-max must be in [0, 1], got {args.psi} and {args.ccs_max}")
    prompts = tuple(args.prompt or ())
    if args.prompts_file:
        try:
            prompts += read_prompt_file(args.prompts_file)
        except (FileNotFoundError, ValueError) as exc:
            return _fail(str(exc))
    concept = Concept(args.concept, prompts or default_prompts(args.concept))

    from .config import Settings
    from .probe import Probe, ProbeSettings
    from .report import plot_curve, terminal_table, write_image_grid, write_json_report
    from .session import UocSession

    settings = Settings(original=original, unlearned=unlearned, reference=reference, device=device,
                        steps=args.steps, guidance_scale=args.guidance_scale, seeds=seeds,
                        batch_size=args.batch_size, backbone=backbone)
    session = UocSession(settings=settings, rootdir=Path.cwd())
    start = time.perf_counter()
    original_pipe = session.load_original()
    unlearned_pipe = session.load_unlearned(unlearned, original_pipe)
    reference_pipe = session.load_unlearned(reference, original_pipe, role="reference") if reference else None
    from .diffusion import PartialDiffusion

    def engine(other: object) -> PartialDiffusion:
        return PartialDiffusion(original_pipe, other, num_inference_steps=args.steps,
                                guidance_scale=args.guidance_scale, batch_size=args.batch_size)

    probe = Probe(concept, engine(unlearned_pipe), ProbeSettings(seeds=seeds, backbone=backbone),
                  reference_engine=engine(reference_pipe) if reference_pipe is not None else None,
                  labels={"original": original, "unlearned": unlearned})
    verdict = probe.verdict(args.psi, args.ccs_max)
    curve = probe.ccs_curve(probe.verdict_grid(args.psi))
    out = Path(args.out)
    print(f"concept {concept.name!r}, {unlearned} vs {original}: {len(probe.eval_seeds) * len(concept.prompts)} images per psi")
    print(f"  {'psi':>6} | {'CCS':>6} | {'95% CI':^17}")
    for psi in curve.psis:
        e = curve.at(psi)
        print(f"  {psi:>6.3f} | {e.mean:>6.3f} | [{e.low:.3f}, {e.high:.3f}]")
    print(f"classifier held-out accuracy {probe.heldout_accuracy:.3f} ({backbone})")
    row = {"test": "uoc audit", "model": unlearned, "concept": concept.name, "verdict": verdict.kind,
           "psi": args.psi, "ccs_max": args.ccs_max, "ccs_at_zero": curve.at(0.0).mean,
           "ccs_at_psi": curve.at(args.psi).mean, "threshold": verdict.first_retrieving_psi,
           "heldout_accuracy": probe.heldout_accuracy, "curve": curve.to_dict(),
           "seconds": round(time.perf_counter() - start, 1), "cost": probe.cost.to_dict()}
    reference_curve = None
    if reference_pipe is not None:
        gap = probe.concealment_gap(curve.psis)
        row["gap"] = gap.to_dict()
        print("concealment gap (unlearned - reference): "
              + ", ".join(f"psi={p:.2f}: {gap.at(p).mean:+.3f}" for p in gap.psis))
    paths = [
        plot_curve(curve, out / "ccs_curve.png", limit=args.ccs_max, psi_limit=args.psi,
                   title=f"{concept.name}: {unlearned}", reference=reference_curve),
        write_image_grid(probe.images(curve.psis), out / "image_grid.png"),
        write_json_report(out / "report.json", [row], settings),
    ]
    for line in terminal_table([row]):
        print(line)
    print(f"verdict: {verdict.kind.upper()}: {verdict.reason}")
    print("written: " + ", ".join(str(p) for p in paths))
    print(json.dumps({"verdict": verdict.kind, "passed": verdict.passed}))
    return 0 if verdict.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``uoc``."""
    args = _parser().parse_args(argv)
    if args.command == "audit":
        return audit(args)
    return 2  # pragma: no cover - argparse enforces the command


if __name__ == "__main__":
    raise SystemExit(main())
