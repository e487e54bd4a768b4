"""Readers of the artifacts the later stages and `leadcal score` load: they return the objects
the statistics work on (a `PointsScorecard`, the frequency signals), not raw JSON."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.artifacts import SIGNALS, WEIGHTS
from pipeline.core.scorecard import PointsScorecard
from pipeline.params import FrequencySignal


def read_scorecard(models: Path) -> PointsScorecard:
    """The points table in `models` (weights.json), as a scorecard ready to score leads."""
    payload = io.read_json(models / WEIGHTS)
    header = {k: payload.get(k) for k in ("points_to_double_odds", "base_log_odds", "snapshot_log_odds",
                                          "half_life_days", "caps", "numeric_attributes")}
    return PointsScorecard.from_published(pd.DataFrame(payload["signals"]), header)


def read_frequency_signals(models: Path) -> list[FrequencySignal]:
    """The frequency signals chosen by the close-rates stage (signals.json)."""
    payload = io.read_json(models / SIGNALS)
    return [FrequencySignal(activity=f["activity"], min_count=f["min_count"], window_days=f["window_days"])
            for f in payload["frequency"]]
