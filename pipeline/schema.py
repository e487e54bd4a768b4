"""The feature table's columns: a leaf module every layer may import.

The features stage writes these columns and every later stage reads them; keeping the
names here (not in the SQL stage) lets pure modules (signals, frequency, explain) know
the table's shape without importing a stage.
"""

from __future__ import annotations

COUNT_PREFIX = "n__"  # events of an activity before the cut-off
AGE_PREFIX = "age__"  # days from the latest such event to the cut-off (NaN: never)
PEAK_PREFIX = "peak__"  # most events of an activity within any rolling window
NEVER_DAYS = 10_000.0  # the age given to an activity a lead never did, where a number is needed


def peak_column(activity: str, window_days: int) -> str:
    return f"{PEAK_PREFIX}{activity}__{window_days}d"
