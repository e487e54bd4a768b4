"""The streaming (DuckDB) event-log path agrees with the pandas path, row for row.

The same export, with a bad row of every recoverable kind, is extracted once with the
activities as CSV (pandas) and once as Parquet (DuckDB, out of core): the canonical table
and the drop counts must be identical, the output byte-identical across runs, and the
unrecoverable problems must stop with the same kind of message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline import io
from pipeline.data.generate import write_sample
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.stages.extract import extract
from tests.conftest import params_in

BAD_ROWS = pd.DataFrame({
    "lead_id": ["NOBODY", "L000001", "L000002", "L000002"],
    "activity": ["demo_request", "Demo_Request ", "webinar_attendance", "webinar_attendance"],
    "occurred_at": ["2024-03-01T10:00:00Z", "2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z", "2099-01-01T00:00:00Z"],
})


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated export, its event log with one bad row of each recoverable kind appended."""
    root = tmp_path_factory.mktemp("event_log")
    params = params_in(root, generate={"n_leads": 800, "months": 6})
    write_sample(params)
    activities = pd.read_csv(params.paths.raw / "activities.csv", dtype=str, keep_default_na=False)
    duplicate = activities.iloc[[5, 17]]  # two events repeated: duplicates
    pd.concat([activities, duplicate, BAD_ROWS]).to_csv(params.paths.raw / "activities.csv", index=False)
    return params.paths.raw


def _raw_folder(export: Path, root: Path) -> Path:
    """root/raw with the export's leads and stages; each test writes its own event log beside them."""
    raw = root / "raw"
    raw.mkdir(parents=True)
    for name in ("leads.csv", "stages.csv"):
        shutil.copy(export / name, raw / name)
    return raw


def _extract_from(export: Path, root: Path, activities_as: str, policy: str = "drop",
                  events: pd.DataFrame | None = None) -> tuple[Params, dict]:
    raw = _raw_folder(export, root)
    if events is None:
        events = pd.read_csv(export / "activities.csv", dtype=str, keep_default_na=False)
    if activities_as == "csv":
        events.to_csv(raw / "activities.csv", index=False)
    elif activities_as == "parquet":
        events.to_parquet(raw / "activities.parquet", index=False)  # timestamps as text
    else:  # a folder of monthly files, timestamps typed
        (raw / "activities").mkdir()
        events = events.assign(occurred_at=pd.to_datetime(events["occurred_at"], utc=True))
        for month, part in events.groupby(events["occurred_at"].dt.strftime("%Y-%m")):
            part.to_parquet(raw / "activities" / f"{month}.parquet", index=False)
    params = params_in(root, extract={"on_bad_rows": policy})
    return params, extract(params)


@pytest.mark.parametrize("activities_as", ["parquet", "parquet_folder"])
def test_streaming_path_gives_the_pandas_table_and_counts(export: Path, tmp_path: Path, activities_as: str) -> None:
    pandas_params, pandas_report = _extract_from(export, tmp_path / "pandas", "csv")
    duck_params, duck_report = _extract_from(export, tmp_path / "duck", activities_as)
    expected = io.read_parquet(pandas_params.paths.extracted / "activities.parquet")
    got = io.read_parquet(duck_params.paths.extracted / "activities.parquet")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    for key in ("dropped", "rows_read", "rows_written"):
        assert duck_report["tables"]["activities"][key] == pandas_report["tables"]["activities"][key]
    assert pandas_report["tables"]["activities"]["dropped"] == {
        "unknown lead_id": 1, "occurred before the lead was created": 1, "dated in the future": 2, "duplicate event": 2}
    assert duck_report["activities_seen"] == pandas_report["activities_seen"]
    assert duck_report["date_range"] == pandas_report["date_range"]


