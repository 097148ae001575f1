"""Peak memory figures for the cost block: host (resident set) and GPU high-water marks.

Both are the process's marks when read, so a row written late in a run carries
the run's peak so far, not its probe's alone; ``kept_image_bytes`` in the cost
block is the probe's own share (its decoded images).
"""

from __future__ import annotations

import sys

__all__ = ["peak_gpu_bytes", "peak_host_bytes"]


def peak_host_bytes() -> int | None:
    """The process's peak resident set size in bytes (None where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS counts bytes, Linux KiB


def peak_gpu_bytes() -> int | None:
    """torch's peak allocated CUDA memory on the current device, or None when CUDA was never used."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_allocated())
