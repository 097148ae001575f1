"""pytest-uoc's fixtures: the models, the classifier, and ``uoc``, the test's probe.

Override ``original_pipeline`` or ``unlearned_pipeline`` in a conftest.py to
load models your own way; everything downstream uses whatever they return.
No torch at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .concept import Concept
from .session import CURRENT_REQUEST

__all__ = [
    "original_pipeline", "reference_pipeline", "uoc", "uoc_classifier", "uoc_judge", "uoc_session", "unlearned_pipeline",
]


def _session(request: pytest.FixtureRequest) -> Any:
    from .plugin import get_session

    return get_session(request.config)


@pytest.fixture(scope="session")
def uoc_session(request: pytest.FixtureRequest) -> Any:
    """The pytest-uoc session state (settings, loaded models, results)."""
    return _session(request)


@pytest.fixture(scope="session")
def original_pipeline(uoc_session: Any) -> Any:
    """The original model (``--uoc-original``, default ``zoo:digits``)."""
    return uoc_session.load_original()


@pytest.fixture(scope="session")
def unlearned_pipeline(uoc_session: Any, request: pytest.FixtureRequest) -> Any:
    """The unlearned model (``--uoc-unlearned``), sharing the original's VAE and text side."""
    location = uoc_session.settings.unlearned
    if not location:
        raise pytest.UsageError(
            "pytest-uoc: no unlearned model. Give --uoc-unlearned LOCATION (a diffusers folder, a UNet "
            "weight file or zoo:NAME), set uoc_unlearned in the ini file, pass unlearned=... to the "
            "uoc_concept marker, or override the unlearned_pipeline fixture in conftest.py."
        )
    return uoc_session.load_unlearned(location, request.getfixturevalue("original_pipeline"))


@pytest.fixture(scope="session")
def reference_pipeline(uoc_session: Any, original_pipeline: Any) -> Any:
    """The gold-standard model that never learned the concept (``--uoc-reference``), or None."""
    location = uoc_session.settings.reference
    if not location:
        return None
    return uoc_session.load_unlearned(location, original_pipeline, role="reference")


def _concept_marker(request: pytest.FixtureRequest) -> tuple[Concept, dict[str, Any]]:
    marker = request.node.get_closest_marker("uoc_concept")
    if marker is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: the uoc fixture needs @pytest.mark.uoc_concept('NAME', prompts=[...]) on the test"
        )
    base = Path(str(request.node.path)).parent
    try:
        concept = Concept.from_marker(marker.args, dict(marker.kwargs), base=base)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise pytest.UsageError(f"{request.node.nodeid}: {exc}") from None
    extra = {k: v for k, v in marker.kwargs.items() if k not in ("prompts", "retain")}
    return concept, extra


@pytest.fixture
def uoc(request: pytest.FixtureRequest, uoc_session: Any) -> Any:
    """The probe of this test's ``uoc_concept``: sweeps and scores, each computed once per session."""
    from .plugin import settings_for

    concept, marker_kwargs = _concept_marker(request)
    settings = settings_for(request.config, marker_kwargs)
    original = request.getfixturevalue("original_pipeline")
    labels = {"original": str(settings.original)}
    kind_changed = settings.unlearned_kind != uoc_session.settings.unlearned_kind  # marker kind=
    if (marker_kwargs.get("unlearned") and not settings.explicit("unlearned")) or (kind_changed and settings.unlearned):
        unlearned = uoc_session.load_unlearned(str(settings.unlearned), original, kind=settings.unlearned_kind)
    else:
        unlearned = request.getfixturevalue("unlearned_pipeline")
    labels["unlearned"] = str(settings.unlearned or "unlearned_pipeline fixture")
    if marker_kwargs.get("reference") and not settings.explicit("reference"):
        reference = uoc_session.load_unlearned(str(settings.reference), original, role="reference")
    else:
        reference = request.getfixturevalue("reference_pipeline")
    if reference is not None:
        labels["reference"] = str(settings.reference or "reference_pipeline fixture")
    return uoc_session.probe(concept, original, unlearned, reference, settings, labels)


@pytest.fixture
def uoc_classifier(uoc: Any) -> Any:
    """The domain classifier of this test's concept (λO = 1, λU = 0)."""
    return uoc.classifier


@pytest.fixture
def uoc_judge() -> Any:
    """The judge the facet assertions use when none is passed: None here; override it in conftest.py.

    A judge is ``judge(images) -> one label per image`` (booleans "shows the concept"
    for ``assert_no_leakage``, labels for ``assert_aligned``/``assert_pinpoint``); see
    ``pytest_uoc.judges``, e.g. ``return zoo_digit_judge(uoc.concept.name)``.
    """
    return None


@pytest.fixture(autouse=True)
def _uoc_current_request(request: pytest.FixtureRequest):
    """Lets assertions called without ``probe=`` find this test's probe."""
    token = CURRENT_REQUEST.set(request)
    try:
        yield
    finally:
        CURRENT_REQUEST.reset(token)
