"""Session state: loaded models, probes per concept, the results to report, and the recorder of gates.

One ``UocSession`` lives in ``config.stash`` for the whole pytest run. It
loads every model location once, hands out one probe per (models, concept,
settings) (built by ``factory``), and collects one ``ResultRow`` per concept test
for the terminal summary, the JSON report and, under xdist, the controller.
``run_gate`` is how an assertion runs a gate for the running test: the row, the
pictures in the test's artifact folder, the failure text. No torch at import.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .concept import Concept
from .config import SettingError, Settings
from .factory import (
    MIX_SETTING,
    build_probe,
    load_original,
    load_unlearned,
    probe_seeds,
    resolve_device,
    resolve_dtype,
)
from .gates import GateResult, draw_pictures
from .report import artifact_dir
from .rows import ResultRow

__all__ = ["CURRENT_REQUEST", "UocSession", "get_session", "uses_pytest_html", "resolve_device", "run_gate",
           "settings_for"]
__all__ += ["MIX_SETTING", "resolve_dtype"]  # moved to factory.py; kept importable from here

#: The fixture request of the running test, set by an autouse fixture so that
#: assertions called without ``probe=`` find the test's probe.
CURRENT_REQUEST: contextvars.ContextVar[Any] = contextvars.ContextVar("uoc_current_request", default=None)


@dataclass
class UocSession:
    """Everything pytest-uoc keeps for one pytest run."""

    settings: Settings
    rootdir: Path
    worker: str | None = None
    results: list[ResultRow] = field(default_factory=list)
    _models: dict[tuple[str, str], Any] = field(default_factory=dict)
    _probes: dict[tuple, Any] = field(default_factory=dict)
    #: The concept-marker groups (``xdist_groups.group_of``) whose tests used each probe.
    _probe_groups: dict[tuple, set[str]] = field(default_factory=dict)
    #: Tests still to run per concept-marker group in this process (counted at the first teardown).
    _group_tests_left: dict[str, int] | None = None
    started: float = field(default_factory=time.time)
    #: Node ids of the tests that finished; ``unfinished`` is set when a run is interrupted.
    finished: set[str] = field(default_factory=set)
    unfinished: list[str] = field(default_factory=list)
    #: Files and bytes the cache size limit evicted at the end of the run.
    evicted: tuple[int, int] = (0, 0)
    report_error: str | None = None
    #: A usage error an xdist worker found at collection (the controller stops with it).
    usage_error: str | None = None
    #: What ``--uoc-cache-clear`` did (or why it did nothing), for the terminal summary.
    cache_note: str | None = None

    @property
    def device(self) -> str:
        return resolve_device(self.settings.device, self.worker)

    @property
    def cache_dir(self) -> Path:
        if self.settings.cache_dir:
            return Path(self.settings.cache_dir)
        return self.rootdir / ".pytest_cache" / "uoc"

    def open_cache(self) -> Path:
        """The cache folder, created and marked as pytest-uoc's on first use (``cache.claim_cache``)."""
        from .cache import claim_cache

        return claim_cache(self.cache_dir)

    # -- models ------------------------------------------------------------------------

    def load_original(self, location: str | None = None) -> Any:
        """The original pipeline at ``location`` (default: the configured one), loaded once."""
        location = location or self.settings.original
        if not location:
            raise ValueError("no original model: give --uoc-original LOCATION (a diffusers folder or zoo:NAME)")
        key = ("original", location)
        if key not in self._models:
            self._models[key] = load_original(location, self.settings, self.device)
        return self._models[key]

    def load_unlearned(self, location: str, original: Any, role: str = "unlearned", kind: str | None = None) -> Any:
        """An unlearned (or reference) model next to ``original``, loaded once per location and kind.

        ``kind`` (what the file holds, see ``load_unlearned``) defaults to ``--uoc-unlearned-kind``
        for the unlearned model and to ``auto`` for the reference.
        """
        if kind is None:
            kind = getattr(self.settings, "unlearned_kind", "auto") if role == "unlearned" else "auto"
        key = (f"{role}:{id(original)}", location) if kind == "auto" else (f"{role}:{id(original)}", location, kind)
        if key not in self._models:
            self._models[key] = load_unlearned(location, original, kind)
        return self._models[key]

    # -- probes -------------------------------------------------------------------------

    def probe(self, concept: Concept, original: Any, unlearned: Any, reference: Any | None,
              settings: Settings, labels: dict[str, str]) -> Any:
        """The probe for this concept and these models, created once per session (see ``factory.build_probe``).

        The ``uoc`` fixture then says which concept-marker group used it (``used_by``); a probe no
        group used (``uoc audit``) is kept for the session.
        """
        seeds = probe_seeds(concept, settings)
        # Keyed on the whole frozen settings (every field compares): two tests that differ in any
        # setting, sequential ones included, never share a probe.
        key = (id(original), id(unlearned), id(reference), concept, seeds, settings)
        if key not in self._probes:
            self._probes[key] = build_probe(concept, original, unlearned, reference, settings, labels,
                                            self.open_cache())
        return self._probes[key]

    def used_by(self, probe: Any, group: str | None) -> None:
        """Note that a test of concept-marker ``group`` (``xdist_groups.group_of``) uses ``probe``.

        Once every test of every group that used a probe has run, ``test_finished`` drops it.
        """
        if group is None:
            return
        for key, kept in self._probes.items():
            if kept is probe:
                self._probe_groups.setdefault(key, set()).add(group)

    def test_finished(self, item: pytest.Item) -> int:
        """After ``item``'s teardown: drop the probes no test left in this process can use; how many.

        A probe holds its decoded images (hundreds of MiB per concept at 512 px), sweeps and
        classifiers. Tests of one concept marker share it; once the last of them in this process
        has run (xdist sends a marker's tests to one worker), nothing can ask for it again, so the
        session lets it go rather than keeping every concept's images to the end of the run. Should a
        test of the group still come (a plugin re-running a test), the probe is rebuilt, from the
        trajectory cache when it is on: slower, never wrong.
        """
        from .xdist_groups import group_of

        if self._group_tests_left is None:
            self._group_tests_left = {}
            for other in item.session.items:
                if (name := group_of(other)) is not None:
                    self._group_tests_left[name] = self._group_tests_left.get(name, 0) + 1
        group = group_of(item)
        if group is None or group not in self._group_tests_left:
            return 0
        self._group_tests_left[group] -= 1
        done = {name for name, left in self._group_tests_left.items() if left <= 0}
        released = [key for key, groups in self._probe_groups.items() if groups <= done]
        for key in released:
            del self._probes[key], self._probe_groups[key]
        return len(released)

    # -- results ------------------------------------------------------------------------

    def record(self, row: ResultRow | Mapping[str, Any]) -> ResultRow:
        """Keep a test's row for the report (a mapping is read as ``ResultRow.to_dict()`` wrote it)."""
        if not isinstance(row, ResultRow):
            row = ResultRow.from_dict(row)
        self.results.append(row)
        return row

    def worker_id(self) -> str | None:
        return self.worker or os.environ.get("PYTEST_XDIST_WORKER")


