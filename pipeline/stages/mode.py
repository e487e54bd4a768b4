"""The export's mode as the stages after extract read their params: extract records whether
the export is a dated history or a snapshot (extract_report.json), and a snapshot implies
settings whatever params.yaml says about time (pipeline.design explains the two shapes)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.design import DATED, SNAPSHOT, SNAPSHOT_AGE_DAYS, SNAPSHOT_CREATED
from pipeline.params import Params


def read_mode(extracted: Path) -> str:
    """The mode extract recorded ('dated' when there is no report yet: the contract's default)."""
    report = extracted / "extract_report.json"
    return io.read_json(report).get("mode", DATED) if report.exists() else DATED


def snapshot_params(params: Params) -> Params:
    """The settings a snapshot export implies, whatever params.yaml says about time.

    One snapshot a day after the synthetic creation, the export date past every horizon (every
    outcome in the sheet is known), no decay (every activity has the same, meaningless age), no
    recency signals (every activity would be 'recent').
    """
    o = params.outcome
    outcome = o.model_copy(update={
        "snapshot_days": [SNAPSHOT_AGE_DAYS],
        "as_of": (SNAPSHOT_CREATED + pd.Timedelta(days=o.horizon_days)).tz_localize(None).to_pydatetime(),
    })
    weights = params.weights.model_copy(update={"decay": False, "half_life_days": None})
    signals = params.signals.model_copy(update={"recency_days": []})
    return params.model_copy(update={"outcome": outcome, "weights": weights, "signals": signals})


def effective_params(params: Params) -> Params:
    """params as the stages after extract must read them: adjusted when the export is a snapshot."""
    return snapshot_params(params) if read_mode(params.paths.extracted) == SNAPSHOT else params
