"""pytest hooks of pytest-uoc (no torch at module level: ``pytest --help`` stays fast).

Options live in the ``uoc`` group, each with an ini key and most with an
environment variable; ``config.py`` holds the table and the precedence rules.
Fixtures live in ``fixtures.py``; the session state, its stash keys and the
recorder of gates in ``session.py`` (both import it; neither imports this module).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from .config import OPTIONS, SettingError, resolve_settings
from .session import (  # noqa: F401 - ROW_KEY and settings_for stay importable from here
    ROW_KEY,
    SESSION_KEY,
    UocSession,
    ensure_row,
    get_session,
    settings_for,
    uses_pytest_html,
)

pytest_plugins = ["pytest_uoc.fixtures"]

CUDA_MISSING = "CUDA is not available"


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


def _space_form_paths(args: list[str], invocation_dir: Path) -> list[tuple[str, str]]:
    """``(flag, value)`` of each ``--uoc-NAME VALUE`` (space form) whose value is an existing path."""
    flags = {o.cli for o in OPTIONS if o.name != "cache_clear"}
    found = []
    for token, value in zip(args, args[1:], strict=False):
        if token in flags and not value.startswith("-"):
            try:
                exists = (invocation_dir / Path(value.split("::")[0]).expanduser()).exists()
            except (OSError, ValueError):  # a name too long for a path, or a NUL: not a path pytest took
                exists = False
            if exists:
                found.append((token, value))
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Undo pytest taking a ``--uoc-NAME PATH`` value for a test path before our options were known.

    pytest picks its rootdir and ini file from the command line's paths before it
    loads plugins, so the value of ``--uoc-unlearned /elsewhere/unet.safetensors``
    (or ``--uoc-report uoc-report.json`` once that file exists) counts as a path
    then: the rootdir moves, the ini file (and its uoc_* keys) is ignored and the
    cache moves. The rootdir and ini file pytest would have chosen without those
    values are put back; where that cannot be done safely, a usage error names
    the fix: ``--uoc-unlearned=PATH`` is one token and always safe.
    """
    consumed = _space_form_paths(list(args), early_config.invocation_params.dir)
    if not consumed:
        return
    ns = early_config.known_args_namespace
    try:
        from _pytest.config.findpaths import determine_setup

        setup = determine_setup(
            inifile=ns.inifilename, override_ini=ns.override_ini, args=list(ns.file_or_dir),
            rootdir_cmd_arg=ns.rootdir or None, invocation_dir=early_config.invocation_params.dir,
        )
        rootpath, inipath = setup[0], setup[1]
        moved = (rootpath, inipath) != (early_config.rootpath, early_config.inipath)
        intended = f"rootdir {rootpath} and ini file {inipath or 'none'}"
    except Exception:  # noqa: BLE001 - another pytest: judge by where the value lies
        setup = None
        moved = any(early_config.rootpath not in (early_config.invocation_params.dir / v).resolve().parents
                    for _, v in consumed)
        intended = "the rootdir and ini file of the current folder"
    if not moved:
        return
    if setup is not None:
        try:
            _adopt_setup(early_config, args, *setup)
            return
        except Exception:  # noqa: BLE001 - pytest internals differ: stop with the fix instead
            pass
    forms = ", ".join(f"{flag} {value}" for flag, value in consumed)
    fixed = " ".join(f"{flag}={value}" for flag, value in consumed)
    raise pytest.UsageError(
        f"pytest-uoc: pytest read the value of {forms} as a test path before pytest-uoc's options were known, "
        f"so it chose rootdir {early_config.rootpath} and ini file {early_config.inipath or 'none'} instead of "
        f"{intended} (ini settings and the cache would silently differ). Write the option with '=': {fixed}"
    )