@pytest.mark.parametrize("ids", ["as written", "padded"])
def test_ids_matched_as_written_or_after_trimming_agree_with_pandas(export: Path, tmp_path: Path, ids: str) -> None:
    """The streaming path matches ids as written and trims them only when one matches no lead.

    Without the unknown lead every id matches as written (no trimming pass); with ids padded
    by spaces and tabs, the trimming pass runs. Both give the pandas path's table and counts.
    """
    events = pd.read_csv(export / "activities.csv", dtype=str, keep_default_na=False)
    events = events[events["lead_id"] != "NOBODY"].reset_index(drop=True)
    if ids == "padded":
        events.loc[::7, "lead_id"] = " " + events.loc[::7, "lead_id"] + "\t"
    pandas_params, pandas_report = _extract_from(export, tmp_path / "pandas", "csv", events=events)
    duck_params, duck_report = _extract_from(export, tmp_path / "duck", "parquet", events=events)
    expected = io.read_parquet(pandas_params.paths.extracted / "activities.parquet")
    pd.testing.assert_frame_equal(io.read_parquet(duck_params.paths.extracted / "activities.parquet"), expected,
                                  check_dtype=False)
    assert duck_report["tables"]["activities"] == {**pandas_report["tables"]["activities"],
                                                   "file": duck_report["tables"]["activities"]["file"]}
    assert duck_report["tables"]["activities"]["dropped"] == {
        "occurred before the lead was created": 1, "dated in the future": 2, "duplicate event": 2}
    assert not expected["lead_id"].str.contains(r"\s").any() and len(expected) > 1000


def test_streaming_output_is_byte_identical_across_runs(export: Path, tmp_path: Path) -> None:
    first, _ = _extract_from(export, tmp_path / "one", "parquet")
    second, _ = _extract_from(export, tmp_path / "two", "parquet")
    assert (first.paths.extracted / "activities.parquet").read_bytes() == \
        (second.paths.extracted / "activities.parquet").read_bytes()
    assert not any(p.name.startswith(".") for p in first.paths.extracted.iterdir())  # no partial or spill left


def test_streaming_fail_policy_names_the_rows(export: Path, tmp_path: Path) -> None:
    with pytest.raises(LeadcalError, match=r"activities.parquet: 1 row\(s\): unknown lead_id .*row \d+: 'NOBODY'"):
        _extract_from(export, tmp_path, "parquet", policy="fail")


@pytest.mark.parametrize(("column", "value", "message"), [
    ("occurred_at", "yesterday", r"column 'occurred_at': 1 value\(s\) are not ISO-8601 dates.*row 3: 'yesterday'"),
    ("lead_id", " ", r"column 'lead_id': 1 empty id\(s\); row 3: ''"),
    ("activity", "", r"column 'activity': 1 empty activity name\(s\); row 3: 'L000001'"),
])
def test_streaming_unrecoverable_rows_stop_with_the_row(export: Path, tmp_path: Path, column: str, value: str,
                                                        message: str) -> None:
    raw = _raw_folder(export, tmp_path)
    events = pd.DataFrame({"lead_id": ["L000001"] * 4, "activity": ["blog_read"] * 4,
                           "occurred_at": ["2024-06-01T00:00:00Z"] * 4})
    events.loc[2, column] = value
    events.to_parquet(raw / "activities.parquet", index=False)
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    (extracted / "activities.parquet").write_bytes(b"previous output")
    with pytest.raises(LeadcalError, match=message):
        extract(params_in(tmp_path))
    assert (extracted / "activities.parquet").read_bytes() == b"previous output"


def test_streaming_missing_column_is_named(export: Path, tmp_path: Path) -> None:
    raw = _raw_folder(export, tmp_path)
    pd.DataFrame({"lead_id": ["L000001"], "event": ["x"], "occurred_at": ["2024-06-01"]}).to_parquet(
        raw / "activities.parquet", index=False)
    with pytest.raises(LeadcalError, match=r"missing required column\(s\) \['activity'\]; found \['lead_id', 'event'"):
        extract(params_in(tmp_path))


def test_streaming_fail_policy_on_duplicates_names_the_copy(export: Path, tmp_path: Path) -> None:
    raw = _raw_folder(export, tmp_path)
    events = pd.DataFrame({"lead_id": ["L000001"] * 3, "activity": ["blog_read", "demo_request", "blog_read"],
                           "occurred_at": ["2024-06-01T00:00:00Z"] * 3})
    events.to_parquet(raw / "activities.parquet", index=False)
    with pytest.raises(LeadcalError, match=r"1 row\(s\): duplicate event .*row 3: 'L000001'$"):
        extract(params_in(tmp_path, extract={"on_bad_rows": "fail"}))
    assert not (tmp_path / "extracted" / "activities.parquet").exists()
    assert not any((tmp_path / "extracted").glob(".*"))


