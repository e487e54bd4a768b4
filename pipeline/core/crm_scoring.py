"""How each CRM computes a lead's score from the exported rules, so each gets a threshold that holds there.

leadcal's own score decays every activity's points continuously (2^(-age / half-life)) and
applies the caps. The tools that take the exports do not all do that:

| target | engagement decay | caps | fit |
|---|---|---|---|
| generic (leadcal) | 2^(-age / half-life) | yes | points |
| HubSpot | loses 50 % every 1, 3, 6 or 12 months (the option nearest the half-life), in steps | yes (score and group limits) | points |
| Account Engagement (Pardot) | none | none | a grade, F to A+ in thirds of a letter, starting at D |
| Mautic | none | none | points (a custom field) |

A threshold chosen under leadcal's scoring is therefore wrong inside the others: without
decay, old activity keeps its points and many more leads pass. `CrmScoring` describes one
tool's rules; `crm_scores` scores leads as that tool would; pipeline.core.thresholds chooses
each tool's own threshold with the same policy and validates it on the held-out months, and
the exports carry it (docs/crm-exports.md).

Account Engagement has no fit points: a profile criterion moves the grade by thirds of a
letter. Each fit row's points become `round(points / points_per_third)` thirds
(`grade_thirds`), with points_per_third set so that the best fit reaches A+; the MQL rule
is an automation rule on both axes: grade at or above G and score at or above S.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.core.scorecard import score_leads
from pipeline.core.signals import SignalSet
from pipeline.schema import AGE_PREFIX

TARGETS = ("generic", "hubspot", "account_engagement", "mautic")
LABELS = {"generic": "leadcal (generic export)", "hubspot": "HubSpot", "account_engagement": "Account Engagement (Pardot)",
          "mautic": "Mautic"}

HUBSPOT_DECAY_MONTHS = (1, 3, 6, 12)
DAYS_PER_MONTH = 365.25 / 12

# Account Engagement's grades, worst to best: F, then D- to A+ in thirds of a letter. A prospect starts at D.
GRADES = ("F", "D-", "D", "D+", "C-", "C", "C+", "B-", "B", "B+", "A-", "A", "A+")
START_GRADE = GRADES.index("D")
# What a profile criterion can do to the grade, in thirds of a letter: nothing, 1/3, 2/3 or a whole letter.
GRADE_STEPS_THIRDS = (0, 1, 2, 3)


@dataclass(frozen=True)
class CrmScoring:
    """One tool's scoring rules, as far as they change a lead's score."""

    target: str
    decay: str | None  # "continuous" (2^(-age / days)), "steps" (halved every `decay_days`), or None
    decay_days: float | None
    caps: bool
    grading: bool  # fit as an Account Engagement grade instead of points

    @property
    def label(self) -> str:
        return LABELS[self.target]

    def describe(self) -> str:
        """The rules in one sentence, for thresholds.json and the exports."""
        decay = ("no decay" if self.decay is None else
                 f"engagement points halve every {self.decay_days:.1f} days, continuously" if self.decay == "continuous" else
                 f"engagement points lose 50 % at the end of every {round(self.decay_days / DAYS_PER_MONTH)} month(s) "
                 f"({self.decay_days:.1f} days)")
        caps = "caps applied" if self.caps else "no caps"
        fit = "fit as a grade (F..A+ in thirds of a letter, from D)" if self.grading else "fit as points"
        return f"{self.label}: {decay}; {caps}; {fit}"


def hubspot_decay_months(half_life_days: float) -> int:
    """HubSpot's 'lose 50 % every N months' option nearest to a half-life, on a ratio scale.

    Decay is multiplicative, so a half-life twice too long is as wrong as one half too short:
    the boundaries are the geometric means of neighbouring options (below 1.73 months -> 1,
    below 4.24 -> 3, below 8.49 -> 6, else 12); a month is 365.25 / 12 days.
    """
    months = float(half_life_days) / DAYS_PER_MONTH
    return min(HUBSPOT_DECAY_MONTHS, key=lambda option: (abs(math.log(months / option)), option))


def scoring_for(target: str, half_life_days: float | None) -> CrmScoring:
    """The scoring rules of `target` (TARGETS) for a points table with this half-life (None: no decay)."""
    if target == "generic":
        return CrmScoring(target, "continuous" if half_life_days else None, half_life_days, True, False)
    if target == "hubspot":
        if not half_life_days:
            return CrmScoring(target, None, None, True, False)
        return CrmScoring(target, "steps", hubspot_decay_months(half_life_days) * DAYS_PER_MONTH, True, False)
    if target == "account_engagement":
        return CrmScoring(target, None, None, False, True)
    if target == "mautic":
        return CrmScoring(target, None, None, False, False)
    raise ValueError(f"unknown CRM target {target!r} (one of {', '.join(TARGETS)})")


def decay_factor(age_days: np.ndarray, scoring: CrmScoring) -> np.ndarray:
    """What is left of an activity's points `age_days` after the lead last did it (NaN age: never did it, 0)."""
    age = np.asarray(age_days, dtype=float)
    if scoring.decay is None:
        factor = np.ones_like(age)
    elif scoring.decay == "continuous":
        factor = np.exp2(-np.nan_to_num(age) / scoring.decay_days)
    else:  # HubSpot: whole periods only
        factor = 0.5 ** np.floor(np.nan_to_num(age) / scoring.decay_days)
    return np.where(np.isnan(age), 0.0, factor)


