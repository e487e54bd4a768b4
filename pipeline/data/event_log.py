"""The event log at scale: validated and written by DuckDB, streaming, never whole in pandas.

A web-tracking log has hundreds of millions of rows; pandas would need tens of GiB to
hold it. When the activities arrive as Parquet (a file or a folder of files), `extract`
hands them to this module: DuckDB reads them in row groups, applies the contract's
rules (pipeline.data.contract: a lead id, an activity name and a date on every row, no NUL byte
in a name; names over 200 characters, events of leads dropped at extract, unknown leads,
events before the lead was created or in the future, and duplicates dropped and counted, or
an error under `extract.on_bad_rows: fail`; no event matching any lead is an error, most
of them not matching a warning) and writes the canonical,
sorted activities.parquet, spilling to disk when memory runs short.

The log is read once. Each row is judged on the way (its verdict: kept, or the first rule
that drops it, or a problem that stops the run) and sorted on small fixed-width keys (the
lead's rank and the timestamp in microseconds: DuckDB's sort; the activity's rank among the
rows of one lead at one instant: NumPy's, as they stream back) instead of strings. The
sorted rows stream back with their verdicts: dropped rows are counted and left out, and
duplicates, which that order makes adjacent, are dropped too. Ids and names
are written as dictionary codes into per-batch slices of the sorted lead ids (Parquet
dictionary pages: no string is built per row). Sorting and removing duplicates with
DISTINCT ... ORDER BY on the strings took 2.5x as long; a counting pass before the sort
read the whole log once more (0.8 s of 4.8 s at 30M events). Only when a row stops the run
is the log read a second time, to count every problem and name the first in the order the
pandas path checks them.

CSV exports, which
CRMs produce at sizes pandas handles, keep the pandas path and its line-numbered
messages; tests check that both paths give the same table and the same counts.

Row numbers in messages count data rows from 1, across the files in name order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.contract import (
    ACTIVITIES_REQUIRED,
    EXAMPLE_ROWS,
    FUTURE,
    LONG_NAME,
    MAX_TEXT,
    OF_DROPPED_LEAD,
    UNKNOWN_SHARE_WARNING,
    TableReport,
    rule_refusal,
    unmatched_error,
    unmatched_warning,
)
from pipeline.data.contract import shown as shown_value  # a value cut for messages (`shown` below names the file)
from pipeline.data.engine import duckdb_connection, parquet_files, sql_literal
from pipeline.errors import LeadcalError
from pipeline.io import in_background
from pipeline.staging import os_error

log = logging.getLogger(__name__)


# The recoverable rules, in the order the pandas path applies them: (reason, SQL condition).
# Long names get a negative rank in name_table (each spelling is judged once, in Python). The
# events of leads dropped at extract are first counted as unknown, then moved to their own
# reason by a second count that runs only when leads were dropped.
RULES: tuple[tuple[str, str | None], ...] = (
    (LONG_NAME, "raw_activity IN (SELECT raw FROM name_table WHERE name_rank < 0)"),
    ("unknown lead_id", "created_at IS NULL"),
    ("occurred before the lead was created", "occurred_at < created_at"),
    (FUTURE, "occurred_at > now"),
    ("duplicate event", None),  # counted from what is written: rows kept - distinct rows
)
LONG, UNKNOWN = 1, 2  # verdicts: RULES[verdict - 1]
WHITESPACE = " \t\n\r\x0b\x0c"  # what Python's str.strip() (the pandas path) trims, in ASCII
BATCH_ROWS = 1_000_000  # sorted rows asked for at a time (DuckDB hands back up to 122,880); a row group each
PROBLEM = len(RULES)  # verdict of a row no policy may drop (no id, no date, no name); 1..4: RULES[verdict - 1]
# The problems that stop the run whatever the policy, as SQL over the judged rows (DuckDB's and
# Spark's alike): `lead_id` is the trimmed id, `occurred_text` the date as written ('x' when typed).
NO_ID = "lead_id IS NULL OR lead_id = ''"
BAD_DATE = "occurred_at IS NULL AND trim(occurred_text) <> ''"
NO_DATE = "occurred_text IS NULL OR trim(occurred_text) = ''"
NO_ROWS = "the table has a header but no rows"
Examples = Callable[[str, str], str]  # (SQL condition over the judged rows, column shown) -> "row 3: 'x', ..."
# written from dictionary arrays, stored as plain strings (store_schema=False): readers see text
CODED = pa.dictionary(pa.int32(), pa.string())
SCHEMA = pa.schema([pa.field("lead_id", CODED, nullable=False), pa.field("activity", CODED, nullable=False),
                    pa.field("occurred_at", pa.timestamp("us"), nullable=False)])


def _trimmed(text: str) -> str:
    """A text expression without the whitespace around it, as Python's str.strip() (the pandas path) trims."""
    return f"trim({text}, {sql_literal(WHITESPACE)})"


