"""Shared test setup: tiny offline pipelines, and a single CPU thread per worker."""

from __future__ import annotations

# diffusers first, before any in-process pytester run: pytester's sys.modules snapshot would drop
# torch._dynamo (which diffusers imports), and torch cannot import it a second time.
import diffusers  # noqa: F401
import pytest
import torch

torch.set_num_threads(1)

WORDS = [
    "a red handwritten three", "the digit 3 in blue", "a green handwritten eight",
    "a handwritten seven", "trois", "drei", "tres",
]


@pytest.fixture(scope="session")
def tiny_pipe():
    """A random-weight tiny StableDiffusionPipeline built offline (do not mutate it)."""
    from pytest_uoc.zoo.build import TEST_SIZE, build_pipeline

    return build_pipeline(WORDS, TEST_SIZE, seed=0)


@pytest.fixture(scope="session")
def tiny_unet():
    """A second random-weight UNet of the tiny pipeline's shape: the "unlearned" model."""
    from pytest_uoc.zoo.build import TEST_SIZE, build_unet

    return build_unet(TEST_SIZE, seed=1)
