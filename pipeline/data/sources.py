"""Reading a user's data, in the shape their CRM or database keeps it, as contract-named tables.

A CRM never exports `lead_id, created_at, ...`: it exports `mql_id, first_contact_date`,
a wide contact sheet with "Webinars attended" and "Became a customer date" columns, a
folder of monthly event files, or tables in a database. `params.yaml` (`source:`) says
where each table is and how its columns map onto the contract; this module reads and maps,
and records every normalisation so the user can check it in extract_report.json. Types and
rules are checked afterwards, once, by pipeline.data.contract.

Dates are parsed here (the source's format, day-first order, time zone) and handed on as
UTC; everything else stays text for the contract to parse, so its messages still name
the column and the line.
"""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.data.contract import SHORT_ROWS, line_examples
from pipeline.design import SNAPSHOT_CREATED, SNAPSHOT_DECIDED
from pipeline.errors import LeadcalError
from pipeline.params import OutcomeColumn, Source, TableSource, Wide, snake_name

TABLES = ("leads", "activities", "stages")
DATE_COLUMNS = {"leads": "created_at", "activities": "occurred_at", "stages": "entered_at"}
TRUE_WORDS = {"1", "true", "yes", "y", "x", "t"}
FALSE_WORDS = {"0", "false", "no", "n", "f", ""}


def existing_table(folder: Path, name: str) -> Path | None:
    """`name`.parquet or `name`.csv in `folder` (Parquet wins when both exist), a folder `name`/ of
    such files (an event log split by day or month), or None."""
    if (folder / name).is_dir():
        return folder / name
    for suffix in (".parquet", ".csv"):
        candidate = folder / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    return None