def _kept_before(index: int) -> str:
    """Rows that no rule before RULES[index] drops (each rule sees only what the earlier ones kept)."""
    return " AND ".join(["TRUE", *(f"NOT ({condition})" for _, condition in RULES[:index])])


def example_list(rows: Sequence[tuple[str, int, object]], files: int) -> str:
    """(file name, row number, value) rows as a message names them: 'row N' counts data rows from 1
    (per file; the file is named when there are several)."""
    return ", ".join(f"{Path(name).name + ' ' if files > 1 else ''}row {int(number)}: {shown_value(value)}"
                     for name, number, value in rows)


def _examples(con: duckdb.DuckDBPyConnection, condition: str, column: str, files: int, table: str = "judged") -> str:
    """A few offending rows: 'row N' counts data rows from 1 (per file, named when there are several)."""
    rows = con.execute(f"SELECT filename, row_number, {column} FROM {table} WHERE {condition} "
                       f"ORDER BY filename, row_number LIMIT {EXAMPLE_ROWS}").fetchall()
    return example_list(rows, files)


def _refusal(con: duckdb.DuckDBPyConnection, shown: str, reason: str, count: int, condition: str, files: int,
             table: str = "judged") -> LeadcalError:
    return rule_refusal(shown, reason, count, _examples(con, condition, "lead_id", files, table))


def nul_error(shown: str, count: int, examples: str) -> LeadcalError:
    """A NUL byte in an activity name: refused, as the pandas path refuses it (contract.refuse_nul)."""
    return LeadcalError(f"{shown}: column 'activity': {count} value(s) hold a NUL byte (\\x00): the export is "
                        f"damaged or not UTF-8 text; re-export it; {examples}")


def problem_error(shown: str, counts: Sequence[int], no_name: str, examples: Examples) -> LeadcalError | None:
    """The first problem that stops the run whatever the policy, in the order the pandas path checks
    them: empty ids, dates that are not dates, empty dates, empty names. `counts`: the rows with each."""
    empty_ids, bad_dates, empty_dates, empty_names = counts
    if empty_ids:
        return LeadcalError(f"{shown}: column 'lead_id': {empty_ids} empty id(s); {examples(NO_ID, 'lead_id')}")
    if bad_dates:
        return LeadcalError(
            f"{shown}: column 'occurred_at': {bad_dates} value(s) are not ISO-8601 dates (expected e.g. "
            f"2024-03-01 or 2024-03-01T14:05:00Z); {examples(BAD_DATE, 'occurred_text')}")
    if empty_dates:
        return LeadcalError(f"{shown}: column 'occurred_at': {empty_dates} empty value(s); every row needs a date; "
                            f"{examples(NO_DATE, 'occurred_text')}")
    if empty_names:
        return LeadcalError(f"{shown}: column 'activity': {empty_names} empty activity name(s); "
                            f"{examples(no_name, 'lead_id')}")
    return None


def _refusal_of_log(con: duckdb.DuckDBPyConnection, shown: str, files: int, no_name: str, lead_ids: pd.Series,
                    leads_source: str | None) -> LeadcalError:
    """The error for a log the stream found a stopping row in: every check and rule counted over
    the whole log (a second pass, on this path only), the first that fails named as the pandas
    path orders them (empty ids, dates, names, then the rules under on_bad_rows: fail; no row
    matching any lead is a mapping error before the unknown-lead rule)."""
    rule_counts = ", ".join(f"count(*) FILTER (WHERE {_kept_before(i)} AND ({condition}))"
                            for i, (_, condition) in enumerate(RULES[:-1]))
    empty_ids, bad_dates, empty_dates, empty_names, reaching, *dropped = con.execute(f"""
        SELECT count(*) FILTER (WHERE {NO_ID}), count(*) FILTER (WHERE {BAD_DATE}),
               count(*) FILTER (WHERE {NO_DATE}), count(*) FILTER (WHERE {no_name}),
               count(*) FILTER (WHERE {_kept_before(UNKNOWN - 1)}), {rule_counts}
        FROM judged
    """).fetchall()[0]
    problem = problem_error(shown, (empty_ids, bad_dates, empty_dates, empty_names), no_name,
                            lambda condition, column: _examples(con, condition, column, files))
    if problem is not None:
        return problem
    index, (reason, condition), hit = next((i, rule, hit) for i, (rule, hit) in enumerate(zip(RULES, dropped)) if hit)
    if index == UNKNOWN - 1 and hit == reaching:
        unknown = f"{_kept_before(index)} AND ({condition})"
        return unmatched_error(shown, "activities", hit, _examples(con, unknown, "lead_id", files), lead_ids,
                               leads_source)
    return _refusal(con, shown, reason, hit, f"{_kept_before(index)} AND ({condition})", files)


