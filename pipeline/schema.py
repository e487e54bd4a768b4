"""The feature table's columns: a leaf module every layer may import.

The features stage writes these columns and every later stage reads them; keeping the
names here (not in the SQL stage) lets pure modules (signals, frequency, explain) know
the table's shape without importing a stage.
"""

from __future__ import annotations

import numpy as np

COUNT_PREFIX = "n__"  # events of an activity before the cut-off
AGE_PREFIX = "age__"  # days from the latest such event to the cut-off (NaN: never)
PEAK_PREFIX = "peak__"  # most events of an activity within any rolling window
NEVER_DAYS = 10_000.0  # the age given to an activity a lead never did, where a number is needed


def peak_column(activity: str, window_days: int) -> str:
    return f"{PEAK_PREFIX}{activity}__{window_days}d"


def snapshot_stratum(age_days: np.ndarray, snapshot_days: list[int]) -> np.ndarray:
    """The snapshot a lead of this age is scored in: the latest snapshot age it has reached (the
    first one if it is younger than every snapshot).

    A day-0 snapshot sees a lead before anything it did (events strictly before its creation
    do not exist), so a lead past day 0 is scored in the next snapshot, the youngest whose
    rows carry activity: a 3-day-old lead in the day-7 one.
    """
    edges = np.asarray(snapshot_days)
    age_days = np.asarray(age_days, dtype=float)
    position = np.clip(np.searchsorted(edges, age_days, side="right") - 1, 0, len(edges) - 1)
    if edges[0] == 0 and len(edges) > 1:
        position = np.where((position == 0) & (age_days > 0), 1, position)
    return edges[position]
