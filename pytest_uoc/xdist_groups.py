"""Under ``pytest -n N``: the tests of one concept marker run on one worker, so their probe is built once.

Tests that share a ``uoc_concept`` marker (name, prompts, settings) share one probe; spread over
workers, each worker would build it again (its sweeps, nulls and classifier). xdist's own
``--dist loadgroup`` would do, but with pytest 9.2 and xdist 3.8 it has no effect (the worker's
``@group`` node-id suffix is lost; measured: six ``xdist_group("g")`` tests ran on two workers).
So pytest-uoc schedules itself: each worker writes, at collection, which group each of its
marked tests belongs to into a folder the controller made; the controller's scheduler (xdist's
``LoadScopeScheduling``, with pytest-uoc's groups as scopes and every other test a scope of its
own) sends a group to one worker. Runs with xdist's default ``load`` are scheduled this way
(whether a test has a marker is known only once the workers have collected, after the scheduler
is chosen): unmarked tests are each a scope of their own, spread over the workers as ``load``
spreads them; ``--dist`` given explicitly (``loadfile``, ``worksteal``, ...) is left to xdist.
No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = ["GROUPS_INPUT", "configure_node", "group_of", "make_scheduler", "start_grouping", "stop_grouping",
           "write_groups"]

#: The ``workerinput`` key naming the folder where workers write their groups.
GROUPS_INPUT = "uoc_groups_dir"
_FOLDER = pytest.StashKey[str]()


def group_of(item: pytest.Item) -> str | None:
    """The group of a test with a ``uoc_concept`` marker (its name and a hash of its arguments), else None."""
    marker = item.get_closest_marker("uoc_concept")
    if marker is None:
        return None
    identity = repr((marker.args, sorted((k, repr(v)) for k, v in marker.kwargs.items())))
    name = marker.args[0] if marker.args and isinstance(marker.args[0], str) else "concept"
    readable = "".join(c if c.isalnum() else "-" for c in name)[:40]
    return f"uoc-{readable}-{hashlib.sha1(identity.encode()).hexdigest()[:8]}"


def start_grouping(config: pytest.Config) -> None:
    """Controller, at configuration: group when xdist distributes with its default ``load``."""
    if getattr(config.option, "dist", "no") != "load" or hasattr(config, "workerinput"):
        return
    config.stash[_FOLDER] = tempfile.mkdtemp(prefix="pytest-uoc-groups-")


def configure_node(node: Any) -> None:
    """Controller: tell a worker where to write its groups (nothing when the run is not grouped)."""
    folder = node.config.stash.get(_FOLDER, None)
    if folder:
        node.workerinput[GROUPS_INPUT] = folder


def write_groups(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Worker, after collection: its marked tests' groups, as JSON ``{nodeid: group}`` (written atomically)."""
    workerinput = getattr(config, "workerinput", None)
    folder = workerinput.get(GROUPS_INPUT) if workerinput else None
    if not folder:
        return
    groups = {item.nodeid: group for item in items if (group := group_of(item))}
    target = Path(folder) / f"{workerinput.get('workerid', 'worker')}.json"
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(groups))
    os.replace(temporary, target)


class _ProbeGroupScheduling:
    """xdist's scope scheduling with pytest-uoc's groups as scopes (each unmarked test its own scope)."""

    def __init__(self, folder: str) -> None:
        self._folder, self._groups = folder, None

    def split_scope(self, nodeid: str) -> str:
        if self._groups is None:
            groups: dict[str, str] = {}
            for file in sorted(Path(self._folder).glob("*.json")):
                groups.update(json.loads(file.read_text()))
            self._groups = groups
        return self._groups.get(nodeid, nodeid)


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Controller: the scheduler of a grouped run (None: xdist chooses as usual)."""
    folder = config.stash.get(_FOLDER, None)
    if not folder:
        return None
    from xdist.scheduler import LoadScopeScheduling

    grouping = _ProbeGroupScheduling(folder)

    class ProbeGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return grouping.split_scope(nodeid)

    return ProbeGroupScheduling(config, log)


def stop_grouping(config: pytest.Config) -> None:
    """Controller, at the end: remove the groups' folder."""
    folder = config.stash.get(_FOLDER, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
