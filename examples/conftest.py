"""How a model repository loads its models: here, the embedded zoo's.

pytest.ini names the original (``uoc_original = zoo:digits``). Tests name the
checkpoint under test on their marker (``unlearned="zoo:..."``); a test that
names none gets the ``unlearned_pipeline`` fixture below, the way a repository
loads its own published UNet weights, e.g.::

    return load_unlearned(original_pipeline, "checkpoints/esd-vangogh/unet.safetensors")
"""

import pytest

from pytest_uoc import zoo


@pytest.fixture(scope="session")
def unlearned_pipeline(original_pipeline):
    """The gold standard retrained without any three (its UNet weights file, as published)."""
    from pytest_uoc.diffusion import load_unlearned

    return load_unlearned(original_pipeline, zoo.unet_path("digits-gold-three"))
