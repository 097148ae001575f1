"""Scoring: images in, evidence out (domain classifier, CCS, CRS, retention, gap, verdict,
and the facets beyond the target: CCS per prompt, leakage, judged accuracy).

Everything here consumes image tensors N×C×H×W in [0, 1] and knows nothing of
pipelines or pytest.
"""

from __future__ import annotations

from .calibration import CalibratedCurve, NullPoint, calibrated_curve, decide_calibrated
from .ccs import (
    PAPER_PSI_GRID,
    CCSCurve,
    ccs,
    ccs_curve,
    ccs_curve_from_probabilities,
    domain_probabilities,
)
from .classifier import (
    BACKBONES,
    MIN_HELDOUT_GROUPS,
    MIN_PER_CLASS,
    RECIPES,
    DomainClassifier,
    train_domain_classifier,
)
from .crs import CRSResult, crs_paper, crs_similarity
from .gap import GapCurve, GapPoint, concealment_gap, concealment_gap_from_probabilities
from .images import check_images, check_paired
from .judged import JudgedAccuracy, Pinpoint, judged_accuracy
from .leakage import Leakage, leakage
from .prompts import PromptCCS, prompt_ccs, prompt_ccs_from_probabilities
from .retention import DISTANCES, RetentionResult, retention, ssim
from .stats import Estimate, bootstrap_mean, mcnemar, paired_bootstrap_diff
from .verdict import VERDICT_KINDS, Verdict, decide, retrieved

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
    "ccs_curve_from_probabilities",
    "check_images",
    "check_paired",
    "concealment_gap",
    "concealment_gap_from_probabilities",
    "crs_paper",
    "crs_similarity",
    "decide",
    "decide_calibrated",
    "domain_probabilities",
    "judged_accuracy",
    "leakage",
    "mcnemar",
    "paired_bootstrap_diff",
    "prompt_ccs",
    "prompt_ccs_from_probabilities",
    "retention",
    "retrieved",
    "ssim",
    "train_domain_classifier",
]
