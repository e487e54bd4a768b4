"""The per-lead SQL aggregation against a brute-force recomputation in plain Python.

The features SQL takes shortcuts at scale (one row per lead x activity before the pivot;
the rolling-window peak skipped where all of a lead's events of an activity fall within
the window). This recomputes counts, ages and peaks the slow, obvious way, event by
event, on random histories that exercise both sides of each shortcut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.params import Params
from pipeline.stages.extract import extract
from pipeline.stages.features import build_features

from .conftest import params_in

DAY = pd.Timedelta(days=1)
ACTIVITIES = ["demo_request", "page_view", "webinar_attendance"]


def _random_export(raw: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 120
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 200 * 86_400, n), unit="s")
    leads = pd.DataFrame({"lead_id": [f"L{i:03d}" for i in range(n)], "created_at": created, "industry": "x"})
    owner = rng.integers(0, n, 3000)
    # bursts a few hours apart and a tail over 80 days: pairs both inside and wider than each window
    offset = np.where(rng.random(owner.size) < 0.5, rng.integers(0, 6 * 3600, owner.size),
                      rng.integers(0, 80 * 86_400, owner.size))
    events = pd.DataFrame({"lead_id": leads["lead_id"].to_numpy()[owner],
                           "activity": rng.choice(ACTIVITIES, owner.size),
                           "occurred_at": created[owner] + pd.to_timedelta(offset, unit="s")})
    events.loc[::97, "occurred_at"] += pd.Timedelta(microseconds=250_000)  # sub-second stamps floor in ages
    outcome_lead = rng.choice(n, 40, replace=False)
    stages = pd.concat([
        pd.DataFrame({"lead_id": leads["lead_id"], "stage": "lead", "entered_at": created}),
        pd.DataFrame({"lead_id": leads["lead_id"].to_numpy()[outcome_lead],
                      "stage": np.where(np.arange(40) % 2 == 0, "customer", "lost"),
                      "entered_at": created[outcome_lead] + pd.to_timedelta(rng.integers(1, 70, 40), unit="D")}),
    ])
    raw.mkdir(parents=True)
    for name, frame in (("leads", leads), ("activities", events), ("stages", stages)):
        frame.to_csv(raw / f"{name}.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")


def _brute_force(params: Params, windows: list[int]) -> pd.DataFrame:
    """Rows (lead, snapshot it reached open) and their counts, ages and peaks, event by event."""
    leads = pd.read_parquet(params.paths.extracted / "leads.parquet")
    events = pd.read_parquet(params.paths.extracted / "activities.parquet")
    stages = pd.read_parquet(params.paths.extracted / "stages.parquet")
    as_of = max(leads["created_at"].max(), events["occurred_at"].max(), stages["entered_at"].max())
    outcome = stages[stages["stage"].isin(["customer", "lost"])].groupby("lead_id")["entered_at"].min()
    rows = []
    for lead, snapshot in ((lead, days) for lead in leads.itertuples() for days in params.outcome.snapshot_days):
        cutoff = lead.created_at + snapshot * DAY
        decided = outcome.get(lead.lead_id)
        if cutoff > as_of or (decided is not None and decided <= cutoff):
            continue  # not reached yet, or no longer open
        row: dict[str, object] = {"lead_id": lead.lead_id, "snapshot_days": snapshot}
        mine = events[(events["lead_id"] == lead.lead_id) & (events["occurred_at"] < cutoff)]
        for activity in ACTIVITIES:
            times = sorted(mine.loc[mine["activity"] == activity, "occurred_at"])
            row[f"n__{activity}"] = len(times)
            seconds = [int(t.value // 10**9) for t in (cutoff, *times[-1:])]
            row[f"age__{activity}"] = (seconds[0] - seconds[1]) / 86_400 if times else np.nan
            for w in windows:  # events strictly less than w days apart share a window
                row[f"peak__{activity}__{w}d"] = max(
                    (sum(1 for s in times if t - w * DAY < s <= t) for t in times), default=0)
        rows.append(row)
    return pd.DataFrame(rows).astype({"snapshot_days": "int32"}).set_index(["lead_id", "snapshot_days"]).sort_index()


@pytest.mark.parametrize("seed", [1, 2])
def test_counts_ages_and_peaks_equal_an_event_by_event_recount(tmp_path: Path, seed: int) -> None:
    windows = [1, 7, 30, 90]  # 90 > the last snapshot (day 60): every peak is the count there
    params = params_in(tmp_path, outcome={"snapshot_days": [0, 3, 20, 60], "horizon_days": 90, "as_of": None},
                       signals={"fit_attributes": ["industry"], "min_support": 1,
                                "frequency": {"windows_days": windows, "discover": False, "fixed": []}})
    _random_export(params.paths.raw, seed)
    extract(params)
    features = build_features(params)[0].set_index(["lead_id", "snapshot_days"]).sort_index()
    expected = _brute_force(params, windows)
    got = features[expected.columns]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_names=False)
    # both sides of the shortcut occur: peaks below the count (wide pairs) and equal to it (narrow ones)
    for w in (1, 7, 30):
        peaks, counts = got.filter(like=f"__{w}d").to_numpy(), got.filter(like="n__").to_numpy()
        assert (peaks < counts).any() and ((peaks == counts) & (counts > 1)).any()
    assert (got.filter(like="__90d").to_numpy() == got.filter(like="n__").to_numpy()).all()
    assert got.filter(like="n__").to_numpy().sum() > 500
