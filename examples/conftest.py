"""The example suite's models come from pytest-uoc's embedded zoo (see pytest.ini).

A real model repository would point uoc_original at its Stable Diffusion
folder and uoc_unlearned at its published UNet weights, or override the
``original_pipeline`` / ``unlearned_pipeline`` fixtures here to load them its
own way, for example::

    @pytest.fixture(scope="session")
    def unlearned_pipeline(original_pipeline):
        from pytest_uoc.diffusion import load_unlearned
        return load_unlearned(original_pipeline, "checkpoints/esd-vangogh/unet.safetensors")
"""
