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
from .factory import zoo_concept
from .session import CURRENT_REQUEST, get_session, settings_for
from .xdist_groups import group_of

__all__ = [
    "original_pipeline", "reference_pipeline", "uoc", "uoc_classifier", "uoc_judge", "uoc_session", "unlearned_pipeline",
]


def _session(request: pytest.FixtureRequest) -> Any:
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


def is_zoo_pipeline(pipe: Any) -> bool:
    """Whether ``pipe`` is the zoo's original pipeline (whose concepts have default prompts)."""
    from . import zoo

    try:
        return Path(str(pipe.name_or_path)).resolve() == zoo.pipeline_path().resolve()
    except Exception:  # noqa: BLE001 - anything else is not the zoo's
        return False


def loaded_label(pipe: Any, original: Any = None, fallback: str = "unlearned_pipeline fixture") -> str:
    """What an overridden ``unlearned_pipeline`` fixture loaded, where it can be known.

    The checkpoint ``load_unlearned`` recorded (``pipe.uoc_checkpoint["path"]``), else
    the denoiser's (UNet's or transformer's) or the pipeline's ``name_or_path`` when it differs from the original's
    (a pipeline that only swapped weights in keeps the original's name), else ``fallback``.
    """
    record = getattr(pipe, "uoc_checkpoint", None)
    if isinstance(record, dict) and record.get("path"):
        return str(record["path"])

    def denoiser_name(p: Any) -> str:
        from .diffusion.families import denoiser_of

        try:
            denoiser = denoiser_of(p)  # the UNet (SD 1.x/2.x, SDXL) or the transformer (SD3, Flux)
        except AttributeError:
            denoiser = None
        config = getattr(denoiser, "config", None)
        name = config.get("_name_or_path", "") if isinstance(config, dict) else getattr(config, "_name_or_path", "")
        return str(name or "")

    for name, original_name in ((denoiser_name(pipe), denoiser_name(original)),
                                (str(getattr(pipe, "name_or_path", "") or ""),
                                 str(getattr(original, "name_or_path", "") or ""))):
        if name and name != original_name:
            return name
    return fallback


_is_zoo_concept = zoo_concept  # the old name


def check_marker(marker: Any, nodeid: str, base: Path | None, settings: Any,
                 zoo_original: bool | None) -> tuple[Concept, dict[str, Any]]:
    """Validate a ``uoc_concept`` marker; a mistake is a ``pytest.UsageError`` naming the fix.

    ``zoo_original``: whether the original model is the zoo's (None: not known yet,
    the default-prompt check is left for later).
    """
    from .config import (
        SettingError,
        check_marker_keywords,
        check_max_seeds,
        check_seeds_for_prompts,
    )

    kwargs = dict(marker.kwargs)
    try:
        check_marker_keywords(kwargs)
    except SettingError as exc:
        raise pytest.UsageError(f"pytest-uoc: {nodeid}: {exc}") from None
    name = marker.args[0] if len(marker.args) == 1 and isinstance(marker.args[0], str) else None
    prompts = kwargs.get("prompts")
    if isinstance(prompts, list | tuple | str) and len(prompts) == 0:
        raise pytest.UsageError(
            f"pytest-uoc: {nodeid}: uoc_concept({name!r}, prompts={prompts!r}) lists no prompts; give the prompts "
            f"that ask for the concept, e.g. prompts=['a photo of {name}'], or a .txt file of prompts"
        )
    if name is not None and prompts is None:
        if not zoo_concept(name):
            raise pytest.UsageError(
                f"pytest-uoc: {nodeid}: uoc_concept({name!r}) has no prompts and {name!r} is not a concept of the "
                f"embedded zoo; give prompts=['a photo of {name}', ...] (or a .txt file of prompts)"
            )
        if zoo_original is False:
            raise pytest.UsageError(
                f"pytest-uoc: {nodeid}: uoc_concept({name!r}) has no prompts; the zoo's default prompts for "
                f"{name!r} apply only when the original model is the zoo's (zoo:digits), and this original is "
                f"{settings.original!r}; give prompts=[...] on the marker"
            )
    try:
        concept = Concept.from_marker(marker.args, kwargs, base=base)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise pytest.UsageError(f"pytest-uoc: {nodeid}: {exc}") from None
    if settings.explicit("anchor"):  # --uoc-anchor / uoc_anchor / UOC_ANCHOR win over the marker's anchor=
        import dataclasses

        try:
            concept = dataclasses.replace(concept, anchors=settings.anchor)
        except (TypeError, ValueError) as exc:
            where = {"command line": "--uoc-anchor", "environment": "UOC_ANCHOR", "ini": "uoc_anchor"}.get(
                settings.sources.get("anchor", ""), "anchor")
            raise pytest.UsageError(f"pytest-uoc: {nodeid}: {where}: {exc}") from None
    extra = {k: v for k, v in kwargs.items() if k not in ("prompts", "retain")}
    try:
        effective = settings.with_marker(**extra)
        seeds = effective.seeds if effective.explicit("seeds") or concept.seeds is None else concept.seeds
        source = "" if concept.seeds is None or effective.explicit("seeds") else "uoc_concept marker seeds: "
        check_seeds_for_prompts(tuple(seeds), len(concept.prompts), where=source)
        check_max_seeds(tuple(seeds), effective.max_seeds, where=source)
    except SettingError as exc:
        raise pytest.UsageError(f"pytest-uoc: {nodeid}: {exc}") from None
    if effective.rule == "calibrated":
        try:
            concept.check_anchor_problems()
        except ValueError as exc:
            raise pytest.UsageError(f"pytest-uoc: {nodeid}: {exc}") from None
    return concept, extra


