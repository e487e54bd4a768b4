"""params.yaml -> typed, validated settings.

Every stage reads its settings from here, so a typo in params.yaml fails at once
with the key that is wrong, not later as a KeyError deep inside a stage.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from pipeline.errors import LeadcalError


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt parameter must not be silently ignored."""

    # validate_default: defaults get the same types as values from params.yaml (1 -> 1.0), so
    # the same settings always serialise to the same bytes. allow_inf_nan: `.inf` or `.nan` in
    # YAML is a float, and none of these settings means anything infinite (DuckDB's memory limit
    # would become "infGB" and fail deep inside a stage).
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


def _unique(values: list, name: str) -> list:
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"{name} lists {duplicates} more than once")
    return values


class Paths(_Strict):
    # `generate` writes the sample here and `raw` is what `extract` reads: two settings,
    # so pointing `raw` at a real export never makes the sample overwrite it.
    sample: Path = Path("data/raw")
    raw: Path = Path("data/raw")
    extracted: Path = Path("data/extracted")
    features: Path = Path("data/features")
    models: Path = Path("models")


class Extract(_Strict):
    # Recoverable bad rows (unknown lead, dated before the lead or in the future, duplicates,
    # stages out of funnel order, leads dated in the future or before `min_date`, rows with fewer
    # fields than the header, names and values over 200 characters): 'drop' drops and counts them
    # in extract_report.json, 'fail' stops with the file and example lines.
    on_bad_rows: Literal["drop", "fail"] = "drop"
    # Leads created before this date are bad rows: a 1900 or year-1 date is a placeholder or a
    # typo, and it would stretch every monthly table back to it. Lower it for an older history.
    min_date: date = date(1990, 1, 1)


class TableSource(_Strict):
    """Where one canonical table comes from, and how its columns map onto the contract.

    `columns` maps contract names to the source's names (`lead_id: mql_id`); source columns
    not mapped keep their (lower-cased) name. `constants` fills a contract column with one
    value (a deals export has no stage column: `stage: customer`). `values` renames category
    spellings per contract column (`stage: {closed won: customer}`); matching ignores case
    and surrounding spaces.
    """

    path: Path | None = None  # a CSV or Parquet file, or a folder of them (read in name order)
    query: str | None = None  # SQL, run on source.url
    columns: dict[str, str] = {}
    constants: dict[str, str] = {}
    values: dict[str, dict[str, str]] = {}
    date_format: str | None = None  # strptime format for this table's dates; default: source.date_format

    @model_validator(mode="after")
    def _one_origin(self) -> "TableSource":
        if (self.path is None) == (self.query is None):
            raise ValueError("give exactly one of path (file or folder) or query (SQL on source.url)")
        return self


class WideActivity(_Strict):
    """One column of a wide per-lead export, turned into events or a numeric attribute.

    kind count: the cell holds how many times (that many events; a blank cell is 0); flag:
    yes/true/1 means once; date: the cell is when it happened ("last webinar date");
    category: the cell's value names the event (`Last Activity = Email Opened` is one
    `email_opened`; with `activity` set, the names are prefixed: `last_activity_email_opened`);
    number: a measure that is not a count (time on site, pages per visit), kept as the numeric
    lead attribute `activity` and banded by signals.numeric_bins like any numeric fit attribute.
    Events are dated by `date_column` when given, else at the lead's creation.
    """

    column: str
    activity: str | None = None
    kind: Literal["count", "flag", "date", "category", "number"] = "count"
    date_column: str | None = None

    @model_validator(mode="after")
    def _named(self) -> "WideActivity":
        if self.activity is None and self.kind != "category":
            raise ValueError(f"column {self.column!r} (kind {self.kind}) needs `activity`: the name its "
                             f"{'attribute' if self.kind == 'number' else 'events'} get")
        return self


class Wide(_Strict):
    """A wide per-lead export (one row per lead, as HubSpot and Salesforce export contacts):
    activity columns become events, lifecycle date columns become stages."""

    activities: list[WideActivity] = []
    stages: dict[str, str] = {}  # contract stage: date column ("customer: became_a_customer_date")


