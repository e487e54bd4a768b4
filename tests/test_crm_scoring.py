"""Each CRM's scoring rules (pipeline.core.crm_scoring) and the thresholds chosen under them
(pipeline.core.thresholds.two_axis_rule), against hand-computed cases and the pipeline's own scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.artifacts.readers import read_frequency_signals, read_scorecard
from pipeline.core import crm_scoring
from pipeline.core.crm_scoring import DAYS_PER_MONTH, scoring_for
from pipeline.core.scorecard import score_features
from pipeline.core.signals import build_signals
from pipeline.params import Params
from pipeline.core import thresholds


def test_decay_by_hand() -> None:
    ages = np.array([0.0, 10.0, 29.0, 31.0, 61.0, np.nan])
    leadcal = crm_scoring.decay_factor(ages, scoring_for("generic", 10.0))
    assert leadcal == pytest.approx([1.0, 0.5, 2 ** -2.9, 2 ** -3.1, 2 ** -6.1, 0.0])
    hubspot = scoring_for("hubspot", 10.0)  # 10 days is nearest to HubSpot's 1-month option
    assert hubspot.decay == "steps" and hubspot.decay_days == pytest.approx(DAYS_PER_MONTH)
    # whole months only: nothing is lost in the first 30.4 days, half after one month, a quarter after two
    assert crm_scoring.decay_factor(ages, hubspot) == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.25, 0.0])
    assert crm_scoring.decay_factor(ages, scoring_for("mautic", 10.0)) == pytest.approx([1, 1, 1, 1, 1, 0])
    assert scoring_for("hubspot", None).decay is None and scoring_for("generic", None).decay is None
    with pytest.raises(ValueError, match="unknown CRM target"):
        scoring_for("marketo", 10.0)


@pytest.mark.parametrize(("half_life", "months"), [(10.0, 1), (52.0, 1), (53.0, 3), (129.0, 4 - 1), (130.0, 6), (259.0, 12)])
def test_hubspot_option_nearest_on_a_ratio_scale(half_life: float, months: int) -> None:
    # boundaries: sqrt(1*3) = 1.73 months = 52.7 days, sqrt(3*6) = 4.24 = 129.1 days, sqrt(6*12) = 8.49 = 258.2 days
    assert crm_scoring.hubspot_decay_months(half_life) == months


def test_grade_steps_by_hand() -> None:
    # 10 points per third: 4 -> none, 6 -> 1/3, 14 -> 1/3, 16 -> 2/3, 26 -> 1 letter, 90 -> still 1 letter (the most a criterion does)
    assert crm_scoring.grade_thirds([4, 6, 14, 16, 26, 90, -6, -26, 0], 10.0).tolist() == [0, 1, 1, 2, 3, 3, -1, -3, 0]
    assert crm_scoring.grade_thirds([15, 25], 10.0).tolist() == [1, 2]  # ties go to the smaller step
    assert [crm_scoring.grade_change_text(t) for t in (0, 1, 2, 3, -2, -3)] == [
        "none", "up 1/3", "up 2/3", "up 1 letter", "down 2/3", "down 1 letter"]
    table = pd.DataFrame({"kind": ["fit", "fit", "fit", "fit", "engagement"], "attribute": ["size", "size", "industry",
                          "industry", "demo"], "points": [30, -5, 20, 40, 80]})
    # best fit: 30 (size) + 40 (industry) = 70 points reach A+, ten thirds above D
    assert crm_scoring.points_per_third(table) == pytest.approx(7.0)
    assert crm_scoring.points_per_third(table[table["kind"] == "engagement"]) == 1.0
    assert crm_scoring.grade_label(2) == "D" and crm_scoring.grade_label(12) == "A+" and crm_scoring.grade_label(-3) == "F"


def test_two_axis_rule_by_hand() -> None:
    """Six leads, 2 customers (average 1/3); MQLs must close at 1.5 x (50 %) with at least 2 leads.

    No score alone does it (score >= 5: 1 of 3; >= 0: 2 of 6); grade >= 1 with any score does (2 of 4),
    and it is the rule with the most MQLs. At 2 x (67 %) no rule qualifies: grade >= 1 and score >= 5
    is 1 of 2, grade >= 2 leaves one lead."""
    grade = np.array([0, 0, 1, 1, 1, 2])
    score = np.array([9, 1, 5, 6, 1, 0])
    closed = np.array([0, 0, 1, 0, 0, 1])
    settings = Params.model_fields["thresholds"].annotation(mql_lift=1.5, min_mql_leads=2)
    assert thresholds.two_axis_rule("close_rate_multiple", grade, score, closed, settings, None, None) == (1, 0)
    settings = settings.model_copy(update={"mql_lift": 2.0})
    assert thresholds.two_axis_rule("close_rate_multiple", grade, score, closed, settings, None, None) is None
    # target_recall keeps the fewest MQLs that still hold the customers: grade >= 1 and score >= 0 (4 leads, both
    # customers) beats every rule on all grades (score >= 0: 6 leads)
    settings = settings.model_copy(update={"target_recall": 1.0})
    assert thresholds.two_axis_rule("target_recall", grade, score, closed, settings, None, None) == (1, 0)


def test_generic_scoring_is_leadcals_own_and_no_decay_scores_at_least_as_high(default_run: Params) -> None:
    params = default_run
    features = io.read_parquet(params.paths.features / "features.parquet")
    signals = build_signals(features, params.signals, read_frequency_signals(params.paths.models))
    card = read_scorecard(params.paths.models)
    table, header = card.table_, card.header_
    own = score_features(features, signals, table, header)
    generic = crm_scoring.crm_scores(signals, features, table, header, scoring_for("generic", header["half_life_days"]))
    pd.testing.assert_frame_equal(generic, own)
    mautic = crm_scoring.crm_scores(signals, features, table, header, scoring_for("mautic", header["half_life_days"]))
    positive = table[(table["kind"] == "engagement") & (table["type"] == "activity")]
    assert (positive["points"] > 0).any()
    assert (mautic["fit_points"] == own["fit_points"]).all()  # fit never decays
    assert (mautic["total_points"] != own["total_points"]).mean() > 0.2  # old activity keeps its points
    grading = crm_scoring.crm_scores(signals, features, table, header, scoring_for("account_engagement", 10.0))
    assert grading["grade"].between(0, 12).all() and (grading["score"] == mautic["engagement_points"]).all()
