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
    index = np.searchsorted(order, values)
    leads = np.bincount(index, minlength=len(order))
    won = np.bincount(index, weights=closed, minlength=len(order)).astype(np.int64)
    return _best_cut(order, leads, won, min_support)


def _best_cut(order: np.ndarray, leads: np.ndarray, won: np.ndarray, min_support: int) -> tuple[float, float] | None:
    """`best_split` from its counts: `leads` and `won` (customers) at each distinct value of `order` (ascending)."""
    if len(order) < 2:
        return None
    leads_at, won_at = leads[::-1].cumsum()[::-1], won[::-1].cumsum()[::-1]  # at or above each candidate
    total, total_won = int(leads.sum()), int(won.sum())
    best: tuple[float, float] | None = None
    for i in range(1, len(order)):
        high, high_won = int(leads_at[i]), int(won_at[i])
        low, low_won = total - high, total_won - high_won
        if high < min_support or low < min_support or high_won / high <= low_won / low:
            continue
        g = g_statistic(np.array([[high_won, high - high_won], [low_won, low - low_won]]))
        if best is None or g > best[1]:
            best = (float(order[i]), g)
    return best


def best_threshold(peak: np.ndarray, closed: np.ndarray, min_support: int) -> tuple[int, float] | None:
    """(N, G) of the strongest split of the doers (peak >= 1) with heavy users closing more."""
    return _threshold_of(count_peak(peak, closed), min_support)


def count_peak(peak: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """(2, largest peak + 1): leads and customers at each peak count. Counts of disjoint sets of
    leads add up (`add_peak_counts`), so a table can be counted part by part."""
    peak = np.asarray(peak, dtype=np.int64)
    size = int(peak.max()) + 1 if len(peak) else 1
    won = np.asarray(closed, dtype=np.int64) == 1
    return np.stack([np.bincount(peak, minlength=size), np.bincount(peak[won], minlength=size)])


def add_peak_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    size = max(a.shape[1], b.shape[1])
    return np.pad(a, ((0, 0), (0, size - a.shape[1]))) + np.pad(b, ((0, 0), (0, size - b.shape[1])))


def _threshold_of(counts: np.ndarray, min_support: int) -> tuple[int, float] | None:
    order = np.flatnonzero(counts[0])  # the peak counts some lead has
    order = order[order >= 1]  # the doers
    found = _best_cut(order, counts[0][order], counts[1][order], min_support)
    return None if found is None else (int(found[0]), found[1])


def count_peaks(features: pd.DataFrame, closed: np.ndarray, activities: list[str],
                windows_days: list[int]) -> dict[tuple[str, int], np.ndarray]:
    """`count_peak` of each activity and window: what `discover` needs of the rows searched."""
    return {(activity, window_days): count_peak(features[peak_column(activity, window_days)].to_numpy(), closed)
            for window_days in windows_days for activity in activities}


def discover(
    counts: dict[tuple[str, int], np.ndarray], activities: list[str], windows_days: list[int],
    min_support: int, max_p_value: float,
) -> list[FoundThreshold]:
    """Every significant frequency threshold, one at most per activity and window, from `count_peaks`."""
    found = []
    for window_days in windows_days:
        for activity in activities:
            leads, won = counts[(activity, window_days)]
            result = _threshold_of(counts[(activity, window_days)], min_support)
            if result is None:
                continue
            n, g = result
            p_value = float(chdtrc(1, g))
            if p_value >= max_p_value:
                continue
            heavy, heavy_won = int(leads[n:].sum()), int(won[n:].sum())
            light, light_won = int(leads[1:n].sum()), int(won[1:n].sum())
            found.append(FoundThreshold(
                activity=activity, window_days=window_days, min_count=n, g_statistic=g, p_value=p_value,
                leads_at_or_above=heavy, close_rate_at_or_above=heavy_won / heavy, close_rate_below=light_won / light,
            ))
    return found
