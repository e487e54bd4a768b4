"""The canonical tables every later stage relies on, and their validation.

`extract` maps any source onto three tables (docs/data-contract.md):
leads (one row per lead), activities (event log) and stages (funnel history).
Validation happens here, once, at the boundary: later stages can assume clean types.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc

from pipeline.errors import LeadcalError

log = logging.getLogger(__name__)

# pandera loads its PySpark integration (on import, and again at the first validation) whenever
# PySpark is installed (the spark extra), and PySpark 4.x warns about pandas 3 each time; leadcal
# uses only pandera's pandas checks, so the warning would only be noise in every stage's log
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

STAGES: tuple[str, ...] = ("lead", "mql", "sal", "sql", "opportunity", "customer", "lost")
OUTCOME_STAGES: tuple[str, ...] = ("customer", "lost")
WON_STAGE = "customer"

# name -> kind; kinds: id (non-empty string), timestamp (tz-naive UTC), string, number.
LEADS_REQUIRED: dict[str, str] = {"lead_id": "id", "created_at": "timestamp"}
ACTIVITIES_REQUIRED: dict[str, str] = {"lead_id": "id", "activity": "string", "occurred_at": "timestamp"}
STAGES_REQUIRED: dict[str, str] = {"lead_id": "id", "stage": "string", "entered_at": "timestamp"}
STAGES_OPTIONAL: dict[str, str] = {"amount": "number"}

EXAMPLE_ROWS = 3
EXAMPLE_CHARACTERS = 60  # a value shown in a message is cut here: a 10 MB cell must not become a 10 MB line

# Hostile and broken input (README "Bad input"). Names and category values longer than this are bad
# rows: no CRM names an activity in 200 characters, and one 10 MB name would become a column name,
# a signal and a chart label in every later stage.
MAX_TEXT = 200
SHORT_ROWS = "leadcal_short_rows"  # DataFrame.attrs key: index labels of CSV rows with fewer fields than the header
SHORT_ROW = "fewer fields than the header"
FUTURE = "dated in the future"
OF_DROPPED_LEAD = "of a lead dropped at extract"
LONG_NAME = f"activity name longer than {MAX_TEXT} characters"
UNKNOWN_SHARE_WARNING = 0.5  # more unknown lead ids than this share of a table's rows: a warning
# A category fit attribute with a value no other lead shares on this share of (at least this many)
# leads is an id, an e-mail or free text: one signal per lead.
IDENTIFIER_SHARE, IDENTIFIER_MIN_LEADS = 0.9, 50


def too_old(floor: object) -> str:
    return f"dated before {pd.Timestamp(floor):%Y-%m-%d} (params extract.min_date)"


def long_value(column: str) -> str:
    return f"value of '{column}' longer than {MAX_TEXT} characters"

# The usual B2B activity names (docs/data-contract.md). Any other name is accepted and scored
# too; extract_report.json lists it under unknown_activities, so a CRM spelling that should
# have been mapped ("webinar_attended" for webinar_attendance) is seen, not silently split.
KNOWN_ACTIVITIES: frozenset[str] = frozenset({
    "blog_read", "careers_page_visit", "case_study_download", "contact_sales_form", "demo_request",
    "email_click", "email_open", "email_bounce", "ebook_download", "event_attendance", "event_registration",
    "form_submission", "free_trial_signup", "landing_page_form", "newsletter_signup", "page_view",
    "pricing_page_visit", "product_page_visit", "sales_call", "sales_meeting", "social_click", "social_comment", "social_like", "social_share",
    "trial_activation", "unsubscribe", "webinar_attendance", "webinar_registration", "whitepaper_download",
})

# Names the features table derives per lead; a lead column with one of them would be shadowed.
RESERVED_COLUMNS = ("snapshot_days", "cutoff_at", "first_outcome_at", "customer_at", "matured", "won_in_horizon", "closed",
                    "cohort", "validation_fold")
RESERVED_PREFIXES = ("n__", "age__", "peak__")


@dataclass
class TableReport:
    """What happened to one table on its way into the contract."""

    rows_read: int = 0
    rows_written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # also logged; in the report only when there is one

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("extract: %s", message)

    def as_dict(self) -> dict[str, object]:
        """For extract_report.json: rows read, written, dropped per reason, and warnings if any."""
        values = {"rows_read": self.rows_read, "rows_written": self.rows_written, "dropped": self.dropped}
        return {**values, "warnings": self.warnings} if self.warnings else values

    def remove(self, frame: pd.DataFrame, mask: pd.Series | np.ndarray, reason: str, source: str, policy: str,
               column: str = "lead_id") -> pd.DataFrame:
        """Recoverable bad rows: dropped and counted, or, with policy 'fail', a clear error."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any() and policy == "fail":
            rows = pd.Series(mask, index=frame.index)
            raise rule_refusal(source, reason, int(mask.sum()), _examples(frame, rows, column))
        self.drop(reason, int(mask.sum()))
        return frame[~mask]


