"""Cost of one zoo UNet call on the CPU, per image row, by batch size and layout (issue 13, item 4).

Answers whether bigger batches, ``channels_last`` or the classic attention processor would make
the main job's UNet calls (75% of its cold time) cheaper. Prints ms per call and per row, and
each variant's ratio to the default (contiguous layout, scaled-dot-product attention).

    python benchmarks/bench_unet_cpu.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch


def _time_call(unet: torch.nn.Module, rows: int, hidden: torch.Tensor, repeats: int, layout: torch.memory_format) -> float:
    """Seconds per UNet call on ``rows`` latents (one warm-up call first)."""
    generator = torch.Generator("cpu").manual_seed(0)
    latents = torch.randn(rows, 4, 16, 16, generator=generator).to(memory_format=layout)
    states = hidden.expand(rows, -1, -1).contiguous()
    timesteps = torch.full((rows,), 500)
    with torch.inference_mode():
        unet(latents, timesteps, states)
        start = time.perf_counter()
        for _ in range(repeats):
            unet(latents, timesteps, states)
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", default="16,32,64,128,256", help="batch sizes (image rows) to time")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from pytest_uoc import zoo

    pipe = zoo.load("digits")
    unet = pipe.unet.eval()
    tokens = pipe.tokenizer("a red digit", padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            return_tensors="pt")
    with torch.inference_mode():
        hidden = pipe.text_encoder(tokens.input_ids)[0]
    rows = [int(r) for r in args.rows.split(",")]
    base = {}
    print(f"zoo UNet, {args.threads} threads, {args.repeats} calls each")
    # "default" again last: the spread between the two default rows is the noise of this machine.
    for variant in ("default", "channels_last", "classic attention", "classic + channels_last", "default (again)"):
        unet.set_attn_processor(AttnProcessor() if "classic" in variant else AttnProcessor2_0())
        layout = torch.channels_last if "channels_last" in variant else torch.contiguous_format
        unet.to(memory_format=layout)
        for n in rows:
            seconds = _time_call(unet, n, hidden, args.repeats, layout)
            base.setdefault(n, seconds)
            print(f"{variant:24s} rows {n:4d}  {seconds * 1e3:7.1f} ms/call  {seconds / n * 1e3:6.3f} ms/row  "
                  f"{seconds / base[n]:.2f}x default", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
