"""Scoring: images in, evidence out (domain classifier, CCS, CRS, retention, gap, verdict,
and the facets beyond the target: CCS per prompt, leakage, judged accuracy).

Everything here consumes image tensors N×C×H×W in [0, 1] and knows nothing of
pipelines or pytest.
"""

from __future__ import annotations

from .calibration import CalibratedCurve, NullPoint, calibrated_curve, decide_calibrated
from .ccs import PAPER_PSI_GRID, CCSCurve, ccs, ccs_curve
from .classifier import (
    BACKBONES,
    MIN_HELDOUT_GROUPS,
    MIN_PER_CLASS,
    RECIPES,
    DomainClassifier,
    train_domain_classifier,
)
from .crs import CRSResult, crs_paper, crs_similarity
from .gap import GapCurve, GapPoint, concealment_gap
from .images import check_images, check_paired
from .judged import JudgedAccuracy, Pinpoint, judged_accuracy
from .leakage import Leakage, leakage
from .prompts import PromptCCS, prompt_ccs
from .retention import DISTANCES, RetentionResult, retention, ssim
from .stats import Estimate, bootstrap_mean, mcnemar, paired_bootstrap_diff
from .verdict import VERDICT_KINDS, Verdict, decide

__all__ = [
    "BACKBONES",
    "DISTANCES",
    "MIN_HELDOUT_GROUPS",
    "MIN_PER_CLASS",
    "PAPER_PSI_GRID",
    "RECIPES",
    "VERDICT_KINDS",
    "CCSCurve",
    "CRSResult",
    "CalibratedCurve",
    "NullPoint",
    "DomainClassifier",
    "Estimate",
    "GapCurve",
    "GapPoint",
    "JudgedAccuracy",
    "Leakage",
    "Pinpoint",
    "PromptCCS",
    "RetentionResult",
    "Verdict",
    "bootstrap_mean",
    "ccs",
    "calibrated_curve",
    "ccs_curve",
    "check_images",
    "check_paired",
    "concealment_gap",
    "crs_paper",
    "crs_similarity",
    "decide",
    "decide_calibrated",
    "judged_accuracy",
    "leakage",
    "mcnemar",
    "paired_bootstrap_diff",
    "prompt_ccs",
    "retention",
    "ssim",
    "train_domain_classifier",
]