def find_table(folder: Path, name: str) -> Path:
    found = existing_table(folder, name)
    if found is not None:
        return found
    raise LeadcalError(f"{folder}: no {name}.csv or {name}.parquet found (expected one file per table: {', '.join(TABLES)})")


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (as text: types are checked by the contract) or a Parquet file.

    CSV rows keep their position in the file as index (blank lines included), so
    error messages can name the line; only empty cells count as missing, so a
    value such as 'NA' (Namibia) or 'null' stays a value.
    """
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path, engine="pyarrow")
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise LeadcalError(f"{path}: cannot read as Parquet: {exc}") from exc
    raw = path.read_bytes()
    if not raw.strip():
        raise LeadcalError(f"{path}: the file is empty; expected a header line and rows")
    _refuse_nul_bytes(raw, path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise LeadcalError(
            f"{path}: line {line}: not UTF-8 text (byte {raw[exc.start:exc.start + 1]!r} at offset {exc.start}); "
            "re-export the file as UTF-8"
        ) from exc
    try:
        frame = pd.read_csv(
            _io.StringIO(text), dtype="string", keep_default_na=False, na_values=[""],
            skip_blank_lines=False, engine="c",
        )
    except pd.errors.ParserError as exc:
        raise LeadcalError(f"{path}: cannot parse as CSV: {exc.args[0] if exc.args else exc}".splitlines()[0]) from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    _refuse_other_separators(list(frame.columns), path)
    _mark_field_counts(frame, raw, text, path)
    frame = frame.dropna(how="all")  # blank lines: dropped, but the index still counts them
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        raise LeadcalError(f"{path}: column(s) {repeated} appear more than once (names are compared ignoring case)")
    return frame


def _refuse_other_separators(columns: list[str], path: Path) -> None:
    """A CSV header read as one column holding a semicolon, tab or pipe: another separator, said so."""
    if len(columns) == 1:
        header = str(columns[0])
        for name, delimiter in (("semicolons", ";"), ("tabs", "\t"), ("pipes", "|")):
            if delimiter in header:
                raise LeadcalError(
                    f"{path}: the header is one column {header[:60]!r}: the file looks separated by {name}; "
                    "export it comma-separated (CSV with ',')"
                )


def _refuse_nul_bytes(raw: bytes, path: Path) -> None:
    """A NUL byte has no place in a text export (a damaged file, or UTF-16 read as UTF-8): refused with
    its lines, before it becomes part of a name ('\\x00email_open' would be a new activity)."""
    first = raw.find(b"\x00")
    if first < 0:
        return
    lines, at, line, counted = [], first, 1, 0
    while at >= 0 and len(lines) < 3:  # the first NUL of each of the first three lines holding one
        line += raw.count(b"\n", counted, at)
        lines.append(line)
        end = raw.find(b"\n", at)
        if end < 0:
            break
        counted, at = end, raw.find(b"\x00", end)
    where, count = ", ".join(f"line {n}" for n in lines), raw.count(b"\x00")
    raise LeadcalError(f"{path}: {where}: a NUL byte (\\x00) inside the text ({count} in the file): the file is "
                       "damaged or not UTF-8 text (UTF-16?); re-export it as UTF-8 CSV")


def field_counts(raw: bytes, text: str) -> np.ndarray:
    """Fields per record of a CSV, header first (0 for a blank line).

    Without a quote character (and without lone carriage returns), a record is a line and its
    fields are its commas + 1, counted in numpy; otherwise Python's csv module reads the records
    as pandas does (quoted commas and line breaks inside a field)."""
    if b'"' not in raw and raw.count(b"\r") == raw.count(b"\r\n"):
        data = np.frombuffer(raw, dtype=np.uint8)
        breaks = np.flatnonzero(data == ord("\n"))
        starts, ends = np.r_[0, breaks + 1], np.r_[breaks, len(data)]
        if starts[-1] == len(data):  # the file ends with a line break: no record after it
            starts, ends = starts[:-1], ends[:-1]
        commas = np.flatnonzero(data == ord(","))
        fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
        length = ends - starts
        carriage = np.zeros(len(starts), dtype=bool)
        nonempty = length > 0
        carriage[nonempty] = data[ends[nonempty] - 1] == ord("\r")
        fields[(length == 0) | ((length == 1) & carriage)] = 0
        return fields
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))  # a long field is still one field (the default cap is 128 kB)
    try:
        return np.array([len(record) for record in csv.reader(_io.StringIO(text, newline=""))], dtype=np.int64)
    except csv.Error:  # pandas read the file; let its reading stand
        return np.zeros(0, dtype=np.int64)
    finally:
        csv.field_size_limit(limit)


def _mark_field_counts(frame: pd.DataFrame, raw: bytes, text: str, path: Path) -> None:
    """Rows with more fields than the header are refused (pandas would shift a first such row into
    the index, or stop later with a parser message); rows with fewer are marked in
    frame.attrs[SHORT_ROWS] for the contract, which drops and counts them under extract.on_bad_rows
    (pandas fills the missing cells as empty: a cut-off line would pass as a row of blanks)."""
    header = len(frame.columns)
    if not isinstance(frame.index, pd.RangeIndex):  # pandas made the first row's extra field(s) the index
        raise LeadcalError(f"{path}: line 2 has more fields than the header's {header} (a value with an unquoted "
                           "comma?); quote such values or fix the header")
    if not frame.iloc[:, -1].isna().any():  # a short row leaves at least its last cell empty: none here
        return
    fields = field_counts(raw, text)
    if len(fields) != len(frame) + 1:  # records and rows disagree: nothing reliable to mark
        return
    rows = fields[1:]
    extra = np.flatnonzero(rows > header)
    if len(extra):
        examples = ", ".join(f"line {i + 2}: {rows[i]} fields" for i in extra[:3])
        raise LeadcalError(f"{path}: {len(extra)} row(s) with more fields than the header's {header} (a value with "
                           f"an unquoted comma?); {examples}")
    short = np.flatnonzero((rows > 0) & (rows < header))
    if len(short):
        frame.attrs[SHORT_ROWS] = frame.index[short].tolist()


def header_columns(path: Path) -> list[str] | None:
    """The column names `read_path` will give a table file (or a folder of them), from the header
    alone: a Parquet file's schema, a CSV file's first line (a folder's first file). None when the
    header cannot be read that way (not UTF-8, say): reading the whole file then says why."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".parquet") and p.is_file())
        if not files:
            return None
        columns = header_columns(files[0])
        return None if columns is None else [str(c).strip().lower() for c in columns]
    if not path.is_file():
        return None
    if path.suffix == ".parquet":
        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise LeadcalError(f"{path}: cannot read as Parquet: {exc}") from exc
    with path.open("rb") as file:
        first = file.readline(1 << 20)
    if not first.strip():  # an empty file, or a blank first line: the whole read says which
        return None
    try:
        columns = [c.strip().lower() for c in next(csv.reader([first.decode("utf-8-sig")], strict=True))]
    except (UnicodeDecodeError, csv.Error):  # not UTF-8, or a quoted name across lines
        return None
    _refuse_other_separators(columns, path)
    return columns


def read_path(path: Path) -> tuple[pd.DataFrame, str]:
    """A file, or every CSV/Parquet file of a folder (in name order, same columns), and its name for messages.

    A folder is how event logs arrive (one file per day or month). Its rows are numbered
    across the files, so a message's 'line' counts rows from the first file's header.
    """
    if not path.exists():
        raise LeadcalError(f"{path}: not found (params source: path)")
    if path.is_file():
        return read_table(path), str(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".parquet") and p.is_file())
    if not files:
        raise LeadcalError(f"{path}: the folder holds no .csv or .parquet file")
    frames = []
    for file in files:
        frame = read_table(file)
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        if frames and list(frame.columns) != list(frames[0].columns):
            raise LeadcalError(f"{file}: columns {list(frame.columns)} differ from {files[0].name}'s "
                               f"{list(frames[0].columns)}; every file of {path} needs the same header")
        frames.append(frame.astype("string") if file.suffix == ".csv" else frame)
    return concat_rows(frames), f"{path}/ ({len(files)} files, rows numbered across them in name order)"


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Tables one after the other, rows renumbered; rows marked short (fewer fields than their
    header, frame.attrs[SHORT_ROWS]) stay marked under their new numbers."""
    frames = [f for f in frames if f is not None]
    short, offset = [], 0
    for frame in frames:
        if frame.attrs.get(SHORT_ROWS):
            short += (offset + np.flatnonzero(frame.index.isin(frame.attrs[SHORT_ROWS]))).tolist()
        offset += len(frame)
    combined = pd.concat(frames, ignore_index=True)
    combined.attrs = {SHORT_ROWS: short} if short else {}
    return combined


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages and reports."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # a malformed URL: show its scheme only
        return url.split("://", 1)[0] + "://..."


def read_query(url: str, query: str, name: str) -> tuple[pd.DataFrame, str]:
    """Run one query through SQLAlchemy; any database problem becomes one clear line."""
    import sqlalchemy

    shown = safe_url(url)
    origin = f"{shown} (source.{name}.query)"
    try:
        engine = sqlalchemy.create_engine(url)
    except ModuleNotFoundError as exc:
        raise LeadcalError(f"{shown}: the database driver {exc.name!r} is not installed "
                           "(for PostgreSQL: pip install 'leadcal[postgres]')") from exc
    except sqlalchemy.exc.ArgumentError as exc:
        raise LeadcalError(f"source.url {shown}: not a SQLAlchemy URL ({exc})") from exc
    try:
        with engine.connect() as connection:
            frame = pd.read_sql_query(sqlalchemy.text(query), connection)
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
        detail = str(getattr(cause, "orig", cause)).strip().splitlines()[0]
        raise LeadcalError(f"{origin}: the query failed: {detail}") from exc
    finally:
        engine.dispose()
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    for column in frame.columns:  # dates stay dates; the rest becomes text, as from a CSV
        if not pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].astype("string")
    return frame, origin


def parse_dates(values: pd.Series, date_format: str | None, day_first: bool, timezone: str,
                origin: str, column: str) -> pd.Series:
    """Dates in the source's format and zone -> UTC (tz-aware); a value that does not parse is an error.

    Without a format: ISO 8601, or day-first order (03-04-2024 is 3 April) when
    `day_first`. Times without a zone are taken in `timezone`; in the hour a DST change
    repeats, standard time is assumed.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype("string").str.strip()
        if date_format:
            parsed = pd.to_datetime(text, format=date_format, errors="coerce")
        elif day_first:
            parsed = pd.to_datetime(text, dayfirst=True, errors="coerce")
        else:
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=not _uniform_zones(text))
        bad = parsed.isna() & text.notna() & (text != "")
        if bad.any():
            expected = f"format {date_format!r}" if date_format else "day-first dates" if day_first else "ISO 8601"
            examples = line_examples(text[bad])
            raise LeadcalError(f"{origin}: column '{column}': {int(bad.sum())} value(s) are not dates in {expected} "
                               f"(params source.date_format / source.day_first); {examples}")
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(timezone, ambiguous=np.zeros(len(parsed), dtype=bool),
                                       nonexistent="shift_forward")
    return parsed.dt.tz_convert("UTC")