def _as_words(values: list[str | int | float | bool]) -> list[str]:
    """Outcome values as the lower-case text they are compared as. YAML reads an unquoted
    yes/no as a boolean and 1 as a number: they mean the words a sheet holds."""
    words: list[str] = []
    for value in values:
        if isinstance(value, bool):
            words += ["true", "yes"] if value else ["false", "no"]
        elif isinstance(value, float) and value.is_integer():
            words.append(str(int(value)))
        else:
            words.append(str(value).strip().lower())
    return words


class OutcomeColumn(_Strict):
    """The outcome as a column of the leads table (a `Converted` 0/1 flag, a `Status` of Won or
    Lost) instead of stage dates. Values in neither list (blank, 'Open', 'In progress') are leads
    still open: not learned from. With `date_column` (when the outcome happened) and a creation
    date, leads are seen point-in-time as usual; without them, leadcal runs in snapshot mode
    (docs/method.md, "Snapshot exports")."""

    column: str
    won: list[str | int | float | bool] = ["1", "true", "yes", "won", "converted", "customer"]
    lost: list[str | int | float | bool] = ["0", "false", "no", "lost"]
    date_column: str | None = None

    @field_validator("won", "lost")
    @classmethod
    def _words(cls, values: list) -> list[str]:
        if not values:
            raise ValueError("list at least one value")
        return _as_words(values)

    @model_validator(mode="after")
    def _disjoint(self) -> "OutcomeColumn":
        both = sorted(set(self.won) & set(self.lost))
        if both:
            raise ValueError(f"value(s) {both} are listed as both won and lost")
        return self


class Source(_Strict):
    """Where `extract` reads. Without `leads`, the contract's own folder (paths.raw)."""

    leads: TableSource | None = None
    activities: TableSource | None = None
    stages: TableSource | None = None
    outcome: OutcomeColumn | None = None
    wide: Wide = Wide()
    # Cells holding one of these (trimmed, any case) are blank, in every column of every table:
    # a web form's "Select" placeholder, "N/A", "-". A blank count is 0, a blank attribute 'unknown'.
    missing_values: list[str] = []
    url: str | None = None  # SQLAlchemy URL for query tables: sqlite:///crm.db, postgresql+psycopg://user@host/db
    date_format: str | None = None  # strptime format, e.g. "%d-%m-%Y"; None: ISO 8601
    day_first: bool = False  # without a format: read 03-04-2024 as 3 April
    timezone: str = "UTC"  # zone of timestamps written without one

    @model_validator(mode="after")
    def _complete(self) -> "Source":
        tables = {"activities": self.activities, "stages": self.stages}
        if self.leads is None:
            if any(tables.values()) or self.wide.activities or self.wide.stages or self.outcome:
                raise ValueError("set source.leads too: activities and stages are mapped onto its leads")
            return self
        if self.activities is None and not self.wide.activities:
            raise ValueError("no activities: give source.activities (an event log) or source.wide.activities")
        if self.stages is None and not self.wide.stages and self.outcome is None:
            raise ValueError("no outcomes: give source.outcome (a won/lost column such as Converted), "
                             "source.stages or source.wide.stages (e.g. customer: won_date)")
        queries = [t for t in (self.leads, *tables.values()) if t is not None and t.query is not None]
        if queries and not self.url:
            raise ValueError("tables read with query need source.url (a SQLAlchemy URL)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r} (use an IANA name such as Europe/Paris)") from exc
        return self


class Generate(_Strict):
    """Size and shape of the bundled sample history (see pipeline.data.generate)."""

    n_leads: int = Field(20_000, ge=200)
    start: date = date(2024, 1, 1)
    months: int = Field(24, ge=2, le=120)
    target_close_rate: float = Field(0.03, gt=0.0, lt=0.5)


