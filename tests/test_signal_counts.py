"""Signal statistics as counts that add up over leads: close rates counted part by part equal
those of the whole table, byte for byte (pipeline.core.signal_counts, io.read_parquet_by_lead)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import io
from pipeline.artifacts import FEATURES, SIGNAL_COUNTS
from pipeline.core.frequency import add_peak_counts, count_peak, count_peaks, discover
from pipeline.core.signal_counts import (
    SignalCounts,
    add_counts,
    count_frequency,
    count_labelled,
    count_signals,
    group_sums,
)
from pipeline.core.signals import SignalSet, build_signals, labelled
from pipeline.errors import LeadcalError
from pipeline.params import FrequencySignal, Params
from pipeline.schema import peak_column
from pipeline.stages import close_rates
from tests.conftest import params_in


def test_counts_of_a_small_case_by_hand() -> None:
    # lead a: seen at day 0 without the signal, at day 7 with it, a customer; lead b: day 0 with it, not
    matrix = pd.DataFrame({"s": np.array([0, 1, 1], dtype=np.uint8)})
    catalog = pd.DataFrame([{"signal": "s", "kind": "engagement", "type": "activity", "attribute": "s", "value": "yes"}])
    signals = SignalSet(matrix, catalog, lead=np.array([0, 0, 1]), snapshot=np.array([0, 7, 0]))
    counts = count_signals(signals, np.array([1, 1, 0]))
    assert counts.snapshots.tolist() == [0, 7]
    assert counts.rows.tolist() == [2, 1] and counts.customers.tolist() == [1, 1]
    assert counts.first[:, 0].tolist() == [1, 1]  # b first at day 0, a first at day 7
    assert counts.first_customers[:, 0].tolist() == [0, 1]
    assert counts.present_won[:, 0].tolist() == [0, 1] and counts.present_lost[:, 0].tolist() == [1, 0]
    assert counts.close_rate_by_snapshot() == {0: 0.5, 7: 1.0}
    assert counts.rows_at(7) == (1, 1) and counts.rows_at(30) == (0, 0)


def test_group_sums_are_the_masked_column_sums_across_blocks_and_empty_groups() -> None:
    rng = np.random.default_rng(5)
    flags = rng.random((1_001, 7)) < 0.3
    group = rng.choice([0, 1, 3], size=len(flags))  # group 2 has no row
    expected = np.array([flags[group == g].sum(axis=0) for g in range(4)])
    for block_rows in (1_001, 100, 1):  # blocks that split the rows, down to one row each
        assert np.array_equal(group_sums(flags, group, 4, block_rows), expected)
    assert group_sums(flags[:0], group[:0], 4).shape == (4, 7)


def test_no_labelled_row_counts_nothing() -> None:
    catalog = pd.DataFrame([{"signal": "s", "kind": "engagement", "type": "activity", "attribute": "s", "value": "yes"}])
    signals = SignalSet(pd.DataFrame({"s": np.zeros(0, dtype=np.uint8)}), catalog, lead=np.zeros(0, dtype=np.int64),
                        snapshot=np.zeros(0, dtype=np.int64))
    counts = count_signals(signals, np.zeros(0, dtype=np.int64))
    assert counts.snapshots.tolist() == [] and counts.first.shape == (0, 1) and counts.leads().tolist() == [0]


def _parts(path: Path, rows: int) -> list[pd.DataFrame]:
    return list(io.read_parquet_by_lead(path, io.parquet_columns(path), rows))


def test_counts_of_lead_ranges_add_up_to_the_whole(default_run: Params) -> None:
    path = default_run.paths.features / FEATURES
    settings = default_run.signals
    whole = io.read_parquet(path)
    known = labelled(whole).to_numpy()
    expected = count_signals(build_signals(whole, settings).take(known), whole.loc[known, "closed"].to_numpy())
    counted = []
    for part in _parts(path, 997):
        inside = labelled(part).to_numpy()
        counted.append(count_signals(build_signals(part, settings).take(inside), part.loc[inside, "closed"].to_numpy()))
    # the test means something only if some fit value is missing from some part
    assert min(len(c.catalog) for c in counted) < len(expected.catalog)
    total = add_counts(counted, settings.fit_attributes, settings.numeric_bins)
    pd.testing.assert_frame_equal(total.catalog, expected.catalog)
    for name in ("snapshots", "rows", "customers", "first", "first_customers", "present_won", "present_lost"):
        np.testing.assert_array_equal(getattr(total, name), getattr(expected, name), err_msg=name)


def test_frequency_thresholds_from_added_counts_are_those_of_the_whole() -> None:
    rng = np.random.default_rng(7)
    peak = rng.poisson(2.0, size=6000)
    closed = (rng.random(6000) < np.where(peak >= 4, 0.2, 0.05)).astype(int)  # planted: 4+ closes four times as often
    frame = pd.DataFrame({peak_column("web", 30): peak})
    cuts = [0, 1000, 1001, 4500, 6000]
    parts = [count_peaks(frame.iloc[a:b], closed[a:b], ["web"], [30]) for a, b in zip(cuts, cuts[1:])]
    added = {key: add_peak_counts(add_peak_counts(add_peak_counts(parts[0][key], parts[1][key]), parts[2][key]),
                                  parts[3][key]) for key in parts[0]}
    found = discover(added, ["web"], [30], 30, 0.001)
    assert found == discover(count_peaks(frame, closed, ["web"], [30]), ["web"], [30], 30, 0.001)
    assert [f.min_count for f in found] == [4]
    heavy = peak >= 4
    assert found[0].leads_at_or_above == int(heavy.sum())
    assert found[0].close_rate_at_or_above == closed[heavy].mean()
    assert found[0].close_rate_below == closed[(peak >= 1) & ~heavy].mean()


def test_count_peak_counts_leads_and_customers_at_each_value() -> None:
    counts = count_peak(np.array([0, 2, 2, 5]), np.array([0, 1, 0, 1]))
    assert counts.tolist() == [[1, 0, 2, 0, 0, 1], [0, 0, 1, 0, 0, 1]]


def test_parts_never_split_a_lead(tmp_path: Path) -> None:
    ids = ["a"] * 5 + ["b"] + ["c"] * 2 + ["d"] * 3 + ["e"]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"lead_id": ids, "x": list(range(len(ids)))}), path, row_group_size=4)
    parts = _parts(path, 2)
    assert pd.concat(parts)["x"].tolist() == list(range(len(ids)))
    seen = [set(p["lead_id"]) for p in parts]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])
    assert len(parts) > 2  # several parts, lead "a" longer than one read
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"lead_id": pa.array([], pa.string()), "x": pa.array([], pa.int64())}), empty)
    assert [len(p) for p in _parts(empty, 2)] == [0]


def test_close_rates_are_the_same_whatever_the_part_size(default_run: Params, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    rows = len(io.read_parquet(default_run.paths.features / FEATURES, columns=["closed"]))
    written = []
    for name, part_rows in (("one", rows), ("many", 1500)):
        params = params_in(tmp_path / name, default_run)
        shutil.copytree(default_run.paths.features, params.paths.features)
        monkeypatch.setattr(close_rates, "CHUNK_ROWS", part_rows)
        close_rates.run(params)
        written.append(params.paths.models)
    for name in ("close_rates.csv", "signals.json", "metrics/close_rates.json"):
        assert (written[0] / name).read_bytes() == (written[1] / name).read_bytes(), name
    assert (written[0] / "close_rates.csv").read_bytes() == (default_run.paths.models / "close_rates.csv").read_bytes()


@pytest.mark.parametrize("snapshot_export", [False, True])
def test_a_split_rule_splits_any_range_of_leads_as_it_splits_the_whole_table(default_run: Params,
                                                                             snapshot_export: bool) -> None:
    """Spark's executors see a partition, not the table: the rule taken from the whole table
    gives each range of leads the rows the whole table's split gives it."""
    from pipeline.core.signals import split_rule, time_split
    from pipeline.design import FOLD_COLUMN, SNAPSHOT_COHORT

    features = io.read_parquet(default_run.paths.features / FEATURES)
    if snapshot_export:  # random folds, the last held out: a range may hold no row of that fold
        features = features.assign(cohort=SNAPSHOT_COHORT, **{FOLD_COLUMN: np.where(
            features["closed"] >= 0, np.arange(len(features)) // (len(features) // 5 + 1), -1)})
    train, held_out = time_split(features, 2, default_run.outcome.horizon_days)
    # the split as written out by hand: the last two cohorts (or the last fold) held out, training
    # on the leads whose outcome was known when the held-out period began
    known = features["closed"] >= 0
    if snapshot_export:
        expected_held_out = known & (features[FOLD_COLUMN] == features[FOLD_COLUMN].max())
        expected_train = known & ~expected_held_out
    else:
        expected_held_out = known & features["cohort"].isin(sorted(features.loc[known, "cohort"].unique())[-2:])
        start = features.loc[expected_held_out, "created_at"].min()
        expected_train = known & ~expected_held_out & (
            features["created_at"] + pd.Timedelta(days=default_run.outcome.horizon_days) <= start)
    assert train.equals(expected_train) and held_out.equals(expected_held_out)
    assert train.any() and held_out.any()
    rule = split_rule(features, 2, default_run.outcome.horizon_days)
    for rows in (slice(0, 100), slice(100, len(features) // 2), slice(len(features) // 2, None)):
        part_train, part_held_out = rule.masks(features.iloc[rows])
        assert part_train.equals(train.iloc[rows]) and part_held_out.equals(held_out.iloc[rows])


def _same_counts(got, expected) -> None:  # noqa: ANN001 - two SignalCounts
    pd.testing.assert_frame_equal(got.catalog, expected.catalog)
    for name in ("snapshots", "rows", "customers", "first", "first_customers", "present_won", "present_lost"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


def test_frequency_counts_joined_to_the_features_counts_are_everything_counted_at_once(default_run: Params) -> None:
    """The close-rates stage counts only the frequency signals it discovers and joins them to the
    features stage's counts (SIGNAL_COUNTS): the same counts, in the same order, as counting every
    signal of the table at once; and the JSON round trip keeps them exactly."""
    whole = io.read_parquet(default_run.paths.features / FEATURES)
    fixed = [FrequencySignal(activity="email_open", min_count=2, window_days=30)]
    discovered = [FrequencySignal(activity="pricing_page_visit", min_count=2, window_days=30),
                  FrequencySignal(activity="webinar_attendance", min_count=2, window_days=30)]
    settings = default_run.signals.model_copy(update={"frequency": default_run.signals.frequency.model_copy(
        update={"fixed": fixed})})
    known = labelled(whole).to_numpy()
    expected = count_signals(build_signals(whole, settings, [*fixed, *discovered]).take(known),
                             whole.loc[known, "closed"].to_numpy())
    base = SignalCounts.from_dict(json.loads(json.dumps(count_labelled(whole, settings).as_dict())))
    joined = base.with_frequency(count_frequency(whole, discovered))
    assert list(joined.catalog["type"]).count("frequency") == 3 and joined.first[:, 1:].any()
    _same_counts(joined, expected)
    with pytest.raises(ValueError, match="same rows"):
        base.with_frequency(count_frequency(whole.iloc[: len(whole) // 2], discovered))


def test_close_rates_without_the_features_counts_name_the_missing_file(default_run: Params, tmp_path: Path) -> None:
    features = tmp_path / "features"
    shutil.copytree(default_run.paths.features, features)
    (features / SIGNAL_COUNTS).unlink()
    params = default_run.model_copy(update={"paths": default_run.paths.model_copy(update={"features": features})})
    with pytest.raises(LeadcalError, match=rf"{SIGNAL_COUNTS}: not found \(run `leadcal features` first"):
        close_rates.count_table(params, [])


def test_close_rates_refuse_counts_taken_with_other_signal_settings(default_run: Params, tmp_path: Path) -> None:
    """`leadcal close-rates` run by hand after params' signals changed (dvc would rerun features):
    the saved counts describe other signals, so they are refused, not published."""
    counts, _ = close_rates.count_table(default_run, [])
    assert len(counts.catalog) > 10
    changed = default_run.model_copy(update={"signals": default_run.signals.model_copy(
        update={"recency_days": [3, *default_run.signals.recency_days]})})
    with pytest.raises(LeadcalError, match=r"counted with other `signals` settings .* run `leadcal features` again"):
        close_rates.count_table(changed, [])