def _uniform_zones(text: pd.Series) -> bool:
    """True when no value carries a zone or offset (then they can be localised in source.timezone)."""
    return not text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False).any()


def snake_case(values: pd.Series) -> pd.Series:
    """'Webinar Attended ' -> 'webinar_attended': one spelling per category name, whatever the CRM wrote."""
    text = values.astype("string").str.strip().str.lower()
    return text.str.replace(r"[^0-9a-z]+", "_", regex=True).str.strip("_")


def blank_placeholders(frame: pd.DataFrame, placeholders: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Cells holding a placeholder (a web form's 'Select', 'N/A') -> missing, in every text column.

    A placeholder is not an answer: left as a value, 'Select' becomes a category of its own
    that closes at whatever rate the form's skippers close, and gets points. Returns the
    table and, per column, how many cells were blanked (for extract_report.json).
    """
    words = {p.strip().lower() for p in placeholders}
    if not words:
        return frame, {}
    frame = frame.copy()
    blanked: dict[str, int] = {}
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]) or pd.api.types.is_numeric_dtype(frame[column]):
            continue
        hit = frame[column].astype("string").str.strip().str.lower().isin(words).fillna(False).to_numpy(dtype=bool)
        if hit.any():
            frame[column] = frame[column].astype("string").mask(hit)
            blanked[str(column)] = int(hit.sum())
    return frame, blanked


def map_table(frame: pd.DataFrame, table: TableSource, name: str, origin: str) -> tuple[pd.DataFrame, dict]:
    """Rename mapped columns to contract names, add constants, rename category spellings.

    Column names are compared ignoring case and surrounding spaces ('Contact ID ' = 'contact id').
    """
    frame = frame.rename(columns=lambda c: str(c).strip().lower())
    columns = {contract: source.strip().lower() for contract, source in table.columns.items()}
    missing = sorted(s for s in columns.values() if s not in frame.columns)
    if missing:
        raise LeadcalError(f"{origin}: column(s) {missing} named in params source.{name}.columns are not in the "
                           f"data; found {list(frame.columns)}")
    clashing = sorted(c for c in columns if c in frame.columns and c not in columns.values())
    mapped = frame.drop(columns=clashing).rename(columns={s: c for c, s in columns.items()})
    for contract, value in table.constants.items():
        mapped[contract] = value
    renamed = {}
    for column, spellings in table.values.items():
        if column not in mapped.columns:
            raise LeadcalError(f"{origin}: params source.{name}.values names column '{column}', "
                               f"which the mapped table does not have; it has {list(mapped.columns)}")
        lookup = {k.strip().lower(): v for k, v in spellings.items()}
        key = mapped[column].astype("string").str.strip().str.lower()
        hit = key.isin(list(lookup))
        mapped[column] = mapped[column].astype("string").where(~hit, key.map(lookup))
        renamed[column] = int(hit.sum())
    report = {"origin": origin, "rows_read": len(frame), "columns": dict(sorted(columns.items())),
              "unmapped_source_columns_dropped": clashing, "constants": dict(table.constants),
              "values_renamed": renamed}
    return mapped, report


def _truthy(values: pd.Series, origin: str, column: str) -> pd.Series:
    text = values.astype("string").str.strip().str.lower().fillna("")
    bad = ~text.isin(TRUE_WORDS | FALSE_WORDS)
    if bad.any():
        examples = line_examples(values[bad])
        raise LeadcalError(f"{origin}: column '{column}': {int(bad.sum())} value(s) are not yes/no flags "
                           f"(expected one of {sorted(TRUE_WORDS | FALSE_WORDS - {''})} or empty); {examples}")
    return text.isin(TRUE_WORDS)


MAX_WIDE_COUNT = 86_399  # events of one count share a day, one second apart: more is a measure, not a count


def _counts(values: pd.Series, origin: str, column: str) -> np.ndarray:
    """A count column: whole numbers >= 0, a blank cell is 0 (the CRM writes nothing for none)."""
    text = values.astype("string").str.strip().fillna("").replace("", "0")
    counts = pd.to_numeric(text, errors="coerce")
    bad = counts.isna() | (counts < 0)
    if bad.any():
        raise LeadcalError(f"{origin}: column '{column}': {int(bad.sum())} value(s) are not counts >= 0 "
                           f"(a blank cell counts as 0); {line_examples(values[bad])}")
    fractional = (counts % 1 != 0) | (counts > MAX_WIDE_COUNT)
    if fractional.any():
        raise LeadcalError(f"{origin}: column '{column}': {int(fractional.sum())} value(s) are fractions or too large "
                           f"to be counts of events; map it with kind: number (a measure banded into signals); "
                           f"{line_examples(values[fractional])}")
    return counts.to_numpy(dtype=np.int64)


def numbers(values: pd.Series, origin: str, column: str) -> pd.Series:
    """A number column (time on site, pages per visit): floats, a blank cell is missing."""
    text = values.astype("string").str.strip().replace("", pd.NA)
    parsed = pd.to_numeric(text, errors="coerce")
    bad = parsed.isna() & text.notna()
    if bad.any():
        raise LeadcalError(f"{origin}: column '{column}': {int(bad.sum())} value(s) are not numbers "
                           f"(source.missing_values lists placeholders to read as blank); {line_examples(values[bad])}")
    return parsed.astype("float64")


def _wide_column(leads: pd.DataFrame, column: str, origin: str) -> str:
    """A source.wide.activities column as the table names it (lower case, trimmed); missing: one line."""
    column = column.strip().lower()
    if column not in leads.columns:
        raise LeadcalError(f"{origin}: column '{column}' named in params source.wide.activities is not in "
                           f"the data; found {list(leads.columns)}")
    return column


def _append(tables: dict[str, pd.DataFrame], name: str, rows: pd.DataFrame) -> None:
    """Rows made from the leads sheet (events, stages) added to the table `name` read from its own file, if any."""
    tables[name] = concat_rows([tables[name], rows]) if name in tables else rows


def wide_events(leads: pd.DataFrame, wide: Wide, source: Source, origin: str, dated: bool = True) -> pd.DataFrame:
    """Activity columns of a wide export -> an event log (lead_id, activity, occurred_at).

    A count of n gives n events, a true flag one, a date one at that date, a category value one
    event named by the value. Counts, flags and categories carry no time of their own: they
    are dated by `date_column` or the lead's creation, so frequency windows and decay see them
    as early as possible (documented limitation). Without `dated` (a snapshot export) every
    event sits at the lead's synthetic creation, a date column counting as a flag.
    Number columns are not events: `wide_numbers` reads them.
    """
    parts = []
    for spec in wide.activities:
        if spec.kind == "number":
            continue
        column = _wide_column(leads, spec.column, origin)
        when = leads["created_at"]
        if spec.date_column and dated:
            when_column = spec.date_column.strip().lower()
            if when_column not in leads.columns:
                raise LeadcalError(f"{origin}: date_column '{when_column}' of source.wide.activities "
                                   f"({spec.activity}) is not in the data")
            when = parse_dates(leads[when_column], source.date_format, source.day_first, source.timezone,
                               origin, when_column).fillna(leads["created_at"])
        name = pd.Series(snake_name(spec.activity or ""), index=leads.index)
        if spec.kind == "date" and dated:
            dates = parse_dates(leads[column], source.date_format, source.day_first, source.timezone, origin, column)
            times = pd.Series(1, index=leads.index).where(dates.notna(), 0)
            when = dates
        elif spec.kind == "flag":
            times = _truthy(leads[column], origin, column).astype(int)
        elif spec.kind == "date":  # a snapshot: the date means nothing, having one means once
            times = leads[column].astype("string").str.strip().fillna("").ne("").astype(int)
        elif spec.kind == "category":
            value = snake_case(leads[column]).fillna("")
            name = value if spec.activity is None else (name + "_" + value).where(value != "", "")
            times = (value != "").astype(int)
        else:
            times = pd.Series(_counts(leads[column], origin, column), index=leads.index)
        repeat = times.to_numpy()
        parts.append(pd.DataFrame({
            "lead_id": np.repeat(leads["lead_id"].to_numpy(), repeat),
            "activity": np.repeat(name.to_numpy(dtype=object), repeat),
            "occurred_at": np.repeat(when.to_numpy(), repeat),
        }))
    if not parts:
        return pd.DataFrame({"lead_id": pd.Series(dtype=object), "activity": pd.Series(dtype=object),
                             "occurred_at": pd.Series(dtype="datetime64[us, UTC]")})
    events = pd.concat(parts, ignore_index=True)
    # n events of a count share one time; the contract would drop them as duplicates, so
    # they are spread one second apart (still inside the same day and window)
    order = events.groupby(["lead_id", "activity", "occurred_at"], sort=False).cumcount()
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True) + pd.to_timedelta(order, unit="s")
    return events


def wide_numbers(leads: pd.DataFrame, wide: Wide, origin: str) -> dict[str, pd.Series]:
    """Number columns of a wide export -> numeric lead attributes, named by their `activity`."""
    attributes = {}
    for spec in wide.activities:
        if spec.kind != "number":
            continue
        column = _wide_column(leads, spec.column, origin)
        attributes[snake_name(spec.activity or "")] = numbers(leads[column], origin, column)
    return attributes


def outcome_stages(leads: pd.DataFrame, outcome: OutcomeColumn, source: Source, origin: str,
                   dated: bool) -> tuple[pd.DataFrame, pd.Series, dict[str, object]]:
    """An outcome column (Converted 1/0, Status Won/Lost) -> customer and lost stage rows.

    Returns the stage rows, which leads are still open (their value is in neither list), and
    the counts for the report. Dated, an outcome is placed at `outcome.date_column`; in a
    snapshot export, at the synthetic decision after the one snapshot.
    """
    column = outcome.column.strip().lower()
    if column not in leads.columns:
        raise LeadcalError(f"{origin}: outcome column '{column}' (params source.outcome.column) is not in the data; "
                           f"found {list(leads.columns)}")
    value = leads[column].astype("string").str.strip().str.lower().fillna("")
    value = value.str.replace(r"^(\d+)\.0+$", r"\1", regex=True)  # 1.0 written by a spreadsheet is 1
    won, lost = value.isin(outcome.won).to_numpy(), value.isin(outcome.lost).to_numpy()
    if not won.any():
        seen = value[value != ""].value_counts().head(6).to_dict()
        raise LeadcalError(f"{origin}: outcome column '{column}': no value means won (params source.outcome.won is "
                           f"{outcome.won}); the column holds {seen}")
    stage = np.where(won, "customer", "lost")
    decided = won | lost
    if dated:
        date_column = (outcome.date_column or "").strip().lower()
        if date_column not in leads.columns:
            raise LeadcalError(f"{origin}: outcome date column '{date_column}' (params source.outcome.date_column) "
                               f"is not in the data; found {list(leads.columns)}")
        when = parse_dates(leads[date_column], source.date_format, source.day_first, source.timezone, origin,
                           date_column)
        undated = won & when.isna().to_numpy()
        if undated.any():
            raise LeadcalError(f"{origin}: column '{date_column}': {int(undated.sum())} won lead(s) without the date "
                               f"of the win; {line_examples(leads.loc[undated, date_column].fillna(''))}")
        decided = decided & when.notna().to_numpy()  # a loss without a date: open until its horizon says lost
    else:
        when = pd.Series(SNAPSHOT_DECIDED, index=leads.index)
    open_values = value[~(won | lost)]
    report = {"column": column, "won": int(won.sum()), "lost": int(lost.sum()), "open": int(len(open_values)),
              "open_values": {str(k): int(v) for k, v in open_values.value_counts().head(8).items()}}
    stages = pd.DataFrame({"lead_id": leads.loc[decided, "lead_id"].to_numpy(), "stage": stage[decided],
                           "entered_at": when[decided].to_numpy()})
    return stages, pd.Series(~(won | lost), index=leads.index), report


def wide_stages(leads: pd.DataFrame, wide: Wide, source: Source, origin: str) -> pd.DataFrame:
    """Lifecycle date columns of a wide export ("became a customer date") -> stage rows."""
    parts = []
    for stage, column in wide.stages.items():
        column = column.strip().lower()
        if column not in leads.columns:
            raise LeadcalError(f"{origin}: column '{column}' named in params source.wide.stages ({stage}) is not "
                               f"in the data; found {list(leads.columns)}")
        dates = parse_dates(leads[column], source.date_format, source.day_first, source.timezone, origin, column)
        reached = dates.notna()
        parts.append(pd.DataFrame({"lead_id": leads.loc[reached, "lead_id"].to_numpy(), "stage": stage,
                                   "entered_at": dates[reached].to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def _read(table: TableSource, name: str, source: Source, base: Path) -> tuple[pd.DataFrame, str]:
    if table.path is not None:
        return read_path(base / table.path)
    return read_query(source.url or "", table.query or "", name)


def load(source: Source, base: Path) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, object]]:
    """The three tables named and typed for the contract, where each came from, and what was normalised.

    File paths are relative to `base` (paths.raw), so DVC, which tracks paths.raw, re-runs
    extract when the export changes; an absolute path is used as it is.

    An export with creation dates and dated outcomes is a dated history. Without them (no
    created_at, or an outcome column without date_column) it is a snapshot export
    (pipeline.design): the leads still open are left out, and the rest are placed on the
    synthetic timeline; normalisation["mode"] says which.

    Returns (tables, origins, normalisation). Dates are UTC timestamps; other cells text.
    """
    if source.leads is None:
        raise LeadcalError("params source.leads is not set")  # callers read paths.raw instead
    tables: dict[str, pd.DataFrame] = {}
    origins: dict[str, str] = {}
    report: dict[str, object] = {"timezone": source.timezone, "date_format": source.date_format,
                                 "day_first": source.day_first}
    for name in TABLES:
        table = getattr(source, name)
        if table is None:
            continue
        raw, tables[name], origins[name] = _read_mapped(table, name, source, base, report)
        if name == "leads":
            raw_leads = raw
    leads, origin = tables["leads"], origins["leads"]
    if "lead_id" not in leads.columns:
        return tables, origins, report  # the contract names the missing column
    dated = "created_at" in leads.columns and (source.outcome is None or source.outcome.date_column is not None)
    report["mode"] = "dated" if dated else "snapshot"
    if not dated and "created_at" in leads.columns:
        report["created_at_ignored"] = ("the outcome column has no date (source.outcome.date_column), so the creation "
                                        "dates cannot place it in time: the export is read as a snapshot")
    if not dated:
        leads = _snapshot_leads(leads, source, origin, tables)
        raw_leads = raw_leads.loc[leads.index]
    # wide columns are named as in the source; the lead's id and creation come from the mapping
    wide_leads = raw_leads.assign(lead_id=leads["lead_id"], created_at=leads["created_at"])
    if source.outcome is not None:
        stages, still_open, report["outcome"] = outcome_stages(wide_leads, source.outcome, source, origin, dated)
        if not dated:  # a snapshot's open leads have no outcome to learn and no moment to be scored at
            keep = ~still_open.to_numpy()
            leads, wide_leads = leads[keep], wide_leads[keep]
            report["outcome"]["open_leads_left_out"] = int((~keep).sum())
        _append(tables, "stages", stages)
        origins.setdefault("stages", f"{origin} (outcome column '{source.outcome.column}', source.outcome)")
    tables["leads"] = _with_wide_numbers(leads, wide_leads, source, origin)
    _add_wide_tables(tables, origins, report, wide_leads, source, origin, dated)
    return tables, origins, report


def _read_mapped(table: TableSource, name: str, source: Source, base: Path,
                 report: dict[str, object]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """One table read and mapped onto the contract's names, its dates parsed to UTC and its activity
    and stage names respelt in snake_case; what was normalised goes to report[name].

    Returns (the table as read, placeholders blanked; the mapped table; where it came from): a wide
    export's columns are read from the first, by their names in the source."""
    raw, origin = _read(table, name, source, base)
    raw, blanked = blank_placeholders(raw, source.missing_values)
    mapped, report[name] = map_table(raw, table, name, origin)
    if blanked:
        report[name]["placeholders_blanked"] = blanked
    date_column = DATE_COLUMNS[name]
    if date_column in mapped.columns:
        mapped[date_column] = parse_dates(mapped[date_column], table.date_format or source.date_format,
                                          source.day_first, source.timezone, origin, date_column)
    for column in ("activity", "stage"):
        if column in mapped.columns:
            before = mapped[column].astype("string").str.strip().str.lower()
            mapped[column] = snake_case(mapped[column])
            changed = int((before.fillna("") != mapped[column].fillna("")).sum())
            report[name]["values_respelt_snake_case"] = changed
    return raw, mapped, origin


def _with_wide_numbers(leads: pd.DataFrame, wide_leads: pd.DataFrame, source: Source, origin: str) -> pd.DataFrame:
    """The leads with a wide export's number columns as numeric attributes; a number column may
    not take the name of another column of the data (it would replace it silently)."""
    for attribute, values in wide_numbers(wide_leads, source.wide, origin).items():
        if attribute in leads.columns and attribute not in {s.column.strip().lower() for s in source.wide.activities}:
            raise LeadcalError(f"{origin}: the number column becomes attribute '{attribute}', but the data already "
                               f"has a column of that name; give source.wide.activities another `activity` name")
        leads = leads.assign(**{attribute: values})
    return leads


def _add_wide_tables(tables: dict[str, pd.DataFrame], origins: dict[str, str], report: dict[str, object],
                     wide_leads: pd.DataFrame, source: Source, origin: str, dated: bool) -> None:
    """A wide export's activity and stage columns as rows of the activities and stages tables
    (added to any read from files), with their origins and counts for the report."""
    if source.wide.activities:
        events = wide_events(wide_leads, source.wide, source, origin, dated)
        _append(tables, "activities", events)
        origins.setdefault("activities", f"{origin} (activity columns, source.wide.activities)")
        report["wide_activities"] = {str(k): int(v) for k, v in events["activity"].value_counts().sort_index().items()}
    if source.wide.stages:
        stages = wide_stages(wide_leads, source.wide, source, origin)
        _append(tables, "stages", stages)
        origins.setdefault("stages", f"{origin} (date columns, source.wide.stages)")
        report["wide_stages"] = stages["stage"].value_counts().sort_index().to_dict()


def _snapshot_leads(leads: pd.DataFrame, source: Source, origin: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """A snapshot export's leads on the synthetic timeline; what cannot be placed on it is refused."""
    if source.outcome is None:
        raise LeadcalError(f"{origin}: the leads have no creation date (map one as source.leads.columns.created_at), "
                           "so the outcome must come from a won/lost column: give source.outcome (snapshot export, "
                           "README 'Using your own data')")
    dated_tables = [name for name in ("activities", "stages") if name in tables]
    if dated_tables or source.wide.stages:
        raise LeadcalError(f"{origin}: a snapshot export (no created_at, or an outcome without date_column) takes its "
                           f"activities from source.wide and its outcome from source.outcome; dated "
                           f"{', '.join(dated_tables) or 'wide stages'} need the leads' creation dates: map "
                           "source.leads.columns.created_at and source.outcome.date_column")
    return leads.assign(created_at=SNAPSHOT_CREATED)