def _timestamp_sql(kind: str) -> str:
    """occurred_at as UTC without a zone, whatever type the Parquet file stores it as."""
    if kind.startswith("TIMESTAMP WITH TIME ZONE"):
        return "CAST(timezone('UTC', occurred_at) AS TIMESTAMP)"
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        return "CAST(occurred_at AS TIMESTAMP)"
    # text: ISO 8601, with or without a zone or offset (taken as UTC without one), as the CSV path reads it
    return "CAST(timezone('UTC', TRY_CAST(trim(CAST(occurred_at AS VARCHAR)) AS TIMESTAMPTZ)) AS TIMESTAMP)"


def _coded_batch(lead: np.ndarray, name: np.ndarray, us: np.ndarray, lead_ids: pa.Array,
                 names: pa.Array) -> pa.Table:
    """One sorted batch as dictionary arrays (codes into a slice of the sorted lead ids, and into
    the names): Parquet writes dictionary pages, and no string is built per row."""
    first = int(lead[0])  # sorted: this batch's leads are the ranks first..lead[-1]
    return pa.table([
        pa.DictionaryArray.from_arrays(pa.array((lead - first).astype(np.int32)),
                                       lead_ids.slice(first, int(lead[-1]) - first + 1)),
        pa.DictionaryArray.from_arrays(pa.array(name), names),
        pa.array(us.view("datetime64[us]"))], schema=SCHEMA)


def in_name_order(ordered: Iterable[pa.RecordBatch]) -> Iterator[tuple[np.ndarray, ...]]:
    """Batches of (lead rank, name rank, microseconds, verdict) sorted on (lead, time) -> the same
    rows as arrays sorted on (lead, time, name): the rows of one lead at one instant (a few, if
    any) are put in name order. The rows of the last instant of a batch wait for the next batch,
    which may hold more of them."""
    held: tuple[np.ndarray, ...] | None = None
    for batch in ordered:
        if not batch.num_rows:
            continue
        columns = tuple(batch.column(i).to_numpy() for i in range(4))
        if held is not None:
            columns = tuple(np.concatenate(pair) for pair in zip(held, columns))
        lead, _, us, _ = columns
        at_last = (lead == lead[-1]) & (us == us[-1])  # sorted: true on the trailing rows only
        last = len(lead) - int(at_last.sum())
        held = tuple(column[last:] for column in columns)
        if last:
            yield _names_ordered(tuple(column[:last] for column in columns))
    if held is not None:
        yield _names_ordered(held)


