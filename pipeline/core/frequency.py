"""Frequency thresholds found from data: "N or more of an activity within W days".

Playbooks say "10 downloads" or "15 visits in 30 days"; the right N differs per
company and per activity, so it is found, not typed in. For each activity and
window, among the leads who did the activity at all, every candidate N splits them
into "peak count >= N" and "below N". The N whose two groups' close rates differ
most (largest G statistic, the likelihood-ratio test of a 2x2 table) is kept if:

- both groups have at least `min_support` leads, and
- the G-test p-value is below `max_p_value` (0.001 by default: with ~16 activities
  and ~10 candidates each, about 0.2 false discoveries expected on pure noise), and
- the heavy users close more often than the light ones (a threshold that lowers the
  close rate is not what "N+ downloads" means; negative activities are caught as
  signals of their own).

Choosing on the training cohorts only keeps the held-out cohorts honest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import chdtrc  # chi-square survival (scipy.stats.chi2.sf's own), a second cheaper to import

from pipeline.schema import peak_column


@dataclass(frozen=True)
class FoundThreshold:
    activity: str
    window_days: int
    min_count: int
    g_statistic: float
    p_value: float
    leads_at_or_above: int
    close_rate_at_or_above: float
    close_rate_below: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def g_statistic(table: np.ndarray) -> float:
    """Likelihood-ratio (G) statistic of a 2x2 contingency table: 2 sum O ln(O / E)."""
    table = np.asarray(table, dtype=float)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(table > 0, table * np.log(table / expected), 0.0)
    return float(2 * terms.sum())


def best_split(values: np.ndarray, closed: np.ndarray, min_support: int) -> tuple[float, float] | None:
    """(t, G) of the split "value >= t" vs "< t" that best separates customers (largest G),
    with at least `min_support` leads on each side and the high side closing more."""
    values, closed = np.asarray(values), np.asarray(closed, dtype=int)
    order = np.sort(np.unique(values))
    if len(order) < 2:
        return None
    # leads and customers at or above each candidate, from the top down
    index = np.searchsorted(order, values)
    leads_at = np.bincount(index, minlength=len(order))[::-1].cumsum()[::-1]
    won_at = np.bincount(index, weights=closed, minlength=len(order))[::-1].cumsum()[::-1]
    total, total_won = len(values), closed.sum()
    best: tuple[float, float] | None = None
    for i in range(1, len(order)):
        high, high_won = int(leads_at[i]), int(won_at[i])
        low, low_won = total - high, int(total_won - high_won)
        if high < min_support or low < min_support or high_won / high <= low_won / low:
            continue
        g = g_statistic(np.array([[high_won, high - high_won], [low_won, low - low_won]]))
        if best is None or g > best[1]:
            best = (float(order[i]), g)
    return best


def best_threshold(peak: np.ndarray, closed: np.ndarray, min_support: int) -> tuple[int, float] | None:
    """(N, G) of the strongest split of the doers (peak >= 1) with heavy users closing more."""
    doers = np.asarray(peak) >= 1
    found = best_split(np.asarray(peak)[doers], np.asarray(closed)[doers], min_support)
    return None if found is None else (int(found[0]), found[1])


def discover(
    features: pd.DataFrame, closed: np.ndarray, activities: list[str], windows_days: list[int],
    min_support: int, max_p_value: float,
) -> list[FoundThreshold]:
    """Every significant frequency threshold, one at most per activity and window."""
    closed = np.asarray(closed, dtype=int)
    found = []
    for window_days in windows_days:
        for activity in activities:
            peak = features[peak_column(activity, window_days)].to_numpy()
            result = best_threshold(peak, closed, min_support)
            if result is None:
                continue
            n, g = result
            p_value = float(chdtrc(1, g))
            if p_value >= max_p_value:
                continue
            heavy, light = peak >= n, (peak >= 1) & (peak < n)
            found.append(FoundThreshold(
                activity=activity, window_days=window_days, min_count=n, g_statistic=g, p_value=p_value,
                leads_at_or_above=int(heavy.sum()),
                close_rate_at_or_above=float(closed[heavy].mean()),
                close_rate_below=float(closed[light].mean()),
            ))
    return found
