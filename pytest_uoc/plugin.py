"""pytest hooks of pytest-uoc (no torch at module level: ``pytest --help`` stays fast).

Options live in the ``uoc`` group, each with an ini key and most with an
environment variable; ``config.py`` holds the table and the precedence rules.
Fixtures live in ``fixtures.py``, results in ``session.UocSession``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .config import OPTIONS, SettingError, Settings, resolve_settings
from .session import UocSession

pytest_plugins = ["pytest_uoc.fixtures"]

SESSION_KEY = pytest.StashKey[UocSession]()
CUDA_MISSING = "CUDA is not available"
ROW_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("uoc", "unlearning or concealment (pytest-uoc)")
    for option in OPTIONS:
        env = f" [env {option.env_var}]" if option.env else ""
        if option.name == "cache_clear":
            group.addoption(option.cli, action="store_true", default=None, dest=f"uoc_{option.name}",
                            help=option.help)
        else:
            group.addoption(option.cli, action="store", default=None, dest=f"uoc_{option.name}",
                            metavar=option.metavar or option.name.upper(), help=f"{option.help}{env}")
        parser.addini(option.ini, help=f"{option.help} (pytest-uoc)", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped with 'CUDA is not available' where there is none "
                                       "(--uoc-device cpu runs it on the CPU on purpose)")
    config.addinivalue_line("markers", "uoc_concept(name, prompts=None, retain=None, seeds=None, **settings): "
                                       "the concept a pytest-uoc test is about")
    cli = {o.name: config.getoption(f"uoc_{o.name}") for o in OPTIONS}
    ini = {o.name: config.getini(o.ini) for o in OPTIONS}
    try:
        settings = resolve_settings(cli, ini)
    except SettingError as exc:
        raise pytest.UsageError(f"pytest-uoc: {exc}") from None
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    session = UocSession(settings=settings, rootdir=Path(str(config.rootpath)), worker=worker)
    config.stash[SESSION_KEY] = session
    if settings.cache_clear and worker is None:
        from .cache import clear_cache

        clear_cache(session.cache_dir)
    _register_hypothesis_profile()


def _register_hypothesis_profile() -> None:
    """The ``uoc`` hypothesis profile: no deadline, few examples, derandomised in CI."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # pragma: no cover - hypothesis is a dependency
        return
    settings.register_profile(
        "uoc", deadline=None, max_examples=8, derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        print_blob=True,
    )


def get_session(config: pytest.Config) -> UocSession:
    return config.stash[SESSION_KEY]


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    session = get_session(config)
    if session.settings.device == "cpu" or _cuda_available():
        return
    skip = pytest.mark.skip(reason=CUDA_MISSING)
    for item in gpu_items:
        item.add_marker(skip)


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:
    """Attach the key numbers of a concept test to JUnit XML (record_property)."""
    if call.when != "call":
        return
    row = item.stash.get(ROW_KEY, None)
    if row is None:
        return
    row["outcome"] = "failed" if call.excinfo is not None else "passed"
    for key in ("verdict", "ccs_at_zero", "ccs_at_psi", "heldout_accuracy", "crs", "retention"):
        if row.get(key) is not None:
            item.user_properties.append((f"uoc_{key}", row[key]))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = get_session(config)
    if not session.results:
        return
    from .report import terminal_table

    terminalreporter.write_sep("=", "pytest-uoc: unlearning or concealment")
    for line in terminal_table(session.results):
        terminalreporter.write_line(line)
    from .cache import cache_size

    size = cache_size(session.cache_dir)
    terminalreporter.write_line(f"cache: {session.cache_dir} ({size / 1e6:.1f} MB)")
    if session.settings.report:
        terminalreporter.write_line(f"report: {session.settings.report}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = get_session(config)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the rows to the controller
        import json

        workeroutput["uoc_results"] = json.dumps(state.results, default=str)
        return
    if state.settings.report and state.results:
        from .report import write_json_report

        write_json_report(state.settings.report, state.results, state.settings)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: merge a worker's result rows."""
    output = getattr(node, "workeroutput", {}) or {}
    if "uoc_results" in output:
        import json

        get_session(node.config).results.extend(json.loads(output["uoc_results"]))


def settings_for(config: pytest.Config, marker_kwargs: dict[str, Any]) -> Settings:
    """The session settings with a marker's keywords applied (lowest precedence)."""
    try:
        return get_session(config).settings.with_marker(**marker_kwargs)
    except SettingError as exc:
        raise pytest.UsageError(f"pytest-uoc: {exc}") from None