def rule_refusal(source: str, reason: str, count: int, examples: str) -> LeadcalError:
    """A recoverable rule's rows under on_bad_rows: fail, one message on every path (pandas, DuckDB, Spark)."""
    return LeadcalError(f"{source}: {count} row(s): {reason} (params extract.on_bad_rows is 'fail'; "
                        f"'drop' drops and counts them); {examples}")


def shown(value: object) -> str:
    """A value as a message shows it: its repr, cut after EXAMPLE_CHARACTERS characters."""
    if isinstance(value, str) and len(value) > EXAMPLE_CHARACTERS:
        return f"{value[:EXAMPLE_CHARACTERS]!r}... ({len(value):,} characters)"
    return repr(value)


def line_examples(values: pd.Series) -> str:
    """A few offending values, numbered as in the source file (header = line 1)."""
    return ", ".join(f"line {int(i) + 2}: {shown(v)}" for i, v in values.head(EXAMPLE_ROWS).items())


def _examples(frame: pd.DataFrame, mask: pd.Series, column: str) -> str:
    return line_examples(frame.loc[mask, column])


def _to_timestamp(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """Parse ISO-8601 timestamps; time zones are converted to UTC and dropped."""
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values.dtype):  # typed already (Parquet, SQL): nothing to parse
        parsed = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        bad = pd.Series(False, index=values.index)
    else:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
        bad = parsed.isna() & values.notna() & (text(values) != "")
    if bad.any():
        raise LeadcalError(
            f"{source}: column '{column}': {int(bad.sum())} value(s) are not ISO-8601 dates "
            f"(expected e.g. 2024-03-01 or 2024-03-01T14:05:00Z); {_examples(frame, bad, column)}"
        )
    missing = parsed.isna()
    if missing.any():
        raise LeadcalError(
            f"{source}: column '{column}': {int(missing.sum())} empty value(s); every row needs a date; "
            f"{_examples(frame, missing, column)}"
        )
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def text(values: pd.Series, lower: bool = False) -> pd.Series:
    """Values as trimmed (optionally lower-cased) text in pandas' Arrow-backed string type.

    Arrow strings are trimmed, compared and matched (isin, joins) in vectorised C; a column
    of Python string objects would cost a second per million rows at each step.
    """
    if not isinstance(values.dtype, pd.StringDtype) or values.dtype.na_value is not np.nan:
        values = values.astype("str")
    values = values.str.strip()
    return values.str.lower() if lower else values