def _concept_marker(request: pytest.FixtureRequest, zoo_original: bool | None = None) -> tuple[Concept, dict[str, Any]]:
    marker = request.node.get_closest_marker("uoc_concept")
    if marker is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: the uoc fixture needs @pytest.mark.uoc_concept('NAME', prompts=[...]) on the test"
        )
    base = Path(str(request.node.path)).parent
    return check_marker(marker, request.node.nodeid, base, _session(request).settings, zoo_original)


@pytest.fixture
def uoc(request: pytest.FixtureRequest, uoc_session: Any) -> Any:
    """The probe of this test's ``uoc_concept``: sweeps and scores, each computed once per session."""
    _concept_marker(request)  # keyword and value mistakes, before any model is loaded
    original = request.getfixturevalue("original_pipeline")
    concept, marker_kwargs = _concept_marker(request, zoo_original=is_zoo_pipeline(original))
    settings = settings_for(request.config, marker_kwargs)
    labels = {"original": str(settings.original)}
    kind_changed = settings.unlearned_kind != uoc_session.settings.unlearned_kind  # marker kind=
    if (marker_kwargs.get("unlearned") and not settings.explicit("unlearned")) or (kind_changed and settings.unlearned):
        unlearned = uoc_session.load_unlearned(str(settings.unlearned), original, kind=settings.unlearned_kind)
    else:
        unlearned = request.getfixturevalue("unlearned_pipeline")
    labels["unlearned"] = str(settings.unlearned or loaded_label(unlearned, original))
    if marker_kwargs.get("reference") and not settings.explicit("reference"):
        reference = uoc_session.load_unlearned(str(settings.reference), original, role="reference")
    else:
        reference = request.getfixturevalue("reference_pipeline")
    if reference is not None:
        labels["reference"] = str(settings.reference or loaded_label(reference, original, "reference_pipeline fixture"))
    probe = uoc_session.probe(concept, original, unlearned, reference, settings, labels)
    uoc_session.used_by(probe, group_of(request.node))  # freed after the last test of its marker
    probe.use_judge(*_calibration_judge(request, concept, original, settings))
    probe.warn_idle_psis()
    return probe


def _calibration_judge(request: pytest.FixtureRequest, concept: Concept, original: Any,
                       settings: Any) -> tuple[Any, str | None]:
    """The judge the calibrated verdict counts the concept with, and a key naming it.

    The ``uoc_judge`` fixture when a conftest gives one; else the judge ``--uoc-judge``
    (or the marker's ``judge=``) names: by default (``auto``) the zoo's digit judge for the
    zoo's concepts on the zoo's original, else None (the concept classifier decides).
    """
    judge = request.getfixturevalue("uoc_judge")
    if judge is not None:
        return judge, f"uoc_judge:{type(judge).__qualname__}:{getattr(judge, '__name__', '')}"
    from .judges import JudgeUnavailable
    from .judges.spec import build_judge

    try:
        return build_judge(settings.judge, concept, original=settings.original,
                           zoo_original=is_zoo_pipeline(original))
    except JudgeUnavailable as exc:
        raise pytest.UsageError(f"pytest-uoc: {request.node.nodeid}: judge {settings.judge!r}: {exc}") from None


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
