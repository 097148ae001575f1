"""The ψ mapping of docs/definitions.md: cutoff = round(N(1 - ψ)), original runs t >= cutoff."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_uoc.diffusion.schedule import StepSplit, check_psi, cutoff_timestep, split_steps

# Stable Diffusion 1.x's 50-step DDIM schedule ("leading" spacing, steps_offset 1).
SD_50 = list(range(981, 0, -20))

# ψ -> number of steps the original runs on SD_50 (it runs every t >= cutoff).
SD_50_HANDOFF = {
    0.0: 0,  # cutoff 1000: no scheduled step reaches it
    0.001: 0,  # cutoff 999: still above the first step, 981
    0.05: 2,  # cutoff 950: 981, 961
    0.25: 12,  # cutoff 750: 981 .. 761
    0.55: 27,  # cutoff 450: 981 .. 461
    0.8: 40,  # cutoff 200: 981 .. 201
    1.0: 50,  # cutoff 0: every step
}


def test_sd_schedule_is_what_the_table_assumes():
    from pytest_uoc.zoo.build import sd_scheduler

    scheduler = sd_scheduler()
    scheduler.set_timesteps(50)
    assert [int(t) for t in scheduler.timesteps] == SD_50


@pytest.mark.parametrize(
    ("psi", "n", "expected"),
    [
        (0.55, 1000, 450),
        (0.0, 1000, 1000),
        (1.0, 1000, 0),
        (0.001, 1000, 999),
        (0.05, 1000, 950),
        (0.25, 1000, 750),
        (0.8, 1000, 200),
        (0.9, 1000, 100),  # 1000 * (1 - 0.9) = 99.99999999999998 rounds to 100
        (0.7, 1000, 300),  # 300.00000000000006 rounds to 300
        (0.1234, 1000, 877),  # 876.6 rounds up
        (0.5, 10, 5),
        (0.55, 100, 45),
    ],
)
def test_cutoff_is_rounded_fraction_of_training_timesteps(psi, n, expected):
    cutoff = cutoff_timestep(psi, n)
    assert cutoff == expected
    assert isinstance(cutoff, int)


def test_cutoff_defaults_to_stable_diffusions_1000_timesteps():
    assert cutoff_timestep(0.55) == 450


@pytest.mark.parametrize(("psi", "handoff"), sorted(SD_50_HANDOFF.items()))
def test_split_on_sd_50_step_schedule(psi, handoff):
    split = split_steps(psi, SD_50, 1000)
    assert split.handoff == handoff
    assert split.original == tuple(range(handoff))
    assert split.unlearned == tuple(range(handoff, 50))
    assert split.cutoff == round(1000 * (1 - psi))
    assert all(SD_50[i] >= split.cutoff for i in split.original)
    assert all(SD_50[i] < split.cutoff for i in split.unlearned)
    assert split.psi == psi
    assert split.timesteps == tuple(float(t) for t in SD_50)


def test_psi_zero_runs_only_the_unlearned_model():
    split = split_steps(0, SD_50)
    assert split.original == ()
    assert split.unlearned == tuple(range(50))


def test_psi_one_runs_only_the_original_model():
    split = split_steps(1, SD_50)
    assert split.original == tuple(range(50))
    assert split.unlearned == ()


def test_psi_counts_training_not_inference_steps():
    # ψ = 0.25 is 12.5 inference steps of 50; the training-timestep rule gives 12.
    assert split_steps(0.25, SD_50).handoff == 12
    # A timestep equal to the cutoff belongs to the original ("t >= c").
    assert split_steps(0.019, SD_50).cutoff == 981
    assert split_steps(0.019, SD_50).handoff == 1
    assert split_steps(0.018, SD_50).handoff == 0  # cutoff 982


def test_split_accepts_tensor_timesteps():
    torch = pytest.importorskip("torch")
    split = split_steps(0.55, torch.tensor(SD_50))
    assert split.handoff == 27


def test_split_rejects_increasing_timesteps():
    with pytest.raises(ValueError, match="non-increasing"):
        split_steps(0.5, list(reversed(SD_50)))


BAD_VALUES = [
    (-0.1, ValueError, "-0.1"),
    (1.5, ValueError, "1.5"),
    (1.0000001, ValueError, "1.0000001"),
    (math.nan, ValueError, "nan"),
    (math.inf, ValueError, "inf"),
    (-math.inf, ValueError, "-inf"),
    ("0.5", TypeError, "'0.5'"),
    (True, TypeError, "True"),
    (False, TypeError, "False"),
    (None, TypeError, "None"),
    ([0.5], TypeError, r"\[0.5\]"),
]


@pytest.mark.parametrize(("bad", "error", "shown"), BAD_VALUES)
def test_bad_psi_is_rejected_with_its_value_named(bad, error, shown):
    for call in (
        lambda: check_psi(bad),
        lambda: cutoff_timestep(bad, 1000),
        lambda: split_steps(bad, SD_50, 1000),
    ):
        with pytest.raises(error, match=rf"psi.*{shown}"):
            call()


def test_numpy_scalars_are_accepted():
    np = pytest.importorskip("numpy")
    assert check_psi(np.float32(0.25)) == pytest.approx(0.25)
    assert split_steps(np.float64(0.55), SD_50).handoff == 27


def test_step_split_is_frozen():
    split = split_steps(0.5, SD_50)
    assert isinstance(split, StepSplit)
    with pytest.raises(AttributeError):
        split.cutoff = 3  # type: ignore[misc]


# -- properties -----------------------------------------------------------------------

psis = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def schedules(draw):
    """A non-increasing timestep schedule within [0, N) and its N."""
    n = draw(st.integers(min_value=1, max_value=2000))
    steps = draw(st.lists(st.integers(min_value=0, max_value=n - 1), min_size=1, max_size=60))
    return sorted(steps, reverse=True), n


@settings(max_examples=200, deadline=None)
@given(psi=psis, schedule=schedules())
def test_original_runs_a_prefix_and_the_two_cover_every_step(psi, schedule):
    timesteps, n = schedule
    split = split_steps(psi, timesteps, n)
    assert split.original == tuple(range(split.handoff))
    assert split.original + split.unlearned == tuple(range(len(timesteps)))
    assert not set(split.original) & set(split.unlearned)
    assert all(timesteps[i] >= split.cutoff for i in split.original)
    assert all(timesteps[i] < split.cutoff for i in split.unlearned)
    assert 0 <= split.cutoff <= n


@settings(max_examples=200, deadline=None)
@given(a=psis, b=psis, schedule=schedules())
def test_handoff_is_monotone_in_psi(a, b, schedule):
    timesteps, n = schedule
    low, high = sorted((a, b))
    assert cutoff_timestep(low, n) >= cutoff_timestep(high, n)
    assert split_steps(low, timesteps, n).handoff <= split_steps(high, timesteps, n).handoff


@settings(max_examples=100, deadline=None)
@given(schedule=schedules())
def test_psi_extremes_on_any_schedule(schedule):
    timesteps, n = schedule
    assert split_steps(0.0, timesteps, n).handoff == 0
    assert split_steps(1.0, timesteps, n).handoff == len(timesteps)


@settings(max_examples=100, deadline=None)
@given(psi=psis)
def test_sd_50_handoff_is_within_a_step_of_psi_times_steps(psi):
    # ψ is a fraction of training timesteps; on SD's leading 50-step schedule that
    # is within about a step of ψ × 50 inference steps.
    assert abs(split_steps(psi, SD_50).handoff - psi * 50) <= 1.5
