"""Benchmark: ``PartialDiffusion.sweep`` against one full generation per ψ.

A tiny Stable Diffusion configuration on the CPU (``pytest_uoc.zoo.build``'s
ZOO_SIZE by default: the size of the embedded zoo models, 16x16 latents; or
TEST_SIZE with ``--size test``), random weights, an 11-point uniform ψ grid
(0, 0.1, ..., 1) x 8 seeds x 1 prompt, 50 DDIM steps ("leading", SD 1.x's
configuration), classifier-free guidance 7.5.

The naive way is ``reference_partial_diffusion``: one full pipeline call per ψ
whose ``callback_on_step_end`` swaps in the unlearned UNet at the cutoff. Its
UNet evaluations are counted as image-steps (11 x 8 x 50); the sweep reports
its own, which the script checks against forward hooks on both UNets.

Targets (issue 2): evaluation ratio at the theoretical minimum for shared
prefixes (about 0.59 for this grid) and wall-time ratio at most 0.65.

    python benchmarks/bench_sweep.py [--repeats 3] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_uoc.diffusion import PartialDiffusion  # noqa: E402
from pytest_uoc.diffusion.reference import reference_partial_diffusion  # noqa: E402
from pytest_uoc.zoo.build import TEST_SIZE, ZOO_SIZE, build_pipeline, build_unet  # noqa: E402

PROMPT = "a red handwritten three"
WALL_TARGET = 0.65


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each way (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--size", choices=("zoo", "test"), default="zoo", help="pipeline size (default zoo)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    parser.add_argument("--seeds", type=int, default=8, help="number of seeds (default 8)")
    parser.add_argument("--psis", type=int, default=11, help="points of the uniform psi grid (default 11)")
    parser.add_argument("--guidance", type=float, default=7.5, help="guidance scale (default 7.5)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.steps < 1 or args.seeds < 1 or args.psis < 2:
        parser.error("--repeats, --threads, --steps and --seeds must be >= 1, --psis >= 2")
    return args


def count_rows(*unets: torch.nn.Module) -> tuple[dict[str, int], list]:
    rows = {"n": 0}

    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        rows["n"] += int(sample.shape[0])

    return rows, [u.register_forward_pre_hook(hook, with_kwargs=True) for u in unets]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    size = ZOO_SIZE if args.size == "zoo" else TEST_SIZE
    psis = [round(i / (args.psis - 1), 10) for i in range(args.psis)]
    seeds = list(range(args.seeds))
    prompts = [PROMPT]

    pipe = build_pipeline([PROMPT, "a handwritten seven"], size, seed=0)
    unlearned_unet = build_unet(size, seed=1)
    engine = PartialDiffusion(
        pipe, unlearned_unet, num_inference_steps=args.steps, guidance_scale=args.guidance,
        batch_size=max(16, len(seeds)),
    )
    n_images = len(prompts) * len(seeds)
    cfg_rows = 2 if engine.do_cfg else 1

    def run_sweep():
        return engine.sweep(prompts, psis, seeds)

    def run_naive():
        return {
            psi: reference_partial_diffusion(
                pipe, unlearned_unet, prompts, psi, seeds,
                num_inference_steps=args.steps, guidance_scale=args.guidance,
            )
            for psi in psis
        }

    # Warm-up (not timed), counting what each way really sends through the UNets.
    rows, handles = count_rows(pipe.unet, unlearned_unet)
    sweep = run_sweep()
    sweep_rows = rows["n"]
    rows["n"] = 0
    naive = run_naive()
    naive_rows = rows["n"]
    for handle in handles:
        handle.remove()
    worst = max(float((sweep[psi] - naive[psi]).abs().max()) for psi in psis)

    # Interleaved, so a change in machine load hits both ways alike. CPU time of this
    # process is recorded too: it is less sensitive to other jobs on a busy machine.
    sweep_times, naive_times, sweep_cpu, naive_cpu = [], [], [], []
    for _ in range(args.repeats):
        for run, wall, cpu in ((run_sweep, sweep_times, sweep_cpu), (run_naive, naive_times, naive_cpu)):
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)

    handoffs = sorted({split.handoff for split in sweep.splits.values()})
    steps = len(engine.timesteps)
    theoretical = (max(handoffs) + sum(steps - k for k in handoffs)) * n_images
    naive_evals = len(psis) * n_images * steps
    eval_ratio = sweep.unet_evals / naive_evals
    sweep_wall, naive_wall = statistics.median(sweep_times), statistics.median(naive_times)
    wall_ratio = sweep_wall / naive_wall
    cpu_ratio = statistics.median(sweep_cpu) / statistics.median(naive_cpu)
    eval_pass = sweep.unet_evals == theoretical and sweep_rows == cfg_rows * sweep.unet_evals
    wall_pass = wall_ratio <= WALL_TARGET
    n_params = sum(p.numel() for p in pipe.unet.parameters())

    figures = {
        "config": {
            "size": args.size, "unet_parameters": n_params, "latent": size.latent_size,
            "image": size.latent_size * 2, "steps": args.steps, "scheduler": type(pipe.scheduler).__name__,
            "timestep_spacing": pipe.scheduler.config.timestep_spacing, "guidance_scale": args.guidance,
            "psis": psis, "seeds": len(seeds), "prompts": len(prompts), "threads": args.threads,
            "repeats": args.repeats, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "handoffs": handoffs,
        "unet_evals": {
            "sweep": sweep.unet_evals, "naive": naive_evals, "theoretical_minimum": theoretical,
            "ratio": eval_ratio, "sweep_unet_rows": sweep_rows, "naive_unet_rows": naive_rows,
        },
        "wall_seconds": {
            "sweep_median": sweep_wall, "naive_median": naive_wall, "ratio": wall_ratio,
            "sweep_all": sweep_times, "naive_all": naive_times,
        },
        "cpu_seconds": {
            "sweep_median": statistics.median(sweep_cpu), "naive_median": statistics.median(naive_cpu),
            "ratio": cpu_ratio, "sweep_all": sweep_cpu, "naive_all": naive_cpu,
        },
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "max_abs_difference_sweep_vs_naive": worst,
        "targets": {"eval_ratio": theoretical / naive_evals, "wall_ratio": WALL_TARGET},
        "pass": {"evals": eval_pass, "wall": wall_pass},
    }

    print(f"bench_sweep: {args.size.upper()}_SIZE pipeline ({n_params:,} UNet parameters, "
          f"{size.latent_size}x{size.latent_size} latents), {type(pipe.scheduler).__name__} "
          f"{args.steps} steps ({pipe.scheduler.config.timestep_spacing}), guidance {args.guidance}, "
          f"{len(psis)} psi x {len(seeds)} seeds x {len(prompts)} prompt, {args.threads} thread(s), "
          f"{args.repeats} repeat(s)")
    print(f"hand-offs (steps run by the original): {handoffs}")
    print(f"{'':24}{'sweep':>12}{'naive':>12}{'ratio':>10}")
    print(f"{'UNet evaluations':24}{sweep.unet_evals:>12}{naive_evals:>12}{eval_ratio:>10.4f}")
    print(f"{'UNet rows (with CFG)':24}{sweep_rows:>12}{naive_rows:>12}{sweep_rows / naive_rows:>10.4f}")
    print(f"{'median wall time (s)':24}{sweep_wall:>12.2f}{naive_wall:>12.2f}{wall_ratio:>10.4f}")
    print(f"{'median CPU time (s)':24}{statistics.median(sweep_cpu):>12.2f}"
          f"{statistics.median(naive_cpu):>12.2f}{cpu_ratio:>10.4f}")
    if hasattr(os, "getloadavg"):
        print(f"load average during the run: {os.getloadavg()[0]:.2f} (timings are noisy when busy)")
    print(f"max |sweep - naive| over all images: {worst:.2e}")
    print(f"evaluations: {'PASS' if eval_pass else 'FAIL'} (theoretical minimum {theoretical}, "
          f"ratio {theoretical / naive_evals:.4f})")
    print(f"wall time:   {'PASS' if wall_pass else 'FAIL'} (ratio {wall_ratio:.3f}, target <= {WALL_TARGET})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0 if eval_pass and wall_pass and worst <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
