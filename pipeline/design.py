"""Two shapes of history, two honest ways to validate: dated histories and snapshot exports.

A dated history (leads with a creation date, outcomes with theirs) is seen point-in-time
and judged on the months that come after the training months: the future.

A snapshot export is the sheet a marketer most often gets: one row per lead, an outcome
flag (`Converted` 0/1), counts as they stood when the sheet was exported, and no dates.
Nothing in it says what was known before the outcome, so there is no cut-off to enforce,
no decay to estimate, no recency, no months to validate on. leadcal still learns from it,
with what it can honestly say:

- every lead is one row, seen once with everything the sheet holds (one snapshot);
- validation uses stratified folds of leads drawn at random (`validation_folds`), and every
  output says so: "validated on random folds of leads, not on the future";
- decay and recency signals are off; funnel figures that need time (months, SLAs, stage
  durations) are not computed.

Internally a snapshot export is placed on a fixed, synthetic timeline (`SNAPSHOT_CREATED`,
the decision a day after the snapshot) so the point-in-time machinery runs unchanged: its
dates mean nothing and are never shown as dates. Extract decides the mode (the export has
creation and outcome dates, or not) and records it in extract_report.json; the later
stages read it there (pipeline.stages.mode.effective_params). This module holds what the
statistics need to know about the two shapes (the synthetic timeline, the random folds): no
file, no Params.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DATED = "dated"
SNAPSHOT = "snapshot"

# The synthetic timeline of a snapshot export: every lead created at SNAPSHOT_CREATED with all its
# activity, seen once SNAPSHOT_AGE_DAYS later, decided after that.
SNAPSHOT_CREATED = pd.Timestamp("2000-01-01", tz="UTC")
SNAPSHOT_AGE_DAYS = 1
SNAPSHOT_DECIDED = SNAPSHOT_CREATED + pd.Timedelta(days=2)
SNAPSHOT_COHORT = "snapshot"  # the cohort of every row: there are no months
FOLD_COLUMN = "validation_fold"  # a snapshot row's random validation fold (features.parquet)
SNAPSHOT_NOTE = "validated on random folds of leads, not on the future: the export has no dates"


def is_snapshot(features: pd.DataFrame) -> bool:
    """Rows of a snapshot export (their cohort is the SNAPSHOT_COHORT marker, not a month)."""
    return len(features) > 0 and bool((features["cohort"] == SNAPSHOT_COHORT).all())


def validation_folds(closed: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each labelled row's fold (0..folds-1), stratified by outcome; -1 for rows without an outcome.

    Snapshot exports have no time to validate on: leads are dealt into `folds` folds at random,
    each fold with the same share of customers (scikit-learn's StratifiedKFold with a seeded
    shuffle), one row per lead in a snapshot export.
    """
    from sklearn.model_selection import StratifiedKFold

    folds = max(folds, 2)  # one fold would leave nothing to train on
    closed = np.asarray(closed)
    fold = np.full(len(closed), -1, dtype=np.int64)
    known = np.flatnonzero(closed >= 0)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    for index, (_, held) in enumerate(splitter.split(np.zeros(len(known)), closed[known])):
        fold[known[held]] = index
    return fold


def random_folds(features: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """(train, validation) per random fold of a snapshot export: k-fold cross-validation, the last
    fold being the one held out (pipeline.core.signals.SplitRule)."""
    known = features["closed"] >= 0
    fold = features[FOLD_COLUMN]
    return [(known & (fold != k) & (fold >= 0), known & (fold == k)) for k in range(int(fold.max()) + 1)]
