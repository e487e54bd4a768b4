"""Raw export -> the three canonical tables as Parquet, plus a report of what was dropped.

This is the only stage that reads user files, so it is where bad input is caught:
every problem names the file, the column and example rows (pipeline.data.contract).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import io
from pipeline.data import sources
from pipeline.data.contract import (
    KNOWN_ACTIVITIES,
    STAGES_REQUIRED,
    TableReport,
    dropped_lead_ids,
    identifier_attributes,
    require_header,
    validate_activities,
    validate_leads,
    validate_stages,
)
from pipeline.data.engine import open_engine, parquet_files, spark_session
from pipeline.data.event_log import write_event_log
from pipeline.data.sources import TABLES, existing_table, find_table, header_columns, read_path
from pipeline.design import DATED, SNAPSHOT, SNAPSHOT_NOTE
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.staging import staged_folder

log = logging.getLogger(__name__)

def validate_tables(
    raw: dict[str, pd.DataFrame | Path | None], origins: dict[str, str], params: Params, policy: str,
    now: pd.Timestamp | None, out: Path | None = None,
) -> tuple[dict[str, pd.DataFrame | None], dict[str, TableReport]]:
    """Raw tables (contract column names, values still text) -> validated canonical tables.

    A missing stages table gives an empty one (new leads to score have no funnel history).

    With `out` (the extract stage's folder) each table is written there as soon as it is
    validated, and only what later steps read is kept: the leads' ids (as Arrow text) and
    creation dates, no activities, the stages (a few rows per lead) whole. Activities given as a Parquet path are validated and
    written by the engine params ask for (`engine:`): DuckDB, streaming (pipeline.data.event_log),
    or Spark's executors (pipeline.data.event_log_spark). Leads and stages given as paths are
    read here, the stages only after the event log is written. At 10M leads the raw leads,
    the validated ones and the raw stages each take 1-2 GB, which the event log's sort needs.
    """
    fit_attributes = params.signals.fit_attributes
    numeric = [a for a in fit_attributes if a in params.signals.numeric_bins]
    raw_leads = _read(raw["leads"])
    leads, leads_report = validate_leads(raw_leads, origins["leads"], fit_attributes, numeric, policy, now,
                                         params.extract.min_date)
    # the events and stages of a lead dropped here are dropped with it, under their own reason
    dropped = dropped_lead_ids(raw_leads, leads) if leads_report.dropped else None
    del raw_leads
    if out is not None:
        leads = _written_leads(leads, out, params, origins["leads"])
    if isinstance(raw["activities"], Path):
        if out is None:
            raise LeadcalError(f"{raw['activities']}: a Parquet event log needs an output folder to stream to")
        if isinstance(raw.get("stages"), Path):  # read after the event log's pass: its header is checked before it
            columns = header_columns(raw["stages"])
            if columns is not None:
                require_header(columns, STAGES_REQUIRED, origins["stages"])
        activities = None
        activities_report = _write_event_log(raw["activities"], leads, out / "activities.parquet", params, policy,
                                             now, dropped, origins["leads"])
    else:
        activities, activities_report = validate_activities(
            raw["activities"], origins["activities"], leads["lead_id"], leads["created_at"], policy, now, dropped,
            origins["leads"],
        )
        activities = activities[["lead_id", "activity", "occurred_at"]]
        if out is not None:
            # sorted by lead, like the streamed log: its lead id spans let features read a range of leads
            io.write_parquet(out / "activities.parquet", activities, statistics=["lead_id"])
            activities = None
    if raw.get("stages") is None:
        stages = pd.DataFrame({"lead_id": pd.Series(dtype=object), "stage": pd.Series(dtype=object),
                               "entered_at": pd.Series(dtype="datetime64[us]"), "amount": pd.Series(dtype=float)})
        stages_report = TableReport()
    else:
        stages, stages_report = validate_stages(
            _read(raw["stages"]), origins["stages"], leads["lead_id"], leads["created_at"], policy, now, dropped,
            origins["leads"],
        )
    if out is not None:
        io.write_parquet(out / "stages.parquet", stages)
    tables = {"leads": leads, "activities": activities, "stages": stages}
    reports = {"leads": leads_report, "activities": activities_report, "stages": stages_report}
    return tables, reports


def _written_leads(leads: pd.DataFrame, out: Path, params: Params, origin: str) -> pd.DataFrame:
    """Check the validated leads' fit attributes, write the leads table, keep ids and creation dates.

    The ids are kept as Arrow text: at 10M leads a Python string per id takes 0.7 GB, and the
    whole frame 1.3 GB, while the event log's sort needs the memory."""
    # on the whole history only (a batch of new leads to score may well differ on every lead)
    identifier_attributes(leads, [a for a in params.signals.fit_attributes if a not in params.signals.numeric_bins],
                          origin)
    io.write_parquet(out / "leads.parquet", contract_order(leads, params.signals.fit_attributes))
    ids = pd.arrays.ArrowExtensionArray(pa.array(leads["lead_id"], type=pa.string()))
    return pd.DataFrame({"lead_id": pd.Series(ids, index=leads.index), "created_at": leads["created_at"]})


def _read(table: pd.DataFrame | Path) -> pd.DataFrame:
    """A raw table, read now if it is given as its file."""
    return read_path(table)[0] if isinstance(table, Path) else table


def _write_event_log(source: Path, leads: pd.DataFrame, out: Path, params: Params, policy: str,
                     now: pd.Timestamp | None, dropped: pd.Series | None, leads_source: str) -> TableReport:
    """The Parquet event log validated and written by the configured engine: the same rules,
    counts and report either way (tests/test_event_log_spark.py)."""
    if params.engine == "spark":
        session = spark_session(params.spark.master, params.spark.config)  # a clear error without PySpark
        from pipeline.data.event_log_spark import write_event_log_spark

        return write_event_log_spark(session, source, leads, out, policy, now, dropped, leads_source)
    return write_event_log(source, leads, out, policy, now, params.duckdb_memory_gb, dropped, leads_source)


def read_export(
    folder: Path, params: Params, policy: str, now: pd.Timestamp | None, stages_required: bool = True,
    out: Path | None = None,
) -> tuple[dict[str, pd.DataFrame | None], dict[str, TableReport], dict[str, Path | None]]:
    """The three tables of an export folder in the contract's own shape, validated.

    Returns (tables, reports, paths). Without `stages_required` a missing stages file gives
    an empty stages table (new leads to score have no funnel history yet). With `out` the
    tables are written there as they are validated (validate_tables).
    """
    paths: dict[str, Path | None] = {"leads": find_table(folder, "leads"), "activities": find_table(folder, "activities"),
                                     "stages": find_table(folder, "stages") if stages_required else existing_table(folder, "stages")}
    streamed = out is not None and streams(paths["activities"])
    # the leads and stages stay paths, read as they are validated (validate_tables); so does a
    # streamed event log (DuckDB reads it in row groups)
    raw: dict[str, pd.DataFrame | Path | None] = {
        name: path if path is None or name != "activities" or streamed else read_path(path)[0]
        for name, path in paths.items()}
    tables, reports = validate_tables(raw, {name: str(path) for name, path in paths.items()}, params, policy, now,
                                      out)
    return tables, reports, paths


def streams(path: Path | None) -> bool:
    """An event log stored as Parquet (a file or a folder of files) is validated out of core."""
    return path is not None and (path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet"))))


def read_source(params: Params, policy: str, now: pd.Timestamp | None, out: Path
                ) -> tuple[dict[str, pd.DataFrame | None], dict[str, TableReport], dict[str, str], dict[str, object]]:
    """The tables as params `source:` maps them (CRM export, event-log folder, wide sheet, SQL),
    validated and written to `out` (validate_tables)."""
    if params.source.leads is None:
        tables, reports, paths = read_export(params.paths.raw, params, policy, now, out=out)
        return tables, reports, {name: str(path) for name, path in paths.items()}, {}
    raw, origins, normalisation = sources.load(params.source, params.paths.raw)
    tables, reports = validate_tables(raw, origins, params, policy, now, out)
    return tables, reports, origins, normalisation


def activity_summary(path: Path, params: Params) -> tuple[pd.Series, pd.Timestamp | None, pd.Timestamp | None]:
    """Events per activity name (in name order) and the first and last event of the written table.

    Under `engine: spark` the table (every event) is read by Spark's executors. Otherwise it
    comes from the file's dictionary pages and row-group statistics (the streamed log writes
    both): counting the codes of one column takes a fifth of the time a DuckDB scan of it took
    on 30M events. A table without statistics (the pandas path's) has its dates read."""
    if params.engine == "spark":
        return _summary_by_engine(path, params)
    seen: dict[str, int] = {}
    for chunk in pq.read_table(path, columns=["activity"], read_dictionary=["activity"]).column("activity").chunks:
        per_code = np.bincount(chunk.indices.to_numpy(zero_copy_only=False), minlength=len(chunk.dictionary))
        for name, count in zip(chunk.dictionary.to_pylist(), per_code.tolist()):
            if count:
                seen[name] = seen.get(name, 0) + count
    names = sorted(seen)
    counts = pd.Series([seen[name] for name in names], index=names, dtype="int64")
    if not names:
        return counts, None, None
    files = [pq.ParquetFile(part) for part in parquet_files(path)]
    spans = [_date_span(file) for file in files if file.metadata.num_rows]  # an empty part file has no dates
    return counts, min(first for first, _ in spans), max(last for _, last in spans)


def _date_span(file: pq.ParquetFile) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last occurred_at: from the row groups' statistics, or, without them, read."""
    metadata = file.metadata
    column = file.schema_arrow.get_field_index("occurred_at")
    stats = [metadata.row_group(g).column(column).statistics for g in range(metadata.num_row_groups)]
    if all(s is not None and s.has_min_max for s in stats):
        return pd.Timestamp(min(s.min for s in stats)), pd.Timestamp(max(s.max for s in stats))
    span = pc.min_max(file.read(columns=["occurred_at"]).column("occurred_at"))
    return pd.Timestamp(span["min"].as_py()), pd.Timestamp(span["max"].as_py())


def _summary_by_engine(path: Path, params: Params) -> tuple[pd.Series, pd.Timestamp | None, pd.Timestamp | None]:
    """activity_summary by the configured engine: one scan, per activity its events, first and last."""
    engine = open_engine(params)
    try:
        engine.view_parquet("written_events", path)
        counts = engine.fetch("SELECT activity, count(*) AS n, min(occurred_at) AS first, max(occurred_at) AS last "
                              "FROM written_events GROUP BY activity ORDER BY activity")
    finally:
        engine.close()
    seen = pd.Series(counts["n"].to_numpy(), index=counts["activity"].to_numpy(), dtype="int64")
    if counts.empty:
        return seen, None, None
    return seen, counts["first"].min(), counts["last"].max()


def contract_order(leads: pd.DataFrame, fit_attributes: list[str]) -> pd.DataFrame:
    """The leads table's columns as the contract writes them: id, date, fit attributes first."""
    keep = ["lead_id", "created_at", *[a for a in fit_attributes if a not in ("lead_id", "created_at")]]
    return leads[keep + [c for c in leads.columns if c not in keep]]


def date_range(*columns: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last date of several columns, missing dates skipped (NaT when there is none):
    each column's own ends, not one concatenated column (6 s at 10M leads)."""
    ends = pd.Series([end for column in columns for end in (column.min(), column.max())], dtype="datetime64[us]")
    return ends.min(), ends.max()


def extract(params: Params) -> dict[str, object]:
    """Read the source, validate it, write the canonical tables under paths.extracted, return the report.

    Everything is written to a staging folder that then replaces paths.extracted as a whole
    (pipeline.staging): a failed or killed run leaves the previous tables and report together."""
    with staged_folder(params.paths.extracted) as out:
        return _extract_to(params, out)


def _extract_to(params: Params, out: Path) -> dict[str, object]:
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    tables, reports, origins, normalisation = read_source(params, params.extract.on_bad_rows, now, out)
    for name in TABLES:
        log.info("extract: %s: %d rows kept of %d", origins[name], reports[name].rows_written, reports[name].rows_read)
    seen, first_event, last_event = activity_summary(out / "activities.parquet", params)
    first, last = date_range(tables["leads"]["created_at"], tables["stages"]["entered_at"],
                             pd.Series([first_event, last_event], dtype="datetime64[us]"))
    unknown = {name: int(count) for name, count in seen.items() if name not in KNOWN_ACTIVITIES}
    if unknown:
        log.info("extract: %d activity name(s) outside the usual vocabulary (scored anyway; map spellings in "
                 "source.activities.values if needed): %s", len(unknown), ", ".join(list(unknown)[:8]))
    mode = str(normalisation.get("mode", DATED))
    if mode == SNAPSHOT:
        log.info("extract: a snapshot export (one row per lead, no dates): %s. %s", SNAPSHOT_NOTE,
                 normalisation.get("created_at_ignored", ""))
    report = {
        "mode": mode,
        "tables": {name: {"file": origins[name], **reports[name].as_dict()} for name in TABLES},
        "activities_seen": seen.to_dict(),
        "unknown_activities": unknown,
        # a snapshot's timeline is synthetic (pipeline.design): its dates mean nothing
        "date_range": {"first": first, "last": last} if mode == DATED else None,
    }
    if normalisation:
        report["normalisation"] = normalisation
    io.write_json(out / "extract_report.json", report)
    return report