def _adopt_setup(config: pytest.Config, args: list[str], rootpath: Path, inipath: Path | None, inicfg: Any,
                 ignored: Any) -> None:
    """Give pytest the rootdir and ini file it would have chosen without the option values (pytest internals).

    The wrong ini file's ``addopts`` are taken off the arguments and the right one's
    put on; any surprise raises, and the caller stops with a usage error instead.
    """
    wrong_addopts = list(config.getini("addopts"))
    if wrong_addopts:
        if args[:len(wrong_addopts)] != wrong_addopts:
            raise ValueError("cannot take the wrong ini file's addopts off")
        del args[:len(wrong_addopts)]
    old_cut = str(config.inipath.parent) if config.inipath else str(config.rootpath)
    config._rootpath, config._inipath, config._inicfg = rootpath, inipath, inicfg
    config._ignored_config_files = ignored
    config._inicache.clear()
    config._parser.extra_info["rootdir"] = str(rootpath)
    config._parser.extra_info["inifile"] = str(inipath)
    right_addopts = list(config.getini("addopts"))
    if right_addopts:
        args[:0] = right_addopts
        config.pluginmanager.consider_preparse(right_addopts, exclude_only=False)
    ns = config.known_args_namespace
    if ns.confcutdir == old_cut:
        ns.confcutdir = str(inipath.parent) if inipath else str(rootpath)


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
    _check_device(settings)
    _check_judge(settings)
    from .xdist_groups import start_grouping

    start_grouping(config)  # -n N: one worker per concept marker (``xdist_groups``)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    session = UocSession(settings=settings, rootdir=Path(str(config.rootpath)), worker=worker)
    config.stash[SESSION_KEY] = session
    # Asked now: while a test runs, output capturing points the output at a file.
    config.stash[_TERMINAL_KEY] = _on_terminal()
    from .cache import NotACacheError, check_cache_folder

    try:  # before any work: clearing or trimming a folder of other files could lose them
        check_cache_folder(session.cache_dir)
    except NotACacheError as exc:
        source = settings.sources.get("cache_dir", "default")
        raise pytest.UsageError(f"pytest-uoc: --uoc-cache-dir ({source}): {exc}") from None
    if settings.cache_clear and not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        if config.option.collectonly:
            session.cache_note = f"cache: {session.cache_dir} not cleared (--collect-only runs nothing)"
        else:
            from .cache import clear_cache

            removed, freed = clear_cache(session.cache_dir)
            session.cache_note = (f"cache: cleared {session.cache_dir} ({removed} file(s), {freed / 1e6:.1f} MB "
                                  "of pytest-uoc's entries; nothing else touched)")
    _register_hypothesis_profile()


def _check_device(settings: Any) -> None:
    """An explicit ``cuda``/``cuda:N`` device that this machine lacks is a usage error now, not per test."""
    from .factory import missing_device

    have = missing_device(settings.device)
    if have is not None:
        source = settings.sources.get("device", "default")
        raise pytest.UsageError(
            f"pytest-uoc: --uoc-device ({source}) = {settings.device!r}, but this machine has {have}; use "
            "--uoc-device cpu to run on the CPU on purpose, or auto (gpu-marked tests are then skipped without CUDA)")


def _check_judge(settings: Any) -> None:
    """A judge that cannot work with this original (``safety-checker`` without its folder) is a usage error now;
    so is an original given as a single checkpoint file (the message says how to convert it offline)."""
    from .factory import single_file_original

    problem = single_file_original(settings.original)
    if problem:
        source = settings.sources.get("original", "default")
        raise pytest.UsageError(f"pytest-uoc: --uoc-original ({source}): {problem}")
    from .judges.spec import check_judge_for_original, parse_judge_spec

    try:
        check_judge_for_original(parse_judge_spec(settings.judge), settings.original)
    except ValueError as exc:
        source = settings.sources.get("judge", "default")
        raise pytest.UsageError(f"pytest-uoc: --uoc-judge ({source}): {exc}") from None


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


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _plugin_fixture(item: pytest.Item, name: str) -> bool | None:
    """Whether ``item`` resolves fixture ``name`` to pytest-uoc's own (None: cannot tell)."""
    try:
        defs = item.session._fixturemanager.getfixturedefs(name, item)
    except Exception:  # noqa: BLE001 - pytest internals differ between versions
        return None
    if not defs:
        return None
    return getattr(defs[-1].func, "__module__", "") == "pytest_uoc.fixtures"