def _names_ordered(columns: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Rows sorted on (lead, time) -> on (lead, time, name): only rows that share their lead and
    time with a neighbour move."""
    lead, name, us, _ = columns
    tie = np.zeros(len(lead), dtype=bool)
    tie[1:] = (lead[1:] == lead[:-1]) & (us[1:] == us[:-1])
    if not tie.any():
        return columns
    moving = np.flatnonzero(tie | np.append(tie[1:], False))  # every row of a tied run, in place order
    run = np.cumsum(~tie)[moving]  # the rows of one (lead, time) share a number, increasing
    order = moving[np.lexsort((name[moving], run))]
    placed = tuple(column.copy() for column in columns)
    for column, source in zip(placed, columns):
        column[moving] = source[order]
    return placed


def _write_sorted(ordered: pa.RecordBatchReader, lead_ids: pa.Array, names: pa.Array, out: Path,
                  stops: np.ndarray) -> tuple[int, np.ndarray]:
    """Write the kept rows of (lead rank, activity rank, microseconds, verdict), sorted, as the event log.

    Returns (rows written, rows per verdict). Rows with another verdict than 0 are counted and
    left out; in sort order exact duplicates are adjacent, so a kept row equal to the kept row
    before it is dropped. Stops early once a verdict marked in `stops` appears (the run will be
    refused). Parquet encoding runs on a second thread while the next batch streams in
    (pipeline.io.in_background).
    """
    # uncompressed: codes and timestamps hardly compress (snappy: 6 % smaller, 40 % slower to write).
    # Each row group's first and last lead id: features reads one range of leads at a time and
    # skips the row groups outside it (the log is sorted by lead)
    writer = pq.ParquetWriter(out, SCHEMA, compression="none", use_dictionary=["lead_id", "activity"],
                              write_statistics=["lead_id", "occurred_at"], store_schema=False)
    written, previous, verdicts = 0, None, np.zeros(PROBLEM + 1, dtype=np.int64)
    with in_background(lambda table: writer.write_table(table, row_group_size=BATCH_ROWS), writer.close,
                       "event-log-writer", queued=2) as write:
        for lead, name, us, verdict in in_name_order(ordered):
            if verdict.any():  # rows to leave out (rare): counted by verdict
                verdicts += np.bincount(verdict, minlength=len(verdicts))
                if verdicts[stops].any():
                    break
                kept = verdict == 0
                lead, name, us = lead[kept], name[kept], us[kept]
            else:
                verdicts[0] += len(verdict)
            if not len(lead):
                continue
            repeat = np.empty(len(lead), dtype=bool)
            repeat[1:] = (lead[1:] == lead[:-1]) & (us[1:] == us[:-1]) & (name[1:] == name[:-1])
            repeat[:1] = previous == (lead[0], us[0], name[0])
            previous = (lead[-1], us[-1], name[-1])
            if repeat.any():
                lead, name, us = lead[~repeat], name[~repeat], us[~repeat]
            write(_coded_batch(lead, name, us, lead_ids, names))
            written += len(lead)
    return written, verdicts


def _columns(con: duckdb.DuckDBPyConnection, file_list: str, shown: str) -> dict[str, str]:
    """Column name (stripped, lower case) -> DuckDB type, read from the files' schema: a file that
    is not Parquet, or lacks a required column, is refused before any row is read."""
    try:
        schema = con.execute(f"DESCRIBE SELECT * FROM read_parquet({file_list}, union_by_name=true)").fetchall()
    except duckdb.Error as exc:
        raise LeadcalError(f"{shown}: cannot read as Parquet: {exc}") from exc
    types = {str(name).strip().lower(): str(kind) for name, kind, *_ in schema}
    require_columns(list(types), shown)
    return types


def require_columns(names: list[str], shown: str) -> None:
    """A log without a required column is refused before any row is read. `names`: stripped, lower case."""
    missing = [c for c in ACTIVITIES_REQUIRED if c not in names]
    if missing:
        raise LeadcalError(f"{shown}: missing required column(s) {missing}; found {names}. "
                           "See docs/data-contract.md for the expected columns.")


def _register_leads(con: duckdb.DuckDBPyConnection, leads: pd.DataFrame) -> pa.Table:
    """The leads as `lead_table` (lead_id, created_at, lead_rank), in id order: a lead's rank then
    sorts like its id, so the log is sorted on a small integer instead of the id's text."""
    lead_table = pa.table({"lead_id": pa.array(leads["lead_id"], type=pa.string()),
                           "created_at": pa.array(leads["created_at"], type=pa.timestamp("us"))}).sort_by("lead_id")
    lead_table = lead_table.append_column("lead_rank", pa.array(np.arange(lead_table.num_rows, dtype=np.int32)))
    con.register("lead_table", lead_table)
    return lead_table


def _create_parsed(con: duckdb.DuckDBPyConnection, file_list: str, types: dict[str, str]) -> None:
    """The view `parsed`: every row of the files with its file and row number (read only for
    messages), its id trimmed and its timestamp as UTC, whatever type the files store."""
    # a typed timestamp needs no text (formatting 100M dates costs seconds): only its absence is checked
    typed = not types["occurred_at"].startswith("VARCHAR")
    text_sql = "CASE WHEN occurred_at IS NULL THEN NULL ELSE 'x' END" if typed else "CAST(occurred_at AS VARCHAR)"
    # row numbers come from the files themselves (cheap); they are only read for messages
    con.execute(f"""
            CREATE TEMP VIEW parsed AS
            SELECT filename, file_row_number + 1 AS row_number,
                   CAST(lead_id AS VARCHAR) AS raw_lead_id, CAST(activity AS VARCHAR) AS raw_activity,
                   {_trimmed('CAST(lead_id AS VARCHAR)')} AS lead_id,
                   {text_sql} AS occurred_text,
                   {_timestamp_sql(types['occurred_at'])} AS occurred_at
            FROM read_parquet({file_list}, union_by_name=true, filename=true, file_row_number=true)
        """)


def _register_names(con: duckdb.DuckDBPyConnection, shown: str,
                    files: int) -> tuple[list[tuple[str, str]], list[str], str]:
    """Activity names: each spelling in the log (few) is normalised once, not each of 100M rows,
    and registered as `name_table` (raw spelling -> rank among the names; -1 for a name too long).

    Returns (raw spelling, normalised name) pairs, the names in rank order, and the SQL condition
    of a row without a name. A NUL byte in a name is refused, as the pandas path refuses it."""
    spellings = [(raw, normalised(raw)) for raw, in  # as the pandas path normalises them
                 con.execute("SELECT DISTINCT raw_activity FROM parsed WHERE raw_activity IS NOT NULL").fetchall()]
    if any("\x00" in raw for raw, _ in spellings):  # refused, as the pandas path refuses it
        nul = "strpos(raw_activity, chr(0)) > 0"
        count = con.execute(f"SELECT count(*) FROM parsed WHERE {nul}").fetchone()[0]
        raise nul_error(shown, count, _examples(con, nul, "raw_activity", files, table="parsed"))
    names, ranks = name_ranks(spellings)
    con.register("name_table", pa.table({
        "raw": pa.array([raw for raw, name in spellings if name], type=pa.string()),
        "name_rank": pa.array(ranks, type=pa.int32())}))
    blank = [raw for raw, name in spellings if not name]
    no_name = "raw_activity IS NULL" + (f" OR raw_activity IN ({', '.join(map(sql_literal, blank))})" if blank else "")
    return spellings, names, no_name


def normalised(raw: str) -> str:
    """An activity spelling as the pandas path normalises it (contract.text, lower=True)."""
    return raw.strip().lower()


def name_ranks(spellings: list[tuple[str, str]]) -> tuple[list[str], list[int]]:
    """The names in rank order, and the rank of each spelling that has a name (in `spellings`' order;
    -1 for a name longer than MAX_TEXT: a bad row, dropped, never a column). Blank ones have none."""
    names = sorted({name for _, name in spellings if len(name) <= MAX_TEXT} - {""})
    rank = {name: position for position, name in enumerate(names)}
    return names, [rank.get(name, -1) for _, name in spellings if name]


def _create_judged(con: duckdb.DuckDBPyConnection, now: pd.Timestamp | None) -> None:
    """The view `judged`: each parsed row with its lead's rank and creation (NULL: no such lead)
    and the moment after which an event is in the future."""
    limit = "TIMESTAMP '9999-12-31'" if now is None else f"TIMESTAMP '{pd.Timestamp(now).isoformat()}'"
    con.execute(f"""
            CREATE TEMP VIEW judged AS
            SELECT p.*, COALESCE(l.created_at, t.created_at) AS created_at,
                   COALESCE(l.lead_rank, t.lead_rank) AS lead_rank, {limit} AS now
            FROM parsed p
            LEFT JOIN lead_table l ON p.raw_lead_id = l.lead_id
            -- ids are matched as written; only one that matches no lead is trimmed (trimming 100M costs seconds)
            LEFT JOIN lead_table t ON CASE WHEN l.lead_id IS NULL THEN {_trimmed('p.raw_lead_id')} END = t.lead_id
        """)


def _stops(policy: str) -> np.ndarray:
    """Per verdict, whether it stops the stream: a problem always, a rule's drop under
    on_bad_rows: fail (the run will be refused, so writing on would be wasted)."""
    stops = np.zeros(PROBLEM + 1, dtype=bool)
    stops[PROBLEM] = True
    stops[1:PROBLEM] = policy == "fail"
    return stops


def _sorted_sql(spellings: list[tuple[str, str]]) -> str:
    """The one pass over the log: each row's (lead rank, name rank, microseconds, verdict), sorted
    on the lead and the time, small fixed-width keys instead of the strings. The name, the last
    key, is sorted by `in_name_order` as the rows stream back: with it DuckDB's sort took 1.7x
    the CPU (a third key makes its sort key longer than 16 bytes)."""
    rules = " ".join(f"WHEN {condition} THEN {verdict}"
                     for verdict, (_, condition) in enumerate(RULES[:-1], start=1) if verdict > UNKNOWN)
    # the long-name rule is only written into the query when a name is too long (a test per row costs 15 %)
    long_names = any(len(name) > MAX_TEXT for _, name in spellings)
    long_rule = f"WHEN n.name_rank < 0 THEN {LONG}" if long_names else ""
    return f"""
            SELECT COALESCE(j.lead_rank, -1) AS lead_rank, COALESCE(n.name_rank, -1) AS name_rank,
                   COALESCE(epoch_us(j.occurred_at), 0) AS us,
                   CAST(CASE WHEN j.occurred_at IS NULL OR n.name_rank IS NULL THEN {PROBLEM}
                             WHEN j.lead_rank IS NULL THEN
                                  CASE WHEN coalesce({_trimmed('j.raw_lead_id')}, '') = ''
                                       THEN {PROBLEM} {long_rule} ELSE {UNKNOWN} END
                             {long_rule}
                             {rules} ELSE 0 END AS TINYINT) AS verdict
            FROM judged j LEFT JOIN name_table n ON j.raw_activity = n.raw
            ORDER BY lead_rank, us
        """


def _report(con: duckdb.DuckDBPyConnection, shown: str, files: int, policy: str, verdicts: np.ndarray,
            written: int, partial: Path, lead_table: pa.Table, dropped_ids: pd.Series | None,
            leads_source: str | None) -> TableReport:
    """The drop counts of a streamed log, from its verdicts and the rows written; a log that
    matches no lead, or holds duplicates under on_bad_rows: fail, is refused (`partial` removed).

    Events of leads dropped at extract are counted apart from unknown leads by a query that
    runs only when leads were dropped and some events matched no lead."""
    if not verdicts.sum():
        raise LeadcalError(f"{shown}: {NO_ROWS}")
    unknown = f"created_at IS NULL AND NOT ({RULES[LONG - 1][1]})"
    of_dropped = 0
    if dropped_ids is not None and len(dropped_ids) and verdicts[UNKNOWN]:  # only when leads were dropped
        con.register("dropped_table", pa.table({"lead_id": pa.array(dropped_ids, type=pa.string())}))
        of_dropped = con.execute(f"SELECT count(*) FROM judged WHERE {unknown} AND "
                                 f"{_trimmed('raw_lead_id')} IN (SELECT lead_id FROM dropped_table)").fetchone()[0]
        unknown += f" AND {_trimmed('raw_lead_id')} NOT IN (SELECT lead_id FROM dropped_table)"
    reaching, unmatched = matching(verdicts, of_dropped)
    if reaching and unmatched == reaching:
        partial.unlink()
        raise unmatched_error(shown, "activities", reaching, _examples(con, unknown, "lead_id", files),
                              lead_table.column("lead_id").to_pandas(), leads_source)
    duplicates = int(verdicts[0]) - written
    if duplicates and policy == "fail":
        partial.unlink()
        raise _refusal_of_duplicates(con, shown, duplicates, files)
    return verdict_report(shown, verdicts, written, of_dropped, leads_source)


def matching(verdicts: np.ndarray, of_dropped: int) -> tuple[int, int]:
    """(rows the unknown-lead rule sees, rows of them that match no lead): events of leads dropped
    at extract are neither (the pandas path drops them under their own reason first)."""
    reaching = int(verdicts.sum() - verdicts[LONG]) - of_dropped
    return reaching, int(verdicts[UNKNOWN]) - of_dropped


def verdict_report(shown: str, verdicts: np.ndarray, written: int, of_dropped: int,
                   leads_source: str | None) -> TableReport:
    """The report of a log judged row by row (`verdicts`: rows per verdict) once nothing refused it:
    drops by reason in the pandas path's order, duplicates (kept rows - rows written) last, and the
    warning when most events match no lead. Shared by the DuckDB and the Spark path."""
    report = TableReport(rows_read=int(verdicts.sum()))
    reaching, unmatched = matching(verdicts, of_dropped)
    if unmatched > UNKNOWN_SHARE_WARNING * reaching:
        report.warn(unmatched_warning(shown, "activities", reaching, unmatched, leads_source))
    report.drop(RULES[LONG - 1][0], int(verdicts[LONG]))
    report.drop(OF_DROPPED_LEAD, of_dropped)
    report.drop(RULES[UNKNOWN - 1][0], unmatched)
    for verdict, (reason, _) in enumerate(RULES[:-1], start=1):
        if verdict > UNKNOWN:
            report.drop(reason, int(verdicts[verdict]))
    report.drop(RULES[-1][0], int(verdicts[0]) - written)
    report.rows_written = written
    return report


def _refusal_of_duplicates(con: duckdb.DuckDBPyConnection, shown: str, duplicates: int, files: int) -> LeadcalError:
    """The error for duplicates under on_bad_rows: fail. The stream only counted them; their rows
    are found here (a second pass, on this path only) so the message can name them."""
    kept = _kept_before(len(RULES) - 1)
    con.execute(f"""
                CREATE TEMP TABLE copies AS SELECT j.* FROM judged j JOIN name_table n ON j.raw_activity = n.raw
                WHERE {kept}
                QUALIFY row_number() OVER (PARTITION BY j.lead_rank, n.name_rank, j.occurred_at
                                           ORDER BY j.filename, j.row_number) > 1
            """)
    return _refusal(con, shown, RULES[-1][0], duplicates, "TRUE", files, table="copies")


def write_event_log(
    source: Path, leads: pd.DataFrame, out: Path, policy: str, now: pd.Timestamp | None,
    memory_limit_gb: float = 3.0, dropped_ids: pd.Series | None = None, leads_source: str | None = None,
) -> TableReport:
    """Validate the Parquet event log at `source` against `leads` and write `out` (sorted, atomic).

    `dropped_ids`: leads dropped at extract, whose events are dropped under their own reason;
    `leads_source`: the leads' file, named when no event matches a lead."""
    files = parquet_files(source)
    shown = str(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    spill = out.parent / ".duckdb_spill"
    spill.mkdir(exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    con = duckdb_connection(memory_limit_gb, min(2, os.cpu_count() or 1), temp_directory=str(spill),
                            preserve_insertion_order=False)
    try:
        file_list = "[" + ", ".join(sql_literal(f.as_posix()) for f in files) + "]"  # a path may hold a quote
        types = _columns(con, file_list, shown)
        lead_table = _register_leads(con, leads)
        _create_parsed(con, file_list, types)
        spellings, names, no_name = _register_names(con, shown, len(files))
        _create_judged(con, now)
        stops = _stops(policy)
        with con.sql(_sorted_sql(spellings)).to_arrow_reader(BATCH_ROWS) as ordered:  # closed even when it stops early
            written, verdicts = _write_sorted(ordered, lead_table.column("lead_id").combine_chunks(),
                                              pa.array(names, pa.string()), partial, stops)
        if verdicts[stops].any():
            partial.unlink()
            raise _refusal_of_log(con, shown, len(files), no_name, lead_table.column("lead_id").to_pandas(),
                                  leads_source)
        report = _report(con, shown, len(files), policy, verdicts, written, partial, lead_table, dropped_ids,
                         leads_source)
    except duckdb.OutOfMemoryException as exc:
        partial.unlink(missing_ok=True)
        raise LeadcalError(
            f"{shown}: the event log needs more than duckdb_memory_gb = {memory_limit_gb:g} GB even with "
            f"spilling to {spill}; raise it in params.yaml (or use a machine with more memory)") from exc
    except duckdb.Error as exc:  # a corrupt row group, a full disk...
        partial.unlink(missing_ok=True)
        raise LeadcalError(f"{shown}: DuckDB could not read or write the event log: {str(exc).splitlines()[0]}") \
            from exc
    except OSError as exc:  # the Parquet writer: a full disk, a folder that went away...
        partial.unlink(missing_ok=True)
        raise os_error(exc, out) or LeadcalError(f"{out}: could not write the event log: {exc}") from exc
    finally:
        con.close()
        for leftover in spill.iterdir():
            leftover.unlink()
        spill.rmdir()
    os.replace(partial, out)
    log.info("extract: %s: event log validated by DuckDB (%d rows kept of %d)", shown, report.rows_written,
             report.rows_read)
    return report
