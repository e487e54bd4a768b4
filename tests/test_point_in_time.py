"""The features' NumPy aggregation (pipeline.data.point_in_time) and its event reader
(pipeline.data.lead_events): hand-computed cases and a brute-force check on random leads.
tests/test_engines.py compares the whole table with Spark's SQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data.lead_events import EventLog
from pipeline.data.point_in_time import (
    DAY_US,
    NO_OUTCOME,
    activity_cells,
    now_moments,
    outcome_events,
    snapshot_moments,
    window_events,
)

HOUR_US = 3_600_000_000


def test_a_lead_is_seen_at_each_age_it_reached_open_and_sees_only_earlier_events() -> None:
    # lead 0: created at 0, never decided, old enough for every age; lead 1: won on day 5;
    # lead 2: created 10 days before the export date (seen at day 0 and day 7 only)
    created = np.array([0, 0, 50 * DAY_US])
    outcome = np.array([NO_OUTCOME, 5 * DAY_US, NO_OUTCOME])
    rows = snapshot_moments(created, outcome, as_of_us=60 * DAY_US, snapshot_days=[0, 7, 30])
    assert rows.lead.tolist() == [0, 0, 0, 1, 2, 2]
    assert rows.moment.tolist() == [0, 1, 2, 0, 0, 1]
    assert rows.row_cutoff_us().tolist() == [0, 7 * DAY_US, 30 * DAY_US, 0, 50 * DAY_US, 57 * DAY_US]
    # lead 0: activity 1 at hour 1 and day 10, activity 0 exactly at day 7 (not before the day-7 cut-off);
    # lead 2: activity 0 one day before its creation (outside its window) and on its day 3
    lead = np.array([0, 0, 0, 2, 2])
    activity = np.array([1, 1, 0, 0, 0])
    us = np.array([HOUR_US, 10 * DAY_US, 7 * DAY_US, 49 * DAY_US, 53 * DAY_US])
    cells = activity_cells(rows, lead, activity, us, activities=2)
    assert cells.counts.tolist() == [[0, 0, 1, 0, 0, 1],  # activity 0, per row
                                     [0, 1, 2, 0, 0, 0]]  # activity 1
    ages = cells.ages_days(rows.row_cutoff_us())
    assert ages[1, 1] == pytest.approx((7 * DAY_US - HOUR_US) / DAY_US)
    assert ages[1, 2] == pytest.approx(20.0)
    assert ages[0, 2] == pytest.approx(23.0) and ages[0, 5] == pytest.approx(4.0)
    assert np.isnan(ages[0, :2]).all() and np.isnan(ages[:, 3]).all()


def test_scoring_sees_each_open_lead_once_over_its_last_window() -> None:
    created = np.array([0, 0, 95 * DAY_US])
    outcome = np.array([NO_OUTCOME, 20 * DAY_US, NO_OUTCOME])
    rows = now_moments(created, outcome, as_of_us=100 * DAY_US, window_days=30)
    assert rows.lead.tolist() == [0, 2]  # lead 1 was decided before the export date
    assert rows.window_start_us.tolist() == [70 * DAY_US, 70 * DAY_US, 95 * DAY_US]
    lead, activity = np.array([0, 0, 2]), np.array([0, 0, 0])
    us = np.array([69 * DAY_US, 71 * DAY_US, 99 * DAY_US])  # the first is before lead 0's window
    assert activity_cells(rows, lead, activity, us, activities=1).counts.tolist() == [[1, 1]]


def test_outcome_events_count_events_at_or_after_the_first_outcome() -> None:
    outcome = np.array([NO_OUTCOME, 10])
    lead, activity, us = np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), np.array([50, 9, 10, 11])
    events, decided, after = outcome_events(outcome, lead, activity, us, activities=3)
    assert events.tolist() == [2, 2, 0] and decided.tolist() == [1, 2, 0] and after.tolist() == [0, 2, 0]


def _brute_force(created, outcome, as_of, days, lead, activity, us, activities, width):
    """Each row and activity by a loop over the events: counts, latest event, rolling peak."""
    found = {}
    for lead_position in range(len(created)):
        for k, d in enumerate(days):
            cutoff = created[lead_position] + d * DAY_US
            if cutoff > as_of or outcome[lead_position] <= cutoff:
                continue
            for a in range(activities):
                times = sorted(t for l_, a_, t in zip(lead, activity, us)
                               if l_ == lead_position and a_ == a and created[lead_position] <= t < cutoff)
                peak = max((sum(1 for s in times if t - width < s <= t) for t in times), default=0)
                found[(lead_position, k, a)] = (len(times), max(times, default=None), peak)
    return found


def test_cells_and_peaks_match_a_loop_over_every_event() -> None:
    rng = np.random.default_rng(7)
    leads, activities, days, width = 40, 3, [0, 3, 12], 4 * DAY_US
    created = rng.integers(0, 30, leads) * DAY_US + rng.integers(0, DAY_US, leads)
    outcome = np.where(rng.random(leads) < 0.4, created + rng.integers(0, 15, leads) * DAY_US, NO_OUTCOME)
    as_of = 40 * DAY_US
    lead = rng.integers(0, leads, 600)
    activity = rng.integers(0, activities, 600)
    us = created[lead] + rng.integers(-2 * DAY_US, 16 * DAY_US, 600)
    rows = snapshot_moments(created, outcome, as_of, days)
    cells = activity_cells(rows, lead, activity, us, activities)
    spread = cells.spread(width)
    cell, times = window_events(rows, spread, lead, activity, us)
    expected = _brute_force(created, outcome, as_of, days, lead, activity, us, activities, width)
    assert len(expected) == rows.rows * activities > 0
    peaks = cells.counts.copy()
    for c in np.unique(cell):
        t = np.sort(times[cell == c])
        peaks.flat[c] = max(int(((t > x - width) & (t <= x)).sum()) for x in t)
    for row, (lead_position, k) in enumerate(zip(rows.lead, rows.moment)):
        for a in range(activities):
            n, last, peak = expected[(lead_position, k, a)]
            assert cells.counts[a, row] == n
            assert (cells.last_us[a, row] == last) if n else True
            assert peaks[a, row] == peak
    assert spread.any() and not spread.all()  # both kinds of cell were checked
    without_first = activity_cells(rows, lead, activity, us, activities, earliest=False)
    assert without_first.first_us is None and not without_first.spread(width).any()
    np.testing.assert_array_equal(without_first.counts, cells.counts)
    np.testing.assert_array_equal(without_first.last_us, cells.last_us)


def _log(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"lead_id": [f"L{i:03d}" for i in rng.integers(0, 50, rows)],
                         "activity": rng.choice(["demo", "email_open", "webinar"], rows),
                         "occurred_at": pd.to_datetime(rng.integers(1.7e9, 1.71e9, rows), unit="s")
                         .astype("datetime64[us]")})


@pytest.mark.parametrize("layout", ["sorted file, small row groups", "unsorted file", "frame"])
def test_event_log_gives_the_events_of_a_range_of_leads(tmp_path: Path, layout: str) -> None:
    log = _log(2_000)
    if layout.startswith("sorted"):
        log = log.sort_values(["lead_id", "occurred_at"], ignore_index=True)
    source: Path | pd.DataFrame = log
    if layout != "frame":
        source = tmp_path / "activities.parquet"
        pq.write_table(pa.Table.from_pandas(log, preserve_index=False), source, row_group_size=97)
    part = pa.array([f"L{i:03d}" for i in range(10, 20)] + ["L999"])  # L999 has no event
    names = pa.array(["demo", "email_open", "webinar"])
    lead, activity, us = EventLog(source).of_leads(part, names)
    mine = log[log["lead_id"].isin(part.to_pylist())]
    got = pd.DataFrame({"lead_id": np.asarray(part.to_pylist())[lead],
                        "activity": np.asarray(names.to_pylist())[activity],
                        "us": us}).sort_values(["lead_id", "activity", "us"], ignore_index=True)
    want = pd.DataFrame({"lead_id": mine["lead_id"].to_numpy(), "activity": mine["activity"].to_numpy(),
                         "us": mine["occurred_at"].to_numpy().astype("datetime64[us]").astype(np.int64)}) \
        .sort_values(["lead_id", "activity", "us"], ignore_index=True)
    assert len(want) > 100
    pd.testing.assert_frame_equal(got, want)
    if layout.startswith("sorted"):  # the row groups outside the range were not read
        read = []
        original = pq.ParquetFile.read_row_groups
        pq.ParquetFile.read_row_groups = lambda self, groups, **kw: read.extend(groups) or original(self, groups, **kw)
        try:
            EventLog(source).of_leads(part[:-1], names)
        finally:
            pq.ParquetFile.read_row_groups = original
        assert 0 < len(read) < pq.ParquetFile(source).metadata.num_row_groups / 2


def test_the_pandas_path_writes_a_log_whose_lead_id_spans_features_can_use(tmp_path: Path) -> None:
    """A CSV export's event log (the pandas path) is written sorted by lead, with each row group's
    first and last lead id: features reads a range of leads from its own row groups."""
    from pipeline.data.generate import write_sample
    from pipeline.data.lead_events import _id_spans
    from pipeline.stages.extract import extract
    from tests.conftest import params_in

    params = params_in(tmp_path, generate={"n_leads": 300, "months": 6})
    write_sample(params)
    extract(params)
    path = params.paths.extracted / "activities.parquet"
    spans = _id_spans(pq.ParquetFile(path))
    ids = pq.read_table(path, columns=["lead_id"]).column("lead_id").to_pylist()
    assert ids == sorted(ids) and len(ids) > 1000
    assert spans == [(ids[0], ids[-1])]
