"""Point-in-time rows of a range of leads, and their activity cells, in NumPy.

The rules are pipeline.stages.features' (docs/method.md, "Point-in-time rows"): a lead is
seen at each age in `snapshot_days` it reached while still open, by the export date; a row
sees the events from its window's start (the lead's creation) up to, not including, its
moment. Scoring sees each lead still open at the export date once, over the last
`window_days` of its life.

Why NumPy and not SQL: joining every event to every row of its lead (up to three per lead)
and grouping on (row, activity) was most of the features stage's time. Here each event is
placed once: in the first moment whose cut-off lies after it (`j`), counted per (lead,
moment, activity) with one `bincount`, and the counts of a lead's earlier moments are added
to its later ones (a running sum over at most a few moments). The latest and earliest event
of each cell follow the same way with running maxima and minima. The results equal the SQL's
exactly (tests/test_point_in_time.py, tests/test_engines.py).

Times are int64 microseconds since the epoch; a lead without an outcome has NO_OUTCOME.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_US = 86_400_000_000
NO_OUTCOME = np.iinfo(np.int64).max  # "no customer or lost stage": after every moment
NO_EVENT_MAX = np.iinfo(np.int64).min
NO_EVENT_MIN = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Moments:
    """The moments a range of leads is seen at.

    Moment k of lead l has its cut-off at `base_us[l] + offset_us[k]` (offsets increasing), and
    `seen[k, l]` says whether the lead has a row there. `window_start_us`: per lead, the first
    instant its rows see. `lead` and `moment`: per row, in row order (lead, then moment), the
    lead's position and the moment's.
    """

    base_us: np.ndarray
    offset_us: np.ndarray
    seen: np.ndarray
    window_start_us: np.ndarray
    lead: np.ndarray
    moment: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.lead)

    def row_cutoff_us(self) -> np.ndarray:
        return self.base_us[self.lead] + self.offset_us[self.moment]


def _moments(base_us: np.ndarray, offset_us: np.ndarray, seen: np.ndarray, window_start_us: np.ndarray) -> Moments:
    lead, moment = np.nonzero(seen.T)  # lead-major: a lead's rows are consecutive, in moment order
    return Moments(base_us, offset_us, seen, window_start_us, lead, moment)


def snapshot_moments(created_us: np.ndarray, first_outcome_us: np.ndarray, as_of_us: int,
                     snapshot_days: list[int]) -> Moments:
    """Each lead at each age in `snapshot_days` (increasing) it reached by `as_of_us`, still open:
    no outcome at or before that moment."""
    offset = np.asarray(snapshot_days, dtype=np.int64) * DAY_US
    cutoff = created_us[None, :] + offset[:, None]
    seen = (cutoff <= as_of_us) & (first_outcome_us[None, :] > cutoff)
    return _moments(created_us, offset, seen, created_us)


def now_moments(created_us: np.ndarray, first_outcome_us: np.ndarray, as_of_us: int, window_days: int) -> Moments:
    """Each lead created by `as_of_us` and still open then, seen at it over its last `window_days`."""
    seen = ((created_us <= as_of_us) & (first_outcome_us > as_of_us))[None, :]
    return _moments(np.full(len(created_us), as_of_us, dtype=np.int64), np.zeros(1, dtype=np.int64), seen,
                    np.maximum(created_us, as_of_us - window_days * DAY_US))


@dataclass(frozen=True)
class Cells:
    """Per activity and row (activities x rows): events before the row's cut-off in its window,
    and the latest and earliest of them (NO_EVENT_MAX / NO_EVENT_MIN without any; `first_us`
    None when not gathered)."""

    counts: np.ndarray
    last_us: np.ndarray
    first_us: np.ndarray | None

    def ages_days(self, cutoff_us: np.ndarray) -> np.ndarray:
        """Days from each cell's latest event to its row's cut-off, in whole seconds of each
        (NaN without an event): the age columns."""
        with np.errstate(invalid="ignore"):
            return np.where(self.counts > 0, (cutoff_us // 1_000_000 - self.last_us // 1_000_000) / 86400.0, np.nan)

    def spread(self, width_us: int) -> np.ndarray:
        """Cells whose events span `width_us` or more: their peak in a window that wide may be
        below their count. Without first events (`activity_cells(earliest=False)`): none."""
        if self.first_us is None:
            return np.zeros(self.counts.shape, dtype=bool)
        return (self.counts > 0) & (self.last_us - self.first_us >= width_us)


def event_moment(moments: Moments, lead: np.ndarray, us: np.ndarray) -> np.ndarray:
    """Per event, the first moment whose cut-off lies after it (len(moments) when none does), or
    -1 before its lead's window: the event counts in the lead's rows from that moment on."""
    first = np.searchsorted(moments.offset_us, us - moments.base_us[lead], side="right")
    first[us < moments.window_start_us[lead]] = -1
    return first


def activity_cells(moments: Moments, lead: np.ndarray, activity: np.ndarray, us: np.ndarray,
                   activities: int, earliest: bool = True) -> Cells:
    """The activity cells of every row from the events (`lead`, `activity`: positions; `us`).

    Without `earliest` the cells' first events are not gathered (`first_us` None): no rolling
    window is narrower than a row's span, so no peak can differ from its count."""
    n_moments, leads = moments.seen.shape
    first_moment = event_moment(moments, lead, us)
    inside = (first_moment >= 0) & (first_moment < n_moments)
    key = (first_moment[inside] * activities + activity[inside]) * leads + lead[inside]  # moment x activity x lead
    at = us[inside]
    size = n_moments * activities * leads
    counts = np.bincount(key, minlength=size)
    last = np.full(size, NO_EVENT_MAX, dtype=np.int64)
    np.maximum.at(last, key, at)
    # an event before moment k's cut-off is before every later one's: running totals over the moments
    _running(counts, n_moments, np.add)
    _running(last, n_moments, np.maximum)
    row_key = moments.moment * (activities * leads) + moments.lead  # each row's cell of the first activity
    first = None
    if earliest:
        first = np.full(size, NO_EVENT_MIN, dtype=np.int64)
        np.minimum.at(first, key, at)
        first = _per_activity(_running(first, n_moments, np.minimum), row_key, activities, leads, np.int64)
    return Cells(counts=_per_activity(counts, row_key, activities, leads, np.int32),
                 last_us=_per_activity(last, row_key, activities, leads, np.int64), first_us=first)


