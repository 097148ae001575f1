"""The gates behind the assertions, one module each, free of pytest.

Each ``evaluate(probe, ...)`` asks the probe for its evidence, compares it with the
limits and returns a ``GateResult``: passed or not, the object the assertion returns,
what the gate adds to the test's report row, the failure text and the pictures it can
draw. ``pytest_uoc.assertions`` wraps them for tests; ``uoc audit`` can call them directly.

=====================  ==========================================  ====================================================
module                 gate                                        assertion
=====================  ==========================================  ====================================================
``retrievable``        not_retrievable / not_restorable            assert_concept_not_retrievable
``attacked``           not_invertible / not_prompt_attackable      assert_concept_not_retrievable(guidance=...)
``erased``             erased                                      assert_concept_erased
``retained``           retained                                    assert_retained
``gap``                no_gap                                      assert_no_concealment_gap
``leakage``            no_leakage                                  assert_no_leakage
``pinpoint``           pinpoint                                    assert_pinpoint
``aligned``            aligned                                     assert_aligned
=====================  ==========================================  ====================================================
"""

from __future__ import annotations

from . import aligned, attacked, erased, gap, leakage, pinpoint, retained, retrievable
from .result import GateResult, Picture, draw_pictures

__all__ = ["GateResult", "Picture", "aligned", "attacked", "draw_pictures", "erased", "gap", "leakage", "pinpoint", "retained",
           "retrievable"]
