"""The artifacts the stages hand to each other: each file's name once, with its reader.

A stage that writes one of these files and every stage that reads it use the names here,
so a renamed artifact cannot leave a reader behind; the readers return the objects the
statistics work on (a `PointsScorecard`, the frequency signals), not raw JSON.

Folders come from params (`paths.features`, `paths.models`); `PUBLISHED` is the folder under
models/ that the publish stage replaces only when a run passes its guard rails.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import io
from pipeline.params import FrequencySignal

if TYPE_CHECKING:  # imported when a scorecard is read: the stages that only need the names stay light
    from pipeline.core.scorecard import PointsScorecard

FEATURES = "features.parquet"  # under paths.features: the point-in-time rows (features stage)
CLOSE_RATES = "close_rates.csv"  # under paths.models: each signal's close rate and lift (close-rates stage)
SIGNALS = "signals.json"  # the frequency signals the close-rates stage chose
WEIGHTS = "weights.json"  # the points table and its header (weights stage)
THRESHOLDS = "thresholds.json"  # the MQL threshold and what it does (thresholds stage)
PUBLICATION = "publication.json"  # under models/published/: the publish stage's verdict
PUBLISHED = "published"  # models/published/: the last run that passed the guard rails


def read_scorecard(models: Path) -> PointsScorecard:
    """The points table in `models` (weights.json), as a scorecard ready to score leads."""
    import pandas as pd

    from pipeline.core.scorecard import PointsScorecard

    payload = io.read_json(models / WEIGHTS)
    header = {k: payload.get(k) for k in ("points_to_double_odds", "base_log_odds", "snapshot_log_odds",
                                          "half_life_days", "caps", "numeric_attributes")}
    return PointsScorecard.from_published(pd.DataFrame(payload["signals"]), header)


def read_frequency_signals(models: Path) -> list[FrequencySignal]:
    """The frequency signals chosen by the close-rates stage (signals.json)."""
    payload = io.read_json(models / SIGNALS)
    return [FrequencySignal(activity=f["activity"], min_count=f["min_count"], window_days=f["window_days"])
            for f in payload["frequency"]]