def test_streaming_out_of_memory_is_one_clear_line(export: Path, tmp_path: Path) -> None:
    """A cap too small for the log: a message naming the setting, no partial output, no traceback."""
    raw = _raw_folder(export, tmp_path)
    events = pd.read_csv(export / "activities.csv", dtype=str, keep_default_na=False)
    pd.concat([events] * 40).to_parquet(raw / "activities.parquet", index=False)
    params = params_in(tmp_path, duckdb_memory_gb=0.001)
    with pytest.raises(LeadcalError, match=r"needs more than duckdb_memory_gb = 0.001 GB"):
        extract(params)
    assert not any(params.paths.extracted.glob("*activities*"))
    # the per-lead aggregation under the same cap: the same kind of message
    from pipeline.stages.features import build_features

    extract(params_in(tmp_path))
    with pytest.raises(LeadcalError, match=r"needs more than duckdb_memory_gb = 0.001 GB for the per-lead"):
        build_features(params)


def test_streaming_names_a_bad_date_before_an_unknown_lead_as_the_pandas_path_does(export: Path, tmp_path: Path) -> None:
    """Under on_bad_rows: fail the stream stops at the first row it would refuse (here the unknown
    lead, which sorts first); the message still names what the pandas path names first: the date."""
    events = pd.DataFrame({"lead_id": ["NOBODY", "L000001", "L000001"], "activity": ["blog_read"] * 3,
                           "occurred_at": ["2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z", "soon"]})
    for activities_as in ("csv", "parquet"):
        with pytest.raises(LeadcalError, match=r"column 'occurred_at': 1 value\(s\) are not ISO-8601 dates.*'soon'"):
            _extract_from(export, tmp_path / activities_as, activities_as, policy="fail", events=events)