class Outcome(_Strict):
    """What counts as a win, and the moments at which a lead is seen.

    A lead is closed when it reaches `customer` within `horizon_days` of creation. It is
    seen at fixed ages, `snapshot_days` after creation, each time with only the activity
    before that moment, and only while it is still open (no customer or lost stage yet): a moment fixed in the lead's life, never moved by its outcome (docs/method.md,
    "Point-in-time rows").
    """

    horizon_days: int = Field(90, ge=1)
    snapshot_days: list[int] = [0, 7, 30]
    as_of: datetime | None = None  # export date (or moment); default: the latest timestamp found in the data

    @model_validator(mode="before")
    @classmethod
    def _replaced_setting(cls, data: object) -> object:
        if isinstance(data, dict) and "observation_days" in data:
            raise ValueError(
                "observation_days was replaced by snapshot_days: a lead is seen at fixed ages while it is still "
                f"open, e.g. snapshot_days: [0, 7, {data['observation_days']}] (docs/method.md, 'Point-in-time rows')"
            )
        return data

    @field_validator("as_of")
    @classmethod
    def _not_in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        now = datetime.now(timezone.utc)
        moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        if moment > now:
            raise ValueError(
                f"{value.isoformat()} is in the future (now: {now:%Y-%m-%d %H:%M} UTC): no export can be dated after "
                "the run; leads younger than horizon_days at that date would all count as still open, or as "
                "losses. Give the date of the export, or null for the latest timestamp in the data")
        return value

    @field_validator("snapshot_days")
    @classmethod
    def _ages(cls, values: list[int]) -> list[int]:
        if not values:
            raise ValueError("give at least one age, e.g. [0, 7, 30]")
        if any(v < 0 for v in values):
            raise ValueError(f"ages must be 0 or more days after creation, got {values}")
        if values != sorted(set(values)):
            raise ValueError(f"list each age once, in increasing order, got {values}")
        return values

    @model_validator(mode="after")
    def _snapshots_inside_horizon(self) -> Outcome:
        if self.snapshot_days[-1] >= self.horizon_days:
            raise ValueError(
                f"snapshot_days ({self.snapshot_days[-1]}) must be below horizon_days ({self.horizon_days}): "
                "a lead is scored before its outcome is known"
            )
        return self


class FrequencySignal(_Strict):
    """'N or more `activity` within any `window_days`-day window before the cut-off'."""

    activity: str
    min_count: int = Field(ge=2)
    window_days: int = Field(30, ge=1)


class Frequency(_Strict):
    """Frequency signals: 'N or more of an activity within W days'.

    With `discover`, N is found from the data for every activity and window (the split
    of the activity's doers whose close rates differ most, kept if its G-test p-value is
    below `max_p_value`); `fixed` signals are always added as given.
    """

    windows_days: list[PositiveInt] = [30]
    discover: bool = True
    max_p_value: float = Field(0.001, gt=0, lt=1)
    fixed: list[FrequencySignal] = []

    @field_validator("windows_days")
    @classmethod
    def _unique_windows(cls, values: list[int]) -> list[int]:
        return _unique(values, "windows_days")

    @field_validator("fixed")
    @classmethod
    def _unique_fixed(cls, values: list[FrequencySignal]) -> list[FrequencySignal]:
        return _unique(values, "fixed")


