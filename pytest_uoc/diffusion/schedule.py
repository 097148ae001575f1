"""The ψ mapping: which scheduled steps the original and the unlearned model run.

ψ is a fraction of *training* timesteps (docs/definitions.md): with ``N`` training
timesteps the cutoff is ``c = round(N * (1 - ψ))``; the original model runs
every scheduled step whose timestep ``t >= c`` and the unlearned model the
rest. Timesteps are scheduled in decreasing order, so the original always runs
a prefix of the schedule.

ψ on flow-matching schedules (SD3, Flux): the timesteps are ``t = σ·N`` with σ
in (0, 1], so the original runs while ``σ >= 1 - ψ``. Their first timestep is
``t = N`` itself, which ``t >= c`` would hand to the original even at ψ = 0;
ψ = 0 means the unlearned model alone, so at ψ = 0 the original runs no step
(on SD's schedules, whose timesteps stay below N, this changes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..units import check_psi

__all__ = ["StepSplit", "check_psi", "cutoff_timestep", "split_steps"]


def cutoff_timestep(psi: float, num_train_timesteps: int = 1000) -> int:
    """The cutoff timestep ``c = round(N * (1 - ψ))`` of docs/definitions.md."""
    return round(num_train_timesteps * (1.0 - check_psi(psi)))


@dataclass(frozen=True)
class StepSplit:
    """Which inference steps each model runs for one ψ.

    ``original`` and ``unlearned`` hold step indices into ``timesteps``; the
    original's steps always come first.
    """

    psi: float
    cutoff: int
    timesteps: tuple[float, ...]
    original: tuple[int, ...]
    unlearned: tuple[int, ...]

    @property
    def handoff(self) -> int:
        """Number of steps the original runs before handing the latent over."""
        return len(self.original)


def split_steps(
    psi: float, timesteps: Sequence[float], num_train_timesteps: int = 1000
) -> StepSplit:
    """Split a decreasing timestep schedule at the cutoff of ``psi``."""
    value = check_psi(psi)
    cutoff = cutoff_timestep(value, num_train_timesteps)
    ts = tuple(float(t) for t in timesteps)
    if any(later > earlier for earlier, later in zip(ts, ts[1:], strict=False)):
        raise ValueError("timesteps must be in non-increasing order, as diffusers schedules them")
    handoff = 0 if value == 0.0 else sum(1 for t in ts if t >= cutoff)
    return StepSplit(
        psi=value,
        cutoff=cutoff,
        timesteps=ts,
        original=tuple(range(handoff)),
        unlearned=tuple(range(handoff, len(ts))),
    )