def crm_matrix(signals: SignalSet, features: pd.DataFrame, scoring: CrmScoring) -> pd.DataFrame:
    """The signal matrix as the tool sees it: activity signals times what its decay leaves of them."""
    matrix = signals.matrix.astype(float)
    if scoring.decay is None:
        return matrix
    for name in signals.catalog.loc[signals.catalog["type"] == "activity", "signal"]:
        matrix[name] = matrix[name].to_numpy() * decay_factor(features[AGE_PREFIX + name].to_numpy(dtype=float), scoring)
    return matrix


def points_per_third(table: pd.DataFrame) -> float:
    """Fit points per third of a grade letter: the best possible fit (every attribute at its best
    value) reaches A+, ten thirds above the starting D. At least 1 point."""
    fit = table[table["kind"] == "fit"]
    if fit.empty:
        return 1.0
    best = fit.groupby("attribute")["points"].max().clip(lower=0).sum()
    return max(float(best) / (len(GRADES) - 1 - START_GRADE), 1.0)


def grade_thirds(points: pd.Series | np.ndarray, per_third: float) -> np.ndarray:
    """Each fit row's grade change in thirds of a letter: its points over `per_third`, to the nearest
    step a profile criterion offers (GRADE_STEPS_THIRDS; a tie goes to the smaller step)."""
    raw = np.asarray(points, dtype=float) / per_third
    steps = np.asarray(GRADE_STEPS_THIRDS)
    nearest = steps[np.argmin(np.abs(np.abs(raw)[:, None] - steps[None, :]), axis=1)] if raw.size else steps[:0]
    return (np.sign(raw) * nearest).astype(int)


def grade_change_text(thirds: int) -> str:
    """A grade change as Account Engagement's profile criteria word it: 'up 2/3', 'down 1 letter', 'none'
    (words, not '+2/3': a spreadsheet would read that as a formula)."""
    if thirds == 0:
        return "none"
    way, size = ("up" if thirds > 0 else "down"), abs(int(thirds))
    return f"{way} {size}/3" if size < 3 else f"{way} {size // 3} letter{'s' if size > 3 else ''}"


def grade_label(index: int) -> str:
    return GRADES[int(np.clip(index, 0, len(GRADES) - 1))]


def crm_scores(signals: SignalSet, features: pd.DataFrame, table: pd.DataFrame, header: Mapping[str, object],
               scoring: CrmScoring) -> pd.DataFrame:
    """fit_points, engagement_points and total_points per row, as `scoring`'s tool computes them.

    With grading (Account Engagement) there are also `grade` (0 = F .. 12 = A+) and `score`
    (the engagement points, Account Engagement's prospect score); `fit_points` is then the
    grade's distance from D in points (thirds x points_per_third), so `total_points` ranks
    leads the way the two-axis rule does, for the AUC.
    """
    matrix = crm_matrix(signals, features, scoring)
    caps = dict(header.get("caps") or {}) if scoring.caps else None
    numeric = header.get("numeric_attributes") or ()
    if not scoring.grading:
        return score_leads(matrix, table, caps, numeric)
    engagement = score_leads(matrix, table.assign(points=np.where(table["kind"] == "fit", 0, table["points"])), None,
                             numeric)["engagement_points"].to_numpy()
    per_third = points_per_third(table)
    thirds = np.where(table["kind"] == "fit", grade_thirds(table["points"], per_third), 0)
    moved = score_leads(matrix, table.assign(points=thirds), None, numeric)["fit_points"].to_numpy()
    grade = np.clip(START_GRADE + moved, 0, len(GRADES) - 1)
    fit_points = np.round((grade - START_GRADE) * per_third).astype(np.int64)
    return pd.DataFrame({"fit_points": fit_points, "engagement_points": engagement,
                         "total_points": fit_points + engagement, "grade": grade.astype(np.int64),
                         "score": engagement}, index=matrix.index)