class Signals(_Strict):
    fit_attributes: list[str] = [
        "company_size",
        "annual_revenue",
        "industry",
        "seniority",
        "country",
        "source",
        "email_type",
    ]
    # Numeric fit attributes are cut into bands at these lower edges (a marketer reads bands).
    numeric_bins: dict[str, list[float]] = {
        "company_size": [1, 11, 51, 201, 1001, 5001],
        "annual_revenue": [0, 1e6, 1e7, 5e7, 2.5e8, 1e9],
    }
    frequency: Frequency = Frequency()
    # "engaged within the last N days before the cut-off" signals
    recency_days: list[PositiveInt] = [7]
    # Signals seen in fewer leads than this get no points and are flagged.
    min_support: int = Field(30, ge=1)

    @field_validator("fit_attributes", mode="before")
    @classmethod
    def _column_names(cls, values: object) -> object:
        # matched like source columns: case and surrounding spaces ignored ('Lead Source' = 'lead source')
        return [v.strip().lower() if isinstance(v, str) else v for v in values] if isinstance(values, list) else values

    @field_validator("numeric_bins", mode="before")
    @classmethod
    def _bin_names(cls, values: object) -> object:
        return {k.strip().lower() if isinstance(k, str) else k: v for k, v in values.items()} \
            if isinstance(values, dict) else values

    @field_validator("fit_attributes", "recency_days")
    @classmethod
    def _no_repeats(cls, values: list) -> list:
        return _unique(values, "the list")

    @field_validator("fit_attributes")
    @classmethod
    def _not_the_id_or_date(cls, values: list[str]) -> list[str]:
        for name in ("lead_id", "created_at"):
            if name in values:
                raise ValueError(f"{name!r} is the lead's {'id' if name == 'lead_id' else 'creation date'}, not a fit "
                                 "attribute: as one, every lead would get a signal of its own; list columns that "
                                 "describe who the lead is (industry, company size, country)")
        return values

    @field_validator("numeric_bins")
    @classmethod
    def _edges_increasing(cls, bins: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, edges in bins.items():
            if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
                raise ValueError(f"numeric_bins.{name} must be at least two strictly increasing edges")
        return bins


class CloseRates(_Strict):
    confidence: float = Field(0.95, gt=0.5, lt=1.0)


class Weights(_Strict):
    points_to_double_odds: float = Field(20.0, gt=0)
    # Inverse L2 strength of the logistic regression behind the points (scikit-learn's C).
    regularization_c: float = Field(1.0, gt=0)
    # Engagement points lose half their weight every half_life_days after the activity.
    decay: bool = True
    half_life_days: float | None = Field(None, gt=0)  # None: estimated from the data
    # Most points a group may add: keys 'fit', 'engagement' or an activity / attribute name.
    caps: dict[str, float] = {}
    # Refits on resampled training leads, to report how much each signal's points could move.
    bootstrap_samples: int = Field(30, ge=0)

    @field_validator("bootstrap_samples")
    @classmethod
    def _zero_or_a_spread(cls, value: int) -> int:
        if value == 1:
            raise ValueError("bootstrap_samples must be 0 (off) or at least 2: one refit has no spread")
        return value


class HGBParams(_Strict):
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_iter: int = Field(200, ge=1)
    max_depth: int | None = Field(3, ge=1)
    min_samples_leaf: int = Field(40, ge=1)
    l2_regularization: float = Field(1.0, ge=0)


class Train(_Strict):
    model: Literal["hgb", "logistic"] = "logistic"
    # The latest months of matured leads are held out: the model is judged on the future.
    validation_months: int = Field(4, ge=1)
    # Rolling origin: the model is also judged on the `folds - 1` blocks before that one,
    # each time trained only on what came before the block.
    folds: int = Field(3, ge=1)
    # Like Einstein's minimums: fewer customers or leads in training and no model is published.
    min_customers: int = Field(100, ge=1)
    min_leads: int = Field(1000, ge=1)
    # Fits (model, points table, half-life, bootstrap) use at most this many training leads, a seeded
    # uniform sample: past a few hundred thousand leads the coefficients move less than their own
    # bootstrap spread while fitting time keeps growing (README "Scale" has the measured effect on AUC).
    # Close rates, validation and thresholds always use every lead. null: no limit.
    max_fit_leads: int | None = Field(200_000, ge=1000)
    hgb: HGBParams = HGBParams()
    logistic_c: float = Field(1.0, gt=0)


class Thresholds(_Strict):
    """How the MQL threshold is chosen; every policy is computed and reported, `policy` is published.

    When `policy` finds no threshold, the first policy of pipeline.core.thresholds.FALLBACK_ORDER that
    finds one is published, named in thresholds.json with the reason; when none does, the run is
    not published (a null threshold never is).
    """

    policy: Literal["close_rate_multiple", "sales_capacity", "target_precision", "target_recall", "cost_benefit"] = (
        "close_rate_multiple"
    )
    # close_rate_multiple: the lowest score whose leads close at `mql_lift` x the average. A multiple the
    # data cannot reach (3 x a 38.5 % average asks for 115 %) is capped halfway between the average and the
    # best close rate a threshold leaving min_mql_leads leads reaches (thresholds.json: mql_lift_used).
    mql_lift: float = Field(3.0, gt=1.0)
    # sales_capacity: at most this many MQLs per week, at the historical lead flow.
    capacity_per_week: float = Field(40.0, gt=0)
    # target_precision: MQLs close at least this often; target_recall: MQLs hold this share of customers.
    target_precision: float = Field(0.08, gt=0, lt=1)
    target_recall: float = Field(0.7, gt=0, le=1)
    # cost_benefit: a sales touch costs `cost_per_touch`; a won deal is worth `deal_value`
    # (null: the median amount of the customer stages in the data; with neither, cost_benefit finds
    # no threshold and thresholds.json says it needs one).
    cost_per_touch: float = Field(150.0, gt=0)
    deal_value: float | None = Field(None, gt=0)
    # A threshold must leave at least this many training leads above it.
    min_mql_leads: int = Field(50, ge=1)
    # Resamples of the training leads for the intervals of every policy.
    bootstrap_samples: int = Field(200, ge=0)


class Funnel(_Strict):
    # Sales follow-up SLAs on MQLs, in hours.
    sla_hours: list[PositiveInt] = [24, 48]
    # Website visitors over the same period as the leads, if known: adds visitor -> lead to the planner.
    visitors: int | None = Field(None, ge=1)
    # Lead attributes to break the funnel down by (numeric ones in their signals.numeric_bins bands).
    # None: every signals.fit_attributes column the leads have (source aside: the funnel is always
    # broken down by source). A listed attribute the leads lack is skipped with a warning.
    segments: list[str] | None = None


class Publish(_Strict):
    """Guard rails: below these floors a run is not published; beyond these moves it is flagged."""

    min_points_auc: float = Field(0.6, ge=0, le=1)
    min_model_auc: float = Field(0.6, ge=0, le=1)
    max_threshold_change: int = Field(15, ge=0)
    max_points_change: int = Field(20, ge=0)


# Mautic's core point-action types (Points > Manage actions); a plugin may add others.
MAUTIC_POINT_TYPES = ("form.submit", "asset.download", "email.open", "email.send", "page.hit", "url.hit")


class ActivityMapping(_Strict):
    """How the CRM records one leadcal activity (exports.mapping.<tool>.activities.<activity>)."""

    # HubSpot / Account Engagement: the event or activity field in the tool's words ("Has completed form
    # submission", "Prospect form"); Mautic: the point action type (MAUTIC_POINT_TYPES)
    event: str | None = None
    # the forms, assets, emails or landing pages that record it: Mautic's numeric ids, or the names HubSpot
    # and Account Engagement show
    ids: list[int | str] = []
    page_url: str | None = None  # Mautic url.hit: the tracked URL of the page (wildcards allowed)
    # HubSpot Lead Scoring API: the event type's id (e.g. "4-1639801") and, to count only the `ids` above,
    # the event property holding the form or page id
    event_type_id: str | None = None
    event_property: str | None = None


class CrmMapping(_Strict):
    """leadcal's names -> one CRM's names, so its export uses the CRM's own properties, values and assets."""

    properties: dict[str, str] = {}  # fit attribute -> the CRM's property (internal name), e.g. company_size: numberofemployees
    values: dict[str, dict[str, str]] = {}  # fit attribute -> {leadcal's value: the CRM's value}
    activities: dict[str, ActivityMapping] = {}
    # HubSpot Lead Scoring API: a text fit property ("string") is matched with MULTISTRING operators; the
    # default, "enumeration", is a dropdown. Numeric attributes (signals.numeric_bins) are numbers.
    property_types: dict[str, Literal["enumeration", "string"]] = {}


class Exports(_Strict):
    """What the CRM exports need beyond the points table. Signals left unmapped keep leadcal's names and are
    listed in the run's log and in each file (`unmapped`)."""

    mapping: dict[Literal["hubspot", "account_engagement", "mautic"], CrmMapping] = {}

    @model_validator(mode="after")
    def _mautic_types(self) -> "Exports":
        mautic = self.mapping.get("mautic")
        for activity, spec in (mautic.activities.items() if mautic else ()):
            if spec.event is not None and spec.event not in MAUTIC_POINT_TYPES:
                raise ValueError(f"mapping.mautic.activities.{activity}.event: {spec.event!r} is not a Mautic point "
                                 f"action type ({', '.join(MAUTIC_POINT_TYPES)})")
            if spec.event == "url.hit" and spec.ids:
                raise ValueError(f"mapping.mautic.activities.{activity}: url.hit takes page_url, not ids")
        return self


class Spark(_Strict):
    """Where Spark runs when `engine: spark`: local[N] on this machine, or a cluster's master URL."""

    # local[N], a cluster URL (spark://host:7077, yarn, k8s://...), or null: the master the launcher
    # gives (spark-submit --master, a Databricks cluster), whose running session is then used as is
    master: str | None = "local[2]"
    config: dict[str, str] = {}  # any spark.* setting, e.g. spark.driver.memory: 8g


class Params(_Strict):
    """Every setting. `load_params` reads them from a params file and checks where outputs go.

    Output folders (`paths.extracted`, `paths.features`, `paths.models`, `paths.sample`) must lie
    inside the project, the params file's folder (the repository's params.yaml: the repository), and
    must not be existing files: a stage replaces what is there, so a typo such as `/etc` or `../..`
    must not reach the disk. `allow_outside_project: true` writes outside on purpose (a shared
    data disk). `paths.raw`, the export, is only read and may be anywhere.
    """

    seed: int = 20261123
    # true: output folders may lie outside the params file's folder (see above)
    allow_outside_project: bool = False
    # Threads for model fitting (OpenMP / BLAS). On a shared 2-core machine one thread is both
    # faster and steadier: two threads spin-wait whenever another process holds a core.
    threads: int = Field(1, ge=1)
    paths: Paths = Paths()
    # where a Parquet event log is validated (extract) and the per-lead aggregation (features) runs:
    # DuckDB in process, or Spark (pip install 'leadcal[spark]'; README "Scale")
    engine: Literal["duckdb", "spark"] = "duckdb"
    # DuckDB's memory (event-log validation, features); beyond it DuckDB spills to disk. 3 GB keeps
    # 30M events under 4 GiB in all; hundreds of millions of events need more (README "Scale").
    duckdb_memory_gb: float = Field(3.0, gt=0)
    spark: Spark = Spark()
    generate: Generate = Generate()
    extract: Extract = Extract()
    source: Source = Source()
    outcome: Outcome = Outcome()
    signals: Signals = Signals()
    close_rates: CloseRates = CloseRates()
    weights: Weights = Weights()
    train: Train = Train()
    thresholds: Thresholds = Thresholds()
    funnel: Funnel = Funnel()
    publish: Publish = Publish()
    exports: Exports = Exports()

    @model_validator(mode="after")
    def _numbers_are_signals(self) -> "Params":
        for spec in self.source.wide.activities:
            if spec.kind != "number":
                continue
            name = snake_name(spec.activity or "")
            if name not in self.signals.fit_attributes or name not in self.signals.numeric_bins:
                raise ValueError(
                    f"source.wide.activities: the number column {spec.column!r} becomes the attribute {name!r}: list it "
                    f"in signals.fit_attributes and give its band edges in signals.numeric_bins.{name} "
                    "(`leadcal init` proposes edges from the data)")
        return self


def snake_name(text: str) -> str:
    """'Time on Site ' -> 'time_on_site': how activity and attribute names are spelt."""
    return re.sub(r"[^0-9a-z]+", "_", text.strip().lower()).strip("_")


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int, first_line: int) -> None:
        super().__init__(key, line, first_line)
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python objects, so a params file cannot run code) that refuses a key
    given twice in one mapping: plain YAML keeps the last and silently drops the other setting."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden key by key
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: PyYAML's own error says so
                break
            if first != key_node.start_mark.line + 1:
                raise _DuplicateKey(key, key_node.start_mark.line + 1, first)
        return super().construct_mapping(node, deep=deep)


