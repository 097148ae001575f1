"""What a gate returns: passed or not, the object the assertion returns, its report-row part, the failure text.

A gate also says which pictures it can draw; whoever runs it (the pytest assertion, the CLI)
chooses the folder, draws them there and ends the failure text with the paths written.
No pytest here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..rows import RowUpdate

__all__ = ["GateResult", "Picture", "draw_pictures"]


@dataclass(frozen=True)
class Picture:
    """One file a gate can draw into a test's artifact folder.

    ``draw(path)`` writes it and returns the path written. ``guarded``: an error while
    drawing is an ``OutputWarning`` (a picture is never worth a verdict); unguarded
    pictures (the CCS curve and its image grid) raise as before.
    """

    name: str
    draw: Callable[[Path], Any]
    guarded: bool = True


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate.

    ``verdict`` is what the assertion returns (a ``Verdict``, ``RetentionResult``,
    ``GapCurve``, ...); ``row`` what the gate adds to the test's report row; ``message``
    the failure text up to the list of files written (empty when it passed); ``hint`` the
    line that ends the failure text when no picture was written (None: nothing).
    """

    passed: bool
    verdict: Any
    row: RowUpdate
    message: str = ""
    pictures: tuple[Picture, ...] = ()
    hint: str | None = None

    def failure_text(self, written: Sequence[str] = ()) -> str:
        """The failure text, ending with the pictures ``written`` (or the hint when there are none)."""
        lines = [f"written: {path}" for path in written] or ([self.hint] if self.hint else [])
        return "\n".join([self.message, *lines])


def draw_pictures(pictures: Sequence[Picture], folder: Path | None) -> list[str]:
    """Draw each picture into ``folder`` (None: draw nothing); the paths written, in order."""
    if folder is None:
        return []
    paths = []
    for picture in pictures:
        if not picture.guarded:
            paths.append(str(picture.draw(folder / picture.name)))
            continue
        try:
            paths.append(str(picture.draw(folder / picture.name)))
        except Exception as exc:  # noqa: BLE001 - a picture is never worth a verdict
            from ..report import OutputWarning

            warnings.warn(OutputWarning(f"pytest-uoc: could not draw a picture: {type(exc).__name__}: {exc}; "
                                        "the verdict stands"), stacklevel=3)
    return paths