def test_the_sort_holds_only_the_leads_ids_and_dates_and_the_leads_table_is_already_written(
        export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 10M leads the validated leads frame (1.3 GB) and the raw stages (1-2 GB) pushed the
    event log's sort past 4 GiB: the leads are written before it, the stages read after it."""
    from pipeline.data import sources
    from pipeline.stages import extract as extract_stage

    seen: dict[str, object] = {}
    write_log, read_path = extract_stage._write_event_log, sources.read_path

    def spying_log(source, leads, out, *args):  # noqa: ANN001, ANN202 - the stage's own signature
        seen["columns"] = list(leads.columns)
        seen["leads written"] = (out.parent / "leads.parquet").exists()
        seen["ids as Python strings"] = leads["lead_id"].dtype == object
        return write_log(source, leads, out, *args)

    def reading(path: Path):  # noqa: ANN202
        seen.setdefault("read", []).append((path.name, "columns" in seen))
        return read_path(path)

    monkeypatch.setattr(extract_stage, "_write_event_log", spying_log)
    monkeypatch.setattr(extract_stage, "read_path", reading)
    _extract_from(export, tmp_path, "parquet")

    assert seen["columns"] == ["lead_id", "created_at"] and seen["leads written"]
    assert not seen["ids as Python strings"]
    assert ("stages.csv", True) in seen["read"] and ("stages.csv", False) not in seen["read"]


def test_a_fit_attribute_that_is_an_id_is_refused_before_the_event_log_is_read(
        export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused on the leads alone: no pass over what may be 300M events first."""
    from pipeline.stages import extract as extract_stage

    def no_log(*args: object) -> None:
        raise AssertionError("the event log was read before the leads were refused")

    monkeypatch.setattr(extract_stage, "_write_event_log", no_log)
    raw = _raw_folder(export, tmp_path)
    pd.read_csv(export / "activities.csv", dtype=str, keep_default_na=False).to_parquet(raw / "activities.parquet")
    params = params_in(tmp_path)
    params = params.model_copy(update={"signals": params.signals.model_copy(
        update={"fit_attributes": [*params.signals.fit_attributes, "lead_id_copy"]})})
    leads = pd.read_csv(raw / "leads.csv", dtype=str, keep_default_na=False)
    leads.assign(lead_id_copy=leads["lead_id"]).to_csv(raw / "leads.csv", index=False)

    with pytest.raises(LeadcalError, match=r"fit attribute 'lead_id_copy' .* no other lead"):
        extract(params)


@pytest.mark.parametrize("stages_as", ["csv", "parquet"])
def test_a_stages_file_without_its_columns_is_refused_before_the_event_log_is_read(
        export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stages_as: str) -> None:
    """The stages are read after the event log's pass (its memory); their header is not: a file
    that lacks a required column is named before a pass over what may be 300M events."""
    from pipeline.stages import extract as extract_stage

    def no_log(*args: object) -> None:
        raise AssertionError("the event log was read before the stages file was refused")

    monkeypatch.setattr(extract_stage, "_write_event_log", no_log)
    raw = _raw_folder(export, tmp_path)
    pd.read_csv(export / "activities.csv", dtype=str, keep_default_na=False).to_parquet(raw / "activities.parquet")
    stages = pd.read_csv(raw / "stages.csv", dtype=str, keep_default_na=False).rename(columns={"entered_at": "date"})
    (raw / "stages.csv").unlink()
    if stages_as == "csv":
        stages.to_csv(raw / "stages.csv", index=False)
    else:
        stages.to_parquet(raw / "stages.parquet", index=False)

    with pytest.raises(LeadcalError, match=rf"stages\.{stages_as}: missing required column\(s\) \['entered_at'\]"):
        extract(params_in(tmp_path))


def test_rows_sorted_on_lead_and_time_come_out_in_name_order_across_batches() -> None:
    """DuckDB sorts the log on (lead, time) only; in_name_order sorts the rows of one lead at one
    instant by name, also when they straddle two batches, so exact duplicates end up adjacent."""
    import numpy as np
    import pyarrow as pa

    from pipeline.data.event_log import in_name_order

    def batch(lead: list[int], name: list[int], us: list[int]) -> pa.RecordBatch:
        return pa.record_batch({"lead": pa.array(lead, pa.int32()), "name": pa.array(name, pa.int32()),
                                "us": pa.array(us, pa.int64()), "verdict": pa.array([0] * len(lead), pa.int8())})

    # lead 1 at instant 5: names 3, then (next batch) 0 and 3 again: out as 0, 3, 3 (duplicates adjacent)
    by_hand = [np.concatenate(c) for c in zip(*in_name_order([batch([0, 1], [2, 3], [9, 5]),
                                                               batch([1, 1, 2], [0, 3, 1], [5, 5, 1])]))]
    assert by_hand[0].tolist() == [0, 1, 1, 1, 2] and by_hand[1].tolist() == [2, 0, 3, 3, 1]

    rng = np.random.default_rng(11)
    lead = np.sort(rng.integers(0, 30, 400)).astype(np.int32)
    us = rng.integers(0, 5, 400).astype(np.int64)  # few instants: many ties
    order = np.lexsort((us, lead))
    lead, us = lead[order], us[order]
    name = rng.integers(0, 4, 400).astype(np.int32)
    verdict = rng.integers(0, 2, 400).astype(np.int8)
    whole = pa.record_batch({"lead": lead, "name": name, "us": us, "verdict": verdict})
    batches = [whole.slice(start, size) for start, size in ((0, 0), (0, 97), (97, 3), (100, 300))]
    got = [np.concatenate(columns) for columns in zip(*in_name_order(batches))]
    expected = np.lexsort((name, us, lead))
    np.testing.assert_array_equal(got[0], lead[expected])
    np.testing.assert_array_equal(got[2], us[expected])
    np.testing.assert_array_equal(got[1], name[expected])
    # each row kept once: the same (name, verdict) pairs within every (lead, time)
    key = lambda columns: sorted(zip(*(c.tolist() for c in columns)))  # noqa: E731
    assert key(got) == key((lead, name, us, verdict))
    assert (np.diff(lead[expected]) >= 0).all() and len(set(zip(lead.tolist(), us.tolist()))) < 150  # ties were there


def test_a_full_disk_while_the_log_is_encoded_is_one_line_and_leaves_no_partial(export: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The event log is encoded on a second thread (pipeline.io.in_background): its failure reaches
    the stage as the one-line error naming the file, and neither a partial log nor the thread stays."""
    import errno
    import threading

    import pyarrow as pa
    import pyarrow.parquet as pq

    real = pq.ParquetWriter.write_table

    def full_disk(self, table, *args, **kwargs) -> None:  # noqa: ANN001
        if pa.types.is_dictionary(table.schema.field(0).type):  # the event log's batches: ids as codes
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    with pytest.raises(LeadcalError, match=r"no space left on device while writing \S*activities\.parquet"):
        _extract_from(export, tmp_path, "parquet")
    assert not list(tmp_path.glob("extracted/**/*activities*"))
    assert not [t for t in threading.enumerate() if t.name == "event-log-writer"]