def _to_id(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    values = text(frame[column])
    empty = values.isna() | (values == "")
    if empty.any():
        raise LeadcalError(
            f"{source}: column '{column}': {int(empty.sum())} empty id(s); {_examples(frame, empty, column)}"
        )
    return values


def _to_number(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")  # typed already: nothing to parse
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() & values.notna() & (text(values) != "")
    if bad.any():
        raise LeadcalError(
            f"{source}: column '{column}': {int(bad.sum())} value(s) are not numbers; {_examples(frame, bad, column)}"
        )
    return parsed.astype("float64")


# Structural rules, checked with pandera once the values are parsed (parsing errors are
# reported by _coerce, which names the unparseable value and its line). Each rule's name
# maps to the sentence the user reads, the column whose values the examples show, and how
# the offending values are counted.
RULES: dict[str, tuple[str, str | None, object]] = {
    "unique lead id": ("{n} duplicate lead id(s); each lead must appear once", None, lambda v: int(v.duplicated().sum())),
    "activity name given": ("{n} empty activity name(s)", "lead_id", len),
    "known stage": (f"{{n}} value(s) outside {list(STAGES)}", None, len),
    "amount not negative": ("{n} negative amount(s)", None, len),
}


@cache
def _schema(table: str):  # noqa: ANN202 - a pandera schema; pandera is imported on first use
    """The pandera schema of a table. pandera (and the PySpark it pulls in when installed) takes
    a quarter second to import: stages that only read this module's constants skip it."""
    import pandera.pandas as pa

    def rule(name: str, test) -> pa.Check:  # noqa: ANN001 - a vectorised predicate
        return pa.Check(test, name=name, error=name)

    return {
        "leads": pa.DataFrameSchema(
            {"lead_id": pa.Column(checks=rule("unique lead id", lambda s: ~s.duplicated(keep=False)))}),
        "activities": pa.DataFrameSchema(
            {"activity": pa.Column(nullable=True, checks=rule("activity name given", lambda s: s.notna() & (s != "")))}),
        "stages": pa.DataFrameSchema({
            "stage": pa.Column(checks=rule("known stage", lambda s: s.isin(STAGES))),
            "amount": pa.Column(nullable=True, required=False,
                                checks=rule("amount not negative", lambda s: s.isna() | (s >= 0))),
        }),
    }[table]


def _enforce(frame: pd.DataFrame, table: str, source: str) -> None:
    """Validate with pandera; the first broken rule becomes one clear message with example lines."""
    from pandera.errors import SchemaErrors

    try:
        _schema(table).validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases.dropna(subset=["index"])
        (column, check), group = next(iter(cases.groupby(["column", "check"], sort=False)))
        sentence, example_column, count = RULES[check]
        bad = pd.Series(frame.index.isin(group["index"]), index=frame.index)
        raise LeadcalError(
            f"{source}: column '{column}': {sentence.format(n=count(frame.loc[bad, column]))}; "
            f"{_examples(frame, bad, example_column or column)}"
        ) from None


def require_header(columns: list[str], required: dict[str, str], source: str) -> None:
    """Refuse a table whose header lacks a required column (naming what it has)."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise LeadcalError(
            f"{source}: missing required column(s) {missing}; found {list(columns)}. "
            f"See docs/data-contract.md for the expected columns."
        )


def _require_columns(frame: pd.DataFrame, required: dict[str, str], source: str) -> None:
    require_header(list(frame.columns), required, source)
    if frame.empty:
        raise LeadcalError(f"{source}: the table has a header but no rows")


def _coerce(frame: pd.DataFrame, columns: dict[str, str], source: str) -> pd.DataFrame:
    out = frame.copy()
    for column, kind in columns.items():
        if column not in out.columns:
            continue
        if kind == "id":
            out[column] = _to_id(out, column, source)
        elif kind == "timestamp":
            out[column] = _to_timestamp(out, column, source)
        elif kind == "number":
            out[column] = _to_number(out, column, source)
        else:
            out[column] = text(out[column], lower=True)
    return out


def short_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows a CSV gave fewer fields than its header (pipeline.data.sources.read_table marks them): pandas
    fills the missing cells as empty, so a cut-off line would pass as a lead or event with blanks."""
    labels = frame.attrs.get(SHORT_ROWS)
    return frame.index.isin(labels) if labels else np.zeros(len(frame), dtype=bool)


def refuse_nul(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    """A NUL byte inside a value: a damaged export (or UTF-16 read as UTF-8). Kept, it would make a
    new activity '\\x00email_open' that no CRM rule can name; refused with the lines."""
    for column in columns:
        if column not in frame.columns or not (pd.api.types.is_string_dtype(frame[column].dtype)
                                               or frame[column].dtype == object):
            continue
        hit = text(frame[column]).str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
        if hit.any():
            raise LeadcalError(
                f"{source}: column '{column}': {int(hit.sum())} value(s) hold a NUL byte (\\x00): the export is "
                f"damaged or not UTF-8 text; re-export it; {_examples(frame, pd.Series(hit, index=frame.index), column)}")


def unmatched_error(source: str, table: str, rows: int, here: str, lead_ids: pd.Series,
                    leads_source: str | None) -> LeadcalError:
    """No row of a table matches a lead: a wrong id mapping, named with ids from both sides."""
    there = ", ".join(shown(v) for v in lead_ids.head(EXAMPLE_ROWS))
    return LeadcalError(
        f"{source}: none of the {rows} rows has a lead_id of {leads_source or 'the leads table'} (here e.g. {here}; "
        f"leads e.g. {there}): is the right column mapped as lead_id (params source.{table}.columns.lead_id), and are "
        "both exports from the same CRM?")


def unmatched_warning(source: str, table: str, rows: int, count: int, leads_source: str | None) -> str:
    return (f"{source}: {count} of {rows} rows ({100 * count / rows:.0f} %) have a lead_id that is not in "
            f"{leads_source or 'the leads table'} (dropped as unknown lead_id); check the lead_id mapping (params "
            f"source.{table}.columns.lead_id) and that both exports cover the same leads")


def check_links(ids: pd.Series, unknown: np.ndarray, source: str, table: str, lead_ids: pd.Series,
                leads_source: str | None, report: TableReport) -> None:
    """Rows whose lead_id matches no lead: all of them is a wrong mapping (an error naming ids from both
    sides); more than half, a warning in the log and the report (they are still dropped and counted)."""
    rows, count = len(ids), int(np.count_nonzero(unknown))
    if not rows or not count:
        return
    if count == rows:
        here = ", ".join(shown(v) for v in ids.head(EXAMPLE_ROWS))
        raise unmatched_error(source, table, rows, here, lead_ids, leads_source)
    if count > UNKNOWN_SHARE_WARNING * rows:
        report.warn(unmatched_warning(source, table, rows, count, leads_source))


def identifier_attributes(leads: pd.DataFrame, attributes: list[str], source: str) -> None:
    """A category fit attribute whose value no other lead shares on (nearly) every lead (an id, an e-mail,
    a timestamp, free text) makes one signal per lead: refused, naming it."""
    for attribute in attributes:
        values = leads[attribute].dropna()
        if len(values) < IDENTIFIER_MIN_LEADS:
            continue
        counts = values.value_counts()
        # a value seen once is one lead: counted on the few distinct values (mapping the counts back
        # onto a million leads took a second per attribute), the leads themselves looked up on refusal only
        once = counts.index[counts.to_numpy() == 1]
        singles = len(once)
        if singles >= IDENTIFIER_SHARE * len(values):
            examples = ", ".join(shown(v) for v in values[values.isin(once)].head(EXAMPLE_ROWS))
            raise LeadcalError(
                f"{source}: fit attribute '{attribute}' (params signals.fit_attributes) has a value no other lead "
                f"shares on {singles} of {len(values)} leads (e.g. {examples}): one signal per lead says "
                "nothing about the next lead. An id, an e-mail, a date or free text is not a fit attribute: remove "
                "it from signals.fit_attributes (a number is banded with signals.numeric_bins)")


def dropped_lead_ids(frame: pd.DataFrame, leads: pd.DataFrame) -> pd.Series:
    """Ids of the raw leads table that validation dropped (their events and stages go with them)."""
    ids = text(frame["lead_id"]).dropna()
    return ids[~ids.isin(leads["lead_id"]) & (ids != "")].drop_duplicates()


def validate_leads(
    frame: pd.DataFrame, source: str, fit_attributes: list[str], numeric_attributes: list[str],
    policy: str = "drop", now: pd.Timestamp | None = None, min_date: object | None = None,
) -> tuple[pd.DataFrame, TableReport]:
    """Leads: unique ids, a creation date, and the configured fit attributes.

    Numeric attributes (those binned in params) must parse as numbers; the others are
    categories, normalised to trimmed lower case so 'Software ' and 'software' agree.
    Recoverable problems follow `policy` (dropped and counted, or an error): a row with fewer
    fields than the header, a creation after `now` or before `min_date`, a category value
    longer than MAX_TEXT characters.
    """
    report = TableReport(rows_read=len(frame))
    _require_columns(frame, LEADS_REQUIRED, source)
    missing_fit = [a for a in fit_attributes if a not in frame.columns]
    if missing_fit:
        raise LeadcalError(
            f"{source}: fit attribute column(s) {missing_fit} listed in params signals.fit_attributes "
            f"are not in the file; found {list(frame.columns)}"
        )
    reserved = [c for c in frame.columns if c in RESERVED_COLUMNS or c.startswith(RESERVED_PREFIXES)]
    if reserved:
        raise LeadcalError(
            f"{source}: column name(s) {reserved} are reserved for what leadcal derives per lead "
            f"({', '.join(RESERVED_COLUMNS)}, and names starting with {', '.join(RESERVED_PREFIXES)}); rename them"
        )
    frame = report.remove(frame, short_rows(frame), SHORT_ROW, source, policy)
    categories = [a for a in fit_attributes if a not in numeric_attributes]
    refuse_nul(frame, ["lead_id", *categories], source)
    leads = _coerce(frame, LEADS_REQUIRED, source)
    if not ids_unique(leads["lead_id"]):  # pandera names the repeated ids (its hash per id: 5 s at 10M leads)
        _enforce(leads, "leads", source)
    if now is not None:
        leads = report.remove(leads, leads["created_at"] > now, FUTURE, source, policy)
    if min_date is not None:
        leads = report.remove(leads, leads["created_at"] < pd.Timestamp(min_date), too_old(min_date), source, policy)
    for attribute in fit_attributes:
        column = leads[attribute]
        if attribute in numeric_attributes:
            leads[attribute] = _to_number(leads, attribute, source)
        else:
            leads[attribute] = text(column, lower=True).replace("", np.nan)
            too_long = leads[attribute].str.len().fillna(0).to_numpy() > MAX_TEXT
            leads = report.remove(leads, too_long, long_value(attribute), source, policy, column=attribute)
    if leads.empty:
        raise LeadcalError(f"{source}: no lead left after dropping {report.dropped} (params extract.on_bad_rows)")
    leads = leads.sort_values("lead_id", kind="stable").reset_index(drop=True)
    report.rows_written = len(leads)
    return leads, report


def ids_unique(ids: pd.Series) -> bool:
    """No id twice, judged in C: once sorted, a repeated id stands beside its copy. The leads'
    schema (pandera) checks the same rule row by row; it runs only when this finds a repeat."""
    values = pa_arrow.array(ids, type=pa_arrow.large_string())
    if len(values) < 2:
        return True
    ordered = values.take(pc.sort_indices(values))
    return not pc.any(pc.equal(ordered[1:], ordered[:-1])).as_py()


def lead_positions(ids: pd.Series, lead_ids: pd.Series) -> np.ndarray:
    """Each row's position in `lead_ids` (-1 where the id is no lead's), by one Arrow hash lookup.

    pandas' isin and reindex on Arrow strings go through Python objects (seconds per
    million rows); pyarrow's index_in does the same lookup in C.
    """
    position = pc.index_in(pa_arrow.array(ids, type=pa_arrow.large_string()),
                           value_set=pa_arrow.array(lead_ids, type=pa_arrow.large_string()))
    return position.fill_null(-1).to_numpy()


def id_ranks(lead_ids: pd.Series) -> np.ndarray:
    """Each id's rank in sorted order (ids as validated leads are already sorted: then just 0..n-1)."""
    ids = pa_arrow.array(lead_ids, type=pa_arrow.large_string())
    if len(ids) < 2 or pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py():
        return np.arange(len(ids))
    return pc.rank(ids, sort_keys="ascending", tiebreaker="first").to_numpy() - 1


def validate_activities(
    frame: pd.DataFrame, source: str, lead_ids: pd.Series, created_at: pd.Series,
    policy: str = "drop", now: pd.Timestamp | None = None, dropped_ids: pd.Series | None = None,
    leads_source: str | None = None,
) -> tuple[pd.DataFrame, TableReport]:
    """Events: known lead, known date. Recoverable problems (fewer fields than the header, a name
    longer than MAX_TEXT, a lead dropped at extract, unknown lead, before the lead was created,
    after `now`, duplicates) follow `policy`: dropped and counted, or an error. No row matching
    any lead is an error (a wrong id mapping), most rows not matching a warning."""
    report = TableReport(rows_read=len(frame))
    _require_columns(frame, ACTIVITIES_REQUIRED, source)
    frame = report.remove(frame, short_rows(frame), SHORT_ROW, source, policy)
    refuse_nul(frame, ["lead_id", "activity"], source)
    events = _coerce(frame, ACTIVITIES_REQUIRED, source)
    _enforce(events, "activities", source)
    events = report.remove(events, events["activity"].str.len().to_numpy() > MAX_TEXT, LONG_NAME, source, policy)
    if dropped_ids is not None and len(dropped_ids):
        events = report.remove(events, events["lead_id"].isin(dropped_ids).to_numpy(), OF_DROPPED_LEAD, source, policy)
    position = lead_positions(events["lead_id"], lead_ids)
    check_links(events["lead_id"], position < 0, source, "activities", lead_ids, leads_source, report)
    events = report.remove(events, position < 0, "unknown lead_id", source, policy)
    before = events["occurred_at"].to_numpy() < created_at.to_numpy(dtype="datetime64[us]")[position[position >= 0]]
    events = report.remove(events, before, "occurred before the lead was created", source, policy)
    if now is not None:
        events = report.remove(events, events["occurred_at"] > now, FUTURE, source, policy)
    duplicate = events.duplicated(["lead_id", "activity", "occurred_at"])
    events = report.remove(events, duplicate, "duplicate event", source, policy)
    events = events.sort_values(["lead_id", "occurred_at", "activity"], kind="stable").reset_index(drop=True)
    report.rows_written = len(events)
    return events, report


def customer_amounts(stages: pd.DataFrame) -> pd.Series:
    """Deal values of the won leads (customer stages with an amount)."""
    return stages.loc[(stages["stage"] == WON_STAGE) & stages["amount"].notna(), "amount"]


def out_of_order(stages: pd.DataFrame, lead_key: np.ndarray) -> np.ndarray:
    """Stage rows dated before a stage that comes earlier in the funnel (e.g. an SQL before its MQL).

    'lost' can follow any stage and is not checked. `lead_key` (one integer per row naming its
    lead, e.g. the lead's rank) groups the rows by lead faster than the id strings.
    """
    key = np.asarray(lead_key)
    ranked = pa_arrow.array([stage for stage in STAGES if stage != "lost"], type=pa_arrow.large_string())
    funnel = pc.index_in(pa_arrow.array(stages["stage"], type=pa_arrow.large_string()), value_set=ranked)
    funnel = funnel.fill_null(-1).to_numpy()  # position in the funnel; -1: 'lost'
    rows = np.flatnonzero(funnel >= 0)
    rows = rows[np.lexsort((funnel[rows], key[rows]))]  # by lead, then funnel position (stable)
    lead = key[rows]
    entered = stages["entered_at"].to_numpy()[rows]
    # the latest date among the lead's earlier funnel stages: running maximum, restarted at each lead
    earlier_max = pd.Series(entered).groupby(lead).cummax().groupby(lead).shift(1).to_numpy()
    flagged = np.zeros(len(stages), dtype=bool)
    flagged[rows] = entered < earlier_max
    return flagged


def stages_conform(stages: pd.DataFrame) -> bool:
    """The stages schema's rules (`_schema`: a known stage on every row, no negative amount) checked
    by Arrow and NumPy. pandera checks the same rules and names the rows that break one; it runs
    only when this finds one (at 1M leads it took 0.4 s, most of it importing pandera)."""
    stage = pa_arrow.array(stages["stage"])
    if stage.null_count or not pc.all(pc.is_in(stage, value_set=pa_arrow.array(list(STAGES)))).as_py():
        return False
    return "amount" not in stages or not (stages["amount"].to_numpy(dtype=float, na_value=np.nan) < 0).any()


def validate_stages(
    frame: pd.DataFrame, source: str, lead_ids: pd.Series, created_at: pd.Series | None = None,
    policy: str = "drop", now: pd.Timestamp | None = None, dropped_ids: pd.Series | None = None,
    leads_source: str | None = None,
) -> tuple[pd.DataFrame, TableReport]:
    """Funnel history: stages from the fixed vocabulary, non-negative amounts.

    With `created_at` (aligned with `lead_ids`), stages dated before their lead was created
    are dropped and counted: a 'customer' before the lead existed cannot be its outcome.
    Rows with fewer fields than the header and rows of leads dropped at extract are dropped
    and counted too; no row matching any lead is an error (as for activities).
    """
    report = TableReport(rows_read=len(frame))
    _require_columns(frame, STAGES_REQUIRED, source)
    frame = report.remove(frame, short_rows(frame), SHORT_ROW, source, policy)
    refuse_nul(frame, ["lead_id", "stage"], source)
    stages = _coerce(frame, {**STAGES_REQUIRED, **STAGES_OPTIONAL}, source)
    if not stages_conform(stages):  # pandera names the broken rule and its rows
        _enforce(stages, "stages", source)
    if "amount" not in stages.columns:
        stages["amount"] = float("nan")
    if dropped_ids is not None and len(dropped_ids):
        stages = report.remove(stages, stages["lead_id"].isin(dropped_ids).to_numpy(), OF_DROPPED_LEAD, source, policy)
    position = pd.Series(lead_positions(stages["lead_id"], lead_ids), index=stages.index)
    check_links(stages["lead_id"], position.to_numpy() < 0, source, "stages", lead_ids, leads_source, report)
    stages = report.remove(stages, position < 0, "unknown lead_id", source, policy)
    if created_at is not None:
        created = created_at.to_numpy(dtype="datetime64[us]")[position[position >= 0].to_numpy()]
        before = stages["entered_at"].to_numpy() < created
        stages = report.remove(stages, before, "entered before the lead was created", source, policy)
    if now is not None:
        stages = report.remove(stages, stages["entered_at"] > now, FUTURE, source, policy)
    # leads' ranks in id order stand in for the ids: sorting and grouping integers is ten times faster
    lead_key = id_ranks(lead_ids)[position.loc[stages.index].to_numpy()]
    wrong = out_of_order(stages, lead_key)
    stages = report.remove(stages, wrong, "dated before an earlier funnel stage of the same lead", source, policy)
    lead_key = lead_key[~wrong]
    # each stage's position among the sorted names, and the rows by id, date, stage name: Arrow's
    # hash lookup and stable sort (pandas' Categorical and np.lexsort took 4 s of 15M rows at 10M leads)
    names = pa_arrow.array(sorted(STAGES), type=pa_arrow.large_string())
    stage_code = pc.index_in(pa_arrow.array(stages["stage"], type=pa_arrow.large_string()),
                             value_set=names).fill_null(-1).to_numpy()
    order = pc.sort_indices(pa_arrow.table({"lead": lead_key, "entered_at": stages["entered_at"].to_numpy(),
                                            "stage": stage_code}),
                            sort_keys=[("lead", "ascending"), ("entered_at", "ascending"),
                                       ("stage", "ascending")]).to_numpy()
    stages = stages[["lead_id", "stage", "entered_at", "amount"]].iloc[order]
    duplicate = pd.Series(lead_key[order] * len(STAGES) + stage_code[order]).duplicated().to_numpy()
    report.drop("duplicate stage for the same lead (earliest kept)", int(duplicate.sum()))
    stages = stages[~duplicate].reset_index(drop=True)
    report.rows_written = len(stages)
    return stages, report
