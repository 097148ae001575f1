"""One report row per concept test: who was tested, how it ended, what it cost, and each gate's numbers.

A gate contributes a ``RowUpdate`` (its values and its ``GateEntry``: the numbers it
compared with their limits); the plugin applies it to the test's ``ResultRow``, and
``ResultRow.to_dict()`` is the row of the JSON report, the terminal table and the JUnit
properties (schema in docs/report.md). No pytest and no torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check", "GateEntry", "ResultRow", "RowUpdate"]

#: The row keys that repeat the deciding gate's entry (the first failed gate, else the last one).
TOP_KEYS = ("gate", "value", "limit", "limit_kind", "value_of", "checks")
#: Row keys that are fields of ``ResultRow`` (everything else is a gate's value).
_IDENTITY = ("test", "concept", "model", "original")
_END = ("outcome", "xfail_reason", "xpass_strict")


@dataclass(frozen=True)
class Check:
    """One number a gate compared with its limit; ``limit_kind`` "max": the value must stay at or below it."""

    check: str
    value: float
    limit: float
    limit_kind: str
    passed: bool

    @classmethod
    def compare(cls, what: str, value: float, limit: float, kind: str) -> Check:
        """``value`` against ``limit`` (kind "max" or "min"); the value is kept to 4 decimals."""
        return cls(what, round(float(value), 4), float(limit), kind,
                   bool(value <= limit if kind == "max" else value >= limit))

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "value": self.value, "limit": self.limit, "limit_kind": self.limit_kind,
                "passed": self.passed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        return cls(data["check"], data["value"], data["limit"], data["limit_kind"], data["passed"])


@dataclass(frozen=True)
class GateEntry:
    """One assertion of a test: its name, the checks it made and whether it passed.

    The deciding check is the first that broke its limit, else the first one.
    """

    gate: str
    checks: tuple[Check, ...]
    passed: bool

    @classmethod
    def of(cls, gate: str, checks: Sequence[Check], passed: bool | None = None) -> GateEntry:
        """The entry of ``checks``; ``passed`` defaults to all checks passing."""
        return cls(gate, tuple(checks), all(c.passed for c in checks) if passed is None else bool(passed))

    @property
    def deciding(self) -> Check:
        return next((c for c in self.checks if not c.passed), self.checks[0])

    def to_dict(self) -> dict[str, Any]:
        top = self.deciding
        return {"gate": self.gate, "value": top.value, "limit": top.limit, "limit_kind": top.limit_kind,
                "value_of": top.check, "passed": self.passed, "checks": [c.to_dict() for c in self.checks]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateEntry:
        return cls(data["gate"], tuple(Check.from_dict(c) for c in data["checks"]), data["passed"])


@dataclass(frozen=True)
class RowUpdate:
    """What one gate adds to its test's row.

    ``values`` are always written; ``headline`` (a verdict, its ψ and limit) only where
    the row has no verdict yet or its verdict came from the same ``guidance``, so a
    restoration gate does not overwrite the headline of a partial-diffusion gate of the
    same test. None values are never written.
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    gate: GateEntry | None = None
    headline: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ResultRow:
    """The report row of one concept test (or of ``uoc audit``); fields left None are not reported."""

    test: str
    concept: str | None = None
    model: str | None = None
    original: str | None = None
    #: The gates' values (verdict, curve, ψ, ...), in the order they were written.
    values: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    cost: dict[str, Any] | None = None
    gates: list[GateEntry] = field(default_factory=list)
    outcome: str | None = None
    xfail_reason: str | None = None
    xpass_strict: bool | None = None
    #: ``time.perf_counter()`` when the row was created (not reported).
    started: float = field(default=0.0, compare=False, repr=False)

    def apply(self, update: RowUpdate) -> None:
        """Add a gate's values and its entry."""
        values = dict(update.values)
        if update.headline and (self.values.get("verdict") is None
                                or self.values.get("guidance") == update.headline.get("guidance")):
            values.update(update.headline)
        self.values.update({k: v for k, v in values.items() if v is not None})
        if update.gate is not None and update.gate.checks:
            self.gates.append(update.gate)

    @property
    def top(self) -> GateEntry | None:
        """The gate the row is summed up by: the first failed one, else the last one."""
        return next((g for g in self.gates if not g.passed), self.gates[-1] if self.gates else None)

    def get(self, key: str, default: Any = None) -> Any:
        """One field of ``to_dict()``."""
        return self.to_dict().get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's row."""
        row: dict[str, Any] = {"test": self.test}
        row.update({key: getattr(self, key) for key in _IDENTITY[1:] if getattr(self, key) is not None})
        row.update(self.values)
        if self.seconds is not None:
            row["seconds"] = self.seconds
        if self.cost is not None:
            row["cost"] = self.cost
        if self.gates:
            entries = [g.to_dict() for g in self.gates]
            row["gates"] = entries
            top = entries[self.gates.index(self.top)]
            row.update({key: top[key] for key in TOP_KEYS})
        for key in _END:
            if getattr(self, key) is not None:
                row[key] = getattr(self, key)
        return row

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultRow:
        """The row ``to_dict()`` gave (an xdist worker's rows, read back by the controller)."""
        known = {*_IDENTITY, *_END, *TOP_KEYS, "seconds", "cost", "gates", "started"}
        return cls(
            test=data["test"], concept=data.get("concept"), model=data.get("model"), original=data.get("original"),
            values={k: v for k, v in data.items() if k not in known}, seconds=data.get("seconds"),
            cost=data.get("cost"), gates=[GateEntry.from_dict(g) for g in data.get("gates") or ()],
            outcome=data.get("outcome"), xfail_reason=data.get("xfail_reason"),
            xpass_strict=data.get("xpass_strict"),
        )