def _check_markers(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marker mistakes of tests that use pytest-uoc's ``uoc`` fixture, before any test runs."""
    from .fixtures import check_marker

    settings = get_session(config).settings
    errors = []
    for item in items:
        marker = item.get_closest_marker("uoc_concept")
        if marker is None or _plugin_fixture(item, "uoc") is not True:
            continue
        markers = list(item.iter_markers("uoc_concept"))
        if len(markers) > 1:  # only the closest would count, the others (and their typos) silently ignored
            shown = "; ".join(f"uoc_concept({', '.join([repr(a) for a in m.args] + [f'{k}={v!r}' for k, v in m.kwargs.items()])})"
                              for m in markers)
            errors.append(f"{item.nodeid}: {len(markers)} uoc_concept markers ({shown}), from the test, its class or "
                          "module; a test is about one concept: keep one marker (split the test to probe several)")
            continue
        zoo_original = None
        if _plugin_fixture(item, "original_pipeline") is True:
            zoo_original = bool(settings.original and str(settings.original).startswith("zoo:"))
        try:
            check_marker(marker, item.nodeid, Path(str(item.path)).parent, settings, zoo_original)
        except pytest.UsageError as exc:
            errors.append(str(exc).removeprefix("pytest-uoc: "))
    if errors:
        raise pytest.UsageError("pytest-uoc: " + "\n".join(errors))


#: Key of a worker's usage error in xdist's ``workeroutput`` (the controller reports it).
_WORKER_USAGE_ERROR = "uoc_usage_error"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workeroutput = getattr(config, "workeroutput", None)
    try:
        _check_markers(config, items)
    except pytest.UsageError as exc:
        if workeroutput is None:
            raise
        # In an xdist worker a UsageError becomes an INTERNALERROR and its message is lost:
        # run nothing, and hand the message to the controller, which stops with it.
        workeroutput[_WORKER_USAGE_ERROR] = str(exc)
        config.hook.pytest_deselected(items=list(items))
        items[:] = []
        return
    from .xdist_groups import write_groups

    write_groups(config, items)
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    session = get_session(config)
    if session.settings.device == "cpu" or _cuda_available():
        return
    skip = pytest.mark.skip(reason=CUDA_MISSING)
    for item in gpu_items:
        item.add_marker(skip)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist (controller): where a worker writes the groups of its marked tests (``xdist_groups``)."""
    from .xdist_groups import configure_node

    configure_node(node)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist (controller): the tests of one concept marker to one worker (``xdist_groups``)."""
    from .xdist_groups import make_scheduler

    return make_scheduler(config, log)


def _outcome(report: pytest.TestReport) -> str:
    """pytest's word for a call: passed, failed, skipped, xfailed or xpassed (a strict XPASS is failed)."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed" if report.passed else "failed"
    return report.outcome


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Record the call's outcome on the test's row (xfail included) and its key numbers in JUnit XML.

    A test that uses the ``uoc`` fixture gets a row even when it calls no assertion
    (e.g. a hypothesis test reading ``uoc.ccs(psi)``). ``tryfirst`` makes this the
    outermost wrapper, so it sees the report after pytest's xfail handling.
    """
    report = yield
    if call.when != "call":
        return report
    row = item.stash.get(ROW_KEY, None)
    funcargs = getattr(item, "funcargs", None) or {}
    if row is None and "uoc" in funcargs:
        row = ensure_row(item, funcargs["uoc"])
        cost = getattr(funcargs["uoc"], "cost", None)
        row.seconds = round(report.duration, 2)
        if hasattr(cost, "to_dict"):
            row.cost = cost.to_dict()
    marker = item.get_closest_marker("uoc_concept")
    if row is None and marker is not None and report.failed:
        # A concept test that failed before any probe (e.g. a bad assertion argument) still gets its row,
        # so the summary table and the JSON report say that it failed.
        from .rows import ResultRow

        name = marker.args[0] if marker.args and isinstance(marker.args[0], str) else None
        row = ResultRow(test=item.nodeid, concept=name, seconds=round(report.duration, 2))
        item.stash[ROW_KEY] = row
        get_session(item.config).record(row)
    if row is None:
        return report
    row.outcome = _outcome(report)
    if hasattr(report, "wasxfail"):
        row.xfail_reason = report.wasxfail
    elif isinstance(report.longrepr, str) and report.longrepr.startswith("[XPASS(strict)]"):
        row.xfail_reason = report.longrepr.removeprefix("[XPASS(strict)]").strip()
        row.xpass_strict = True
    reported = row.to_dict()
    for key in ("verdict", "gate", "value", "limit", "ccs_at_zero", "ccs_at_psi", "heldout_accuracy", "crs",
                "retention"):
        if reported.get(key) is not None:
            item.user_properties.append((f"uoc_{key}", reported[key]))
    if reported.get("pictures") and uses_pytest_html(item.config):
        _attach_pictures(report, reported["pictures"])
    return report


def _attach_pictures(report: pytest.TestReport, pictures: list[str]) -> None:
    """pytest-html: the test's curves and image grids as extras of its row (embedded, base64)."""
    import base64

    import pytest_html

    extras = list(getattr(report, "extras", []) or [])
    for path in pictures:
        try:
            data = Path(path).read_bytes()
        except OSError:  # a picture is never worth the report
            continue
        extras.append(pytest_html.extras.png(base64.b64encode(data).decode(), name=Path(path).name))
    report.extras = extras


def _progress_sink(config: pytest.Config) -> Any:
    """A ``progress.ProgressLine`` on the terminal, or None: never under ``-q``, in an xdist worker or off a terminal."""
    from .progress import ProgressLine

    if config.get_verbosity() < 0 or hasattr(config, "workerinput") or not config.stash.get(_TERMINAL_KEY, False):
        return None
    writer = config.get_terminal_writer()
    capture = config.pluginmanager.getplugin("capturemanager")
    started = [False]

    def write(text: str) -> None:
        guard = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with guard:
            # The line gets a row of its own: pytest's progress line is left as it was.
            writer.write(("\n" if not started[0] else "") + text)
            writer.flush()
        started[0] = True

    return ProgressLine(write)


_TERMINAL_KEY = pytest.StashKey[bool]()


def _on_terminal() -> bool:
    """Whether pytest's output goes to a terminal (a log file or a pipe gets no progress line)."""
    import sys

    return sys.__stdout__ is not None and sys.__stdout__.isatty()


def _with_progress(item: pytest.Item) -> Any:
    """Show one updating progress line (images done / planned, ψ) while the phase runs, then clear it."""
    sink = _progress_sink(item.config)
    if sink is None:
        return (yield)
    from . import progress

    try:
        with progress.showing(sink):
            return (yield)
    finally:
        sink.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    """Fixtures that make images (a session's probe) show progress too."""
    return (yield from _with_progress(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """The test's own gates: the images they make."""
    return (yield from _with_progress(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Remember which tests finished (an interrupted run lists the others); free the probes no test needs now."""
    result = yield
    session = get_session(item.config)
    session.finished.add(item.nodeid)
    session.test_finished(item)
    return result


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = get_session(config)
    if session.usage_error:
        terminalreporter.write_line(f"ERROR: {session.usage_error}", red=True, bold=True)
    if session.cache_note:
        terminalreporter.write_line(f"pytest-uoc: {session.cache_note}")
    if session.report_error:
        terminalreporter.write_line(f"pytest-uoc: {session.report_error}", red=True, bold=True)
    if not session.results:
        if session.evicted[0]:
            terminalreporter.write_line(f"pytest-uoc: cache {session.cache_dir}: evicted {session.evicted[0]} least "
                                        f"recently used file(s), {session.evicted[1] / 1e6:.1f} MB (--uoc-cache-max-mb)")
        return
    from .report import terminal_table

    terminalreporter.write_sep("=", "pytest-uoc: unlearning or concealment")
    rows = [row.to_dict() for row in session.results]
    for line in terminal_table(rows) + _anchor_lines(rows):
        terminalreporter.write_line(line)
    if session.unfinished:
        terminalreporter.write_line(
            f"interrupted: {len(session.unfinished)} test(s) did not finish: " + ", ".join(session.unfinished[:10])
            + (" ..." if len(session.unfinished) > 10 else ""), yellow=True)
    from .cache import cache_size

    size = cache_size(session.cache_dir)
    limit = session.settings.cache_max_mb
    line = f"cache: {session.cache_dir} ({size / 1e6:.1f} MB" + (f" of {limit} MB" if limit else "") + ")"
    if session.evicted[0]:
        line += (f"; evicted {session.evicted[0]} least recently used file(s), {session.evicted[1] / 1e6:.1f} MB "
                 f"(--uoc-cache-max-mb)")
    terminalreporter.write_line(line)
    if session.settings.report and not session.report_error:
        terminalreporter.write_line(f"report: {session.settings.report}"
                                    + (" (marked interrupted)" if session.unfinished else ""))
    if session.settings.html and not session.report_error:
        terminalreporter.write_line(f"html: {session.settings.html}")


def _anchor_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Once per concept and anchor set, whatever the outcome: 'anchors of 'three' (derived): p -> a, ...'."""
    lines, seen = [], set()
    for row in rows:
        anchors, prompts = row.get("anchors"), row.get("prompts")
        if not anchors:
            continue
        key = (row.get("concept"), tuple(anchors), tuple(prompts or ()))
        if key in seen:
            continue
        seen.add(key)
        pairs = (", ".join(f"{p!r} -> {a!r}" for p, a in zip(prompts, anchors, strict=False)) if prompts
                 else ", ".join(repr(a) for a in anchors))
        how = "derived" if row.get("anchors_derived") else "given"
        lines.append(f"anchors of {row.get('concept')!r} ({how}): {pairs}")
    return lines


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = get_session(config)
    if state.usage_error:  # a worker's usage error: the run is a usage error, as without xdist
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    from .xdist_groups import stop_grouping

    stop_grouping(config)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the rows to the controller
        import json

        workeroutput["uoc_results"] = json.dumps([row.to_dict() for row in state.results], default=str)
        return
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    if interrupted:
        state.unfinished = [item.nodeid for item in session.items if item.nodeid not in state.finished]
        for row in state.results:
            if row.test in state.unfinished:
                row.outcome = "interrupted"
    if state.settings.report and state.results:
        from .report import write_json_report

        try:
            write_json_report(state.settings.report, [row.to_dict() for row in state.results], state.settings,
                              interrupted=interrupted, unfinished=state.unfinished)
        except OSError as exc:  # never lose the summary (and the verdicts) to an output error
            state.report_error = f"could not write the report {state.settings.report}: {exc}"
    if state.settings.html and state.results:
        from .html_report import write_html_report
        from .record import page_record

        try:
            write_html_report(state.settings.html, [row.to_dict() for row in state.results],
                              page_record(state.settings))
        except OSError as exc:  # never lose the summary (and the verdicts) to an output error
            note = f"could not write the HTML report {state.settings.html}: {exc}"
            state.report_error = f"{state.report_error}; {note}" if state.report_error else note
    if state.results:
        from .summary import append_step_summary

        try:
            append_step_summary([row.to_dict() for row in state.results])
        except OSError as exc:  # a summary is never worth the run's outcome
            note = f"could not append the CI step summary ($GITHUB_STEP_SUMMARY): {exc}"
            state.report_error = f"{state.report_error}; {note}" if state.report_error else note
    if state.settings.cache_max_mb:
        from .cache import evict_lru

        try:
            state.evicted = evict_lru(state.cache_dir, state.settings.cache_max_mb * 1_000_000)
        except (OSError, ValueError):  # pragma: no cover - a cache that cannot be trimmed is trimmed next time
            pass


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: merge a worker's result rows."""
    output = getattr(node, "workeroutput", {}) or {}
    if output.get(_WORKER_USAGE_ERROR):
        get_session(node.config).usage_error = output[_WORKER_USAGE_ERROR]
    if "uoc_results" in output:
        import json

        session = get_session(node.config)
        for row in json.loads(output["uoc_results"]):
            session.record(row)