def _running(flat: np.ndarray, n_moments: int, combine: np.ufunc) -> np.ndarray:
    """(moment x ...) values combined in place with every earlier moment's (a sum, a maximum)."""
    by_moment = flat.reshape(n_moments, -1)
    for k in range(1, n_moments):
        combine(by_moment[k], by_moment[k - 1], out=by_moment[k])
    return flat


def _per_activity(flat: np.ndarray, row_key: np.ndarray, activities: int, leads: int, dtype: type) -> np.ndarray:
    """(moment x activity x lead) values -> (activities x rows), one gather per activity."""
    out = np.empty((activities, len(row_key)), dtype=dtype)
    for a in range(activities):
        out[a] = flat[row_key + a * leads]
    return out


def longest_window_us(moments: Moments) -> int:
    """The widest span any row sees (0 without rows): events of a row lie less than this apart."""
    if not moments.rows:
        return 0
    return int((moments.row_cutoff_us() - moments.window_start_us[moments.lead]).max())


def row_positions(moments: Moments) -> np.ndarray:
    """(leads x moments) -> the row's position, -1 where the lead has no row at that moment."""
    position = np.full(moments.seen.T.shape, -1, dtype=np.int64)  # leads x moments
    position[moments.lead, moments.moment] = np.arange(moments.rows)
    return position


def window_events(moments: Moments, spread: np.ndarray, lead: np.ndarray, activity: np.ndarray,
                  us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The events of the `spread` cells (activities x rows), once per row that sees them, as
    (cell = activity * rows + row, us): what a rolling-window count needs."""
    first_moment = event_moment(moments, lead, us)
    position = row_positions(moments)
    cells, times = [], []
    for moment in range(moments.seen.shape[0]):
        row = position[lead, moment]
        sees = (first_moment >= 0) & (first_moment <= moment) & (row >= 0)
        cell = activity[sees].astype(np.int64) * moments.rows + row[sees]
        keep = spread.ravel()[cell]
        cells.append(cell[keep])
        times.append(us[sees][keep])
    return np.concatenate(cells), np.concatenate(times)


def outcome_events(first_outcome_us: np.ndarray, lead: np.ndarray, activity: np.ndarray, us: np.ndarray,
                   activities: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per activity: events, events of leads with an outcome, and those at or after it (the leakage screen)."""
    outcome = first_outcome_us[lead]
    decided = outcome != NO_OUTCOME
    return (np.bincount(activity, minlength=activities), np.bincount(activity[decided], minlength=activities),
            np.bincount(activity[decided & (us >= outcome)], minlength=activities))