# -- the plugin's state on pytest objects ------------------------------------------------------------

SESSION_KEY = pytest.StashKey[UocSession]()
ROW_KEY = pytest.StashKey[ResultRow]()


def get_session(config: pytest.Config) -> UocSession:
    """The pytest-uoc session of this pytest run."""
    return config.stash[SESSION_KEY]


def settings_for(config: pytest.Config, marker_kwargs: dict[str, Any]) -> Settings:
    """The session settings with a marker's keywords applied (lowest precedence)."""
    try:
        return get_session(config).settings.with_marker(**marker_kwargs)
    except SettingError as exc:
        raise pytest.UsageError(f"pytest-uoc: {exc}") from None


def uses_pytest_html(config: pytest.Config) -> bool:
    """Whether pytest-html writes a report in this run (``--html``): then every gate's pictures are drawn."""
    return config.pluginmanager.hasplugin("html") and bool(getattr(config.option, "htmlpath", None))


def ensure_row(item: pytest.Item, probe: Any) -> ResultRow:
    """The report row of ``item`` (created and recorded on first use): test, concept, model, original."""
    row = item.stash.get(ROW_KEY, None)
    if row is None:
        labels = getattr(probe, "labels", None) or {}
        row = ResultRow(test=item.nodeid, concept=getattr(getattr(probe, "concept", None), "name", "?"),
                        model=labels.get("unlearned", "?"), original=labels.get("original", "?"),
                        started=time.perf_counter())
        item.stash[ROW_KEY] = row
        get_session(item.config).record(row)
    return row


def run_gate(probe: Any, evaluate: Callable[[], GateResult]) -> tuple[GateResult, str]:
    """Run a gate for the running test; return its ``GateResult`` and its failure text.

    The test's row is created before the gate runs (its clock starts), the gate's part
    and the probe's cost are recorded on it, then the gate's pictures are drawn into the
    test's artifact folder (``--uoc-artifacts``; a failure also without it) and the
    failure text ends with their paths. Outside a test nothing is recorded or drawn.
    """
    request = CURRENT_REQUEST.get()
    row = None if request is None else ensure_row(request.node, probe)
    result = evaluate()
    folder = None
    if request is not None:
        row.apply(result.row)
        row.seconds = round(time.perf_counter() - row.started, 2)
        row.cost = probe.cost.to_dict()
        session = get_session(request.config)
        if "run" not in row.values and hasattr(probe, "engine"):
            from .record import probe_record

            row.values["run"] = probe_record(probe)
        # The HTML report shows every test's pictures, so they are drawn for passing tests too.
        wanted = bool(session.settings.html) or uses_pytest_html(request.config)
        folder = artifact_dir(session, request.node.nodeid, explicit_only=result.passed and not wanted)
    written = draw_pictures(result.pictures, folder)
    if request is not None and written:
        row.values.setdefault("pictures", []).extend(p for p in written if p not in row.values.get("pictures", []))
    return result, result.failure_text(written) if not result.passed else ""
