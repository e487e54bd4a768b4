"""Reading a user's data, in the shape their CRM or database keeps it, as contract-named tables.

A CRM never exports `lead_id, created_at, ...`: it exports `mql_id, first_contact_date`,
a wide contact sheet with "Webinars attended" and "Became a customer date" columns, a
folder of monthly event files, or tables in a database. `params.yaml` (`source:`) says
where each table is and how its columns map onto the contract; this module reads and maps,
and records every normalisation so the user can check it in extract_report.json. Types and
rules are checked afterwards, once, by pipeline.contract.

Dates are parsed here (the source's format, day-first order, time zone) and handed on as
UTC; everything else stays text for the contract to parse, so its messages still name
the column and the line.
"""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.contract import line_examples
from pipeline.errors import LeadcalError
from pipeline.params import Source, TableSource, Wide

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
        raise LeadcalError(f"{path}: cannot parse as CSV: {exc}") from exc
    frame = frame.dropna(how="all")  # blank lines: dropped, but the index still counts them
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        for name, delimiter in (("semicolons", ";"), ("tabs", "\t"), ("pipes", "|")):
            if delimiter in header:
                raise LeadcalError(
                    f"{path}: the header is one column {header[:60]!r}: the file looks separated by {name}; "
                    "export it comma-separated (CSV with ',')"
                )
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        raise LeadcalError(f"{path}: column(s) {repeated} appear more than once (names are compared ignoring case)")
    return frame


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
    combined = pd.concat(frames, ignore_index=True)
    return combined, f"{path}/ ({len(files)} files, rows numbered across them in name order)"


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


def wide_events(leads: pd.DataFrame, wide: Wide, source: Source, origin: str) -> pd.DataFrame:
    """Activity columns of a wide export -> an event log (lead_id, activity, occurred_at).

    A count of n gives n events, a true flag one, a date one at that date. Counts and flags
    carry no time of their own: they are dated by `date_column` or the lead's creation, so
    frequency windows and decay see them as early as possible (documented limitation).
    """
    parts = []
    for spec in wide.activities:
        column = spec.column.strip().lower()
        if column not in leads.columns:
            raise LeadcalError(f"{origin}: column '{column}' named in params source.wide.activities is not in "
                               f"the data; found {list(leads.columns)}")
        when = leads["created_at"]
        if spec.date_column:
            when_column = spec.date_column.strip().lower()
            if when_column not in leads.columns:
                raise LeadcalError(f"{origin}: date_column '{when_column}' of source.wide.activities "
                                   f"({spec.activity}) is not in the data")
            when = parse_dates(leads[when_column], source.date_format, source.day_first, source.timezone,
                               origin, when_column).fillna(leads["created_at"])
        if spec.kind == "date":
            dates = parse_dates(leads[column], source.date_format, source.day_first, source.timezone, origin, column)
            times = pd.Series(1, index=leads.index).where(dates.notna(), 0)
            when = dates
        elif spec.kind == "flag":
            times = _truthy(leads[column], origin, column).astype(int)
        else:
            counts = pd.to_numeric(leads[column].astype("string").str.strip().replace("", "0"), errors="coerce")
            bad = counts.isna() | (counts < 0) | (counts % 1 != 0)
            if bad.any():
                examples = line_examples(leads.loc[bad, column])
                raise LeadcalError(f"{origin}: column '{column}': {int(bad.sum())} value(s) are not whole counts "
                                   f">= 0; {examples}")
            times = counts.astype(int)
        repeat = times.to_numpy()
        parts.append(pd.DataFrame({
            "lead_id": np.repeat(leads["lead_id"].to_numpy(), repeat),
            "activity": snake_case(pd.Series([spec.activity]))[0],
            "occurred_at": np.repeat(when.to_numpy(), repeat),
        }))
    events = pd.concat(parts, ignore_index=True)
    # n events of a count share one time; the contract would drop them as duplicates, so
    # they are spread one second apart (still inside the same day and window)
    order = events.groupby(["lead_id", "activity", "occurred_at"], sort=False).cumcount()
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True) + pd.to_timedelta(order, unit="s")
    return events


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
        raw, origin = _read(table, name, source, base)
        mapped, report[name] = map_table(raw, table, name, origin)
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
        tables[name], origins[name] = mapped, origin
        if name == "leads":
            raw_leads = raw
    leads, origin = tables["leads"], origins["leads"]
    if "lead_id" in leads.columns and "created_at" in leads.columns:
        # wide columns are named as in the source; the lead's id and creation come from the mapping
        leads = raw_leads.assign(lead_id=leads["lead_id"], created_at=leads["created_at"])
        if source.wide.activities:
            events = wide_events(leads, source.wide, source, origin)
            tables["activities"] = pd.concat([tables.get("activities"), events], ignore_index=True) \
                if "activities" in tables else events
            origins.setdefault("activities", f"{origin} (activity columns, source.wide.activities)")
            counts = events["activity"].value_counts()
            report["wide_activities"] = {name: int(counts.get(name, 0)) for name in
                                         snake_case(pd.Series([spec.activity for spec in source.wide.activities]))}
        if source.wide.stages:
            stages = wide_stages(leads, source.wide, source, origin)
            tables["stages"] = pd.concat([tables.get("stages"), stages], ignore_index=True) \
                if "stages" in tables else stages
            origins.setdefault("stages", f"{origin} (date columns, source.wide.stages)")
            report["wide_stages"] = stages["stage"].value_counts().sort_index().to_dict()
    return tables, origins, report