OUTPUT_PATHS = ("sample", "extracted", "features", "models")  # written (and replaced) by the stages


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_outputs(params: Params, path: Path) -> None:
    """Output folders: not existing files, inside the project (the params file's folder) unless
    allow_outside_project, and never the project itself or a folder holding the params file.

    Locations are compared lexically ('..' removed, symlinks not followed): a link inside the
    project to a folder on another disk is the user's explicit choice (pipeline.staging writes
    through it)."""
    project = {os.path.abspath(path.parent), os.path.realpath(path.parent)}
    config = {os.path.abspath(path), os.path.realpath(path)}
    for name in OUTPUT_PATHS:
        value = getattr(params.paths, name)
        location = os.path.abspath(value)
        if value.exists() and not value.is_dir():
            raise LeadcalError(f"{path}: paths.{name} = {value}: {location} is a file, not a folder; the stage "
                               "writes a folder of outputs there (e.g. data/extracted)")
        if any(_inside(c, location) for c in config):
            raise LeadcalError(f"{path}: paths.{name} = {value} is the folder of the params file itself (or holds "
                               "it): stages replace or fill an output folder; give a subfolder such as data/extracted")
        if not params.allow_outside_project and not any(_inside(location, p) for p in project):
            raise LeadcalError(
                f"{path}: paths.{name} = {value}: {location} is outside the project {sorted(project)[0]} (the params "
                "file's folder); leadcal writes and replaces output folders, so one outside the project is refused. "
                "Keep outputs inside it, or set allow_outside_project: true in the params file to write there on "
                "purpose (paths.raw, the export, may be anywhere)")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params; every problem names the file and the key.

    Relative `paths.*` (given or default) are relative to the params file's folder, so
    `leadcal run --config examples/olist/params.yaml` reads and writes the same folders from
    any directory; the repository's params.yaml sits where DVC runs, so its paths are unchanged.
    (`source.*.path` stay relative to paths.raw; command-line paths stay relative to the current
    directory.)

    Refused up front: an empty file, a key given twice in one mapping (named with both lines),
    and output folders that are files or lie outside the params file's folder (see Params;
    `allow_outside_project: true` opts out of the latter).
    """
    path = Path(path)
    if not path.exists():
        raise LeadcalError(f"{path}: params file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except _DuplicateKey as exc:
        raise LeadcalError(f"{path}: line {exc.line}: key {exc.key!r} is given more than once in the same section "
                           f"(first on line {exc.first_line}); YAML would keep only the last one: remove one") from None
    except yaml.YAMLError as exc:
        raise LeadcalError(f"{path}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise LeadcalError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if raw is None:
        raise LeadcalError(f"{path}: empty params file (no settings, only blank lines or comments); give at least "
                           "one setting, e.g. copy the repository's params.yaml")
    if not isinstance(raw, dict):
        raise LeadcalError(f"{path}: expected a mapping of settings at the top level")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise LeadcalError(f"{path}: invalid params: {problems}") from exc
    folder = path.parent
    if folder != Path("."):  # the repository's params.yaml, where DVC runs, keeps its paths as written, byte for byte
        from os.path import normpath  # lexical: 'examples/olist' + '../../data' is '../data'

        resolved = {name: value if value.is_absolute() else Path(normpath(folder / value))
                    for name, value in params.paths}
        params = params.model_copy(update={"paths": params.paths.model_copy(update=resolved)})
    _check_outputs(params, path)
    return params
