"""From point-in-time rows to yes/no signals a marketer can read and a CRM can score.

A signal is one line of a points table: "did a demo request", "pricing page visit
4+ times in 30 days", "industry = software", "company size 201-1000". Every stage
after `features` works on this matrix, so close rates, points, thresholds and the
model all speak of the same signals with the same names.

A lead has one row per snapshot it was seen at (pipeline.stages.features), consecutive, in
snapshot order. What counts leads, resamples them or splits them into folds does it by
lead, never by row: `SignalSet.lead` says which rows belong together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.design import FOLD_COLUMN, is_snapshot
from pipeline.params import FrequencySignal, Signals
from pipeline.schema import AGE_PREFIX, COUNT_PREFIX, peak_column

CATALOG_COLUMNS = ("signal", "kind", "type", "attribute", "value")  # a signal catalog's columns (build_signals)

UNKNOWN = "unknown"


@dataclass(frozen=True)
class SignalSet:
    """matrix: rows x signals of 0/1 (uint8, or decayed values); catalog: one row per signal, same order.

    lead: each row's lead, as an integer that changes where the next lead's rows begin (a
    lead's rows are consecutive); snapshot: each row's snapshot age in days. Both default to
    one row per lead at a single snapshot.
    """

    matrix: pd.DataFrame
    catalog: pd.DataFrame
    lead: np.ndarray | None = None
    snapshot: np.ndarray | None = None

    def leads(self) -> np.ndarray:
        return np.arange(len(self.matrix)) if self.lead is None else self.lead

    def snapshots(self) -> np.ndarray:
        return np.zeros(len(self.matrix), dtype=np.int64) if self.snapshot is None else self.snapshot

    def take(self, rows: np.ndarray | pd.Series) -> SignalSet:
        """The rows selected by a boolean mask or by positions (positions may repeat: a bootstrap).
        The matrix keeps the rows' labels, as `features[mask]` does."""
        rows = np.asarray(rows)
        positions = np.flatnonzero(rows) if rows.dtype == bool else rows
        return SignalSet(
            matrix=self.matrix.iloc[positions],
            catalog=self.catalog,
            lead=None if self.lead is None else self.lead[positions],
            snapshot=None if self.snapshot is None else self.snapshot[positions],
        )

    def with_matrix(self, matrix: pd.DataFrame) -> SignalSet:
        return SignalSet(matrix=matrix, catalog=self.catalog, lead=self.lead, snapshot=self.snapshot)


def _new_lead(values: np.ndarray) -> np.ndarray:
    """True at each row where a new lead's rows begin (rows of a lead are consecutive)."""
    values = np.asarray(values)
    return np.concatenate([[True], values[1:] != values[:-1]]) if len(values) else np.zeros(0, dtype=bool)


def lead_codes(lead_ids: pd.Series) -> np.ndarray:
    """0, 0, 1, 2, 2, 2, ...: a new code wherever a new lead's rows begin.

    Neighbouring ids are compared in Arrow: as a NumPy array, text ids become a million
    Python strings first."""
    ids = pa.array(lead_ids)
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.ones(len(ids), dtype=bool)
    new[1:] = pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
    return (np.cumsum(new) - 1).astype(np.int64)


def lead_starts(lead: np.ndarray) -> np.ndarray:
    """Position of each lead's first row (`lead`: codes or ids, a lead's rows consecutive)."""
    return np.flatnonzero(_new_lead(lead))


def distinct(lead: np.ndarray) -> np.ndarray:
    """np.unique(lead), sorted; lead codes (non-negative integers) are marked in a table of every
    code instead of sorted: np.unique took 0.9 s for 2.8M rows (a million leads), and the train
    stage counts the leads of its folds some twenty times. Ids of other kinds are sorted."""
    lead = np.asarray(lead)
    if lead.dtype.kind not in "iu" or (len(lead) and lead.min() < 0):
        return np.unique(lead)
    seen = np.zeros(int(lead.max(initial=-1)) + 1, dtype=bool)
    seen[lead] = True
    return np.flatnonzero(seen).astype(lead.dtype)


def count_leads(lead: np.ndarray, rows: np.ndarray) -> int:
    """Distinct leads among the selected rows (a mask or positions)."""
    return int(len(distinct(np.asarray(lead)[rows])))


def per_lead_max(values: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """The largest value over each lead's rows (rows x k -> leads x k, or rows -> leads)."""
    values = np.asarray(values)
    if len(values) == 0:
        return values
    # A lead has a few rows (one per snapshot): start from each lead's first row and take the
    # maximum with its second, third, ... row where it has one. The same result as
    # np.maximum.reduceat(values, starts, axis=0), ten times faster on a million rows
    # (reduceat pays a call per lead).
    starts = lead_starts(lead)
    lengths = np.diff(np.append(starts, len(values)))
    out = values[starts]
    for shift in range(1, int(lengths.max())):
        longer = np.flatnonzero(lengths > shift)
        out[longer] = np.maximum(out[longer], values[starts[longer] + shift])
    return out


def lead_support(signals: SignalSet) -> np.ndarray:
    """Per signal, the number of leads that have it at one of their rows (not the number of rows)."""
    present = signals.matrix.to_numpy() > 0
    if signals.lead is None:
        return present.sum(axis=0)
    return per_lead_max(present, signals.lead).sum(axis=0)


def first_shown(present: np.ndarray, lead: np.ndarray | None, max_rows_per_lead: int) -> np.ndarray:
    """rows x signals: True at the first row of its lead where the signal is present.

    Counting each lead once per signal, at the first moment it showed the signal, keeps the
    units of a close rate independent (a lead seen at three snapshots is one lead, not three).
    """
    present = np.asarray(present, dtype=bool)
    if lead is None:
        return present
    seen = np.zeros_like(present)
    for shift in range(1, max_rows_per_lead):
        if shift >= len(present):
            break
        same = (lead[shift:] == lead[:-shift])[:, None]
        seen[shift:] |= present[:-shift] & same
    return present & ~seen


def resample_leads(rng: np.random.Generator, lead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row positions, lead codes) of a bootstrap resample that draws leads, each with all its rows;
    a lead drawn twice counts as two leads."""
    starts = lead_starts(lead)
    ends = np.append(starts[1:], len(lead))
    chosen = rng.integers(0, len(starts), size=len(starts))
    lengths = ends[chosen] - starts[chosen]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts[chosen], lengths) + offsets, np.repeat(np.arange(len(chosen)), lengths)


def _human(value: float) -> str:
    """1500000 -> '1.5M', 10000 -> '10k', 11 -> '11': band edges as people write them."""
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor and value % (factor / 10) == 0:
            text = f"{value / factor:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def band_labels(edges: list[float]) -> list[str]:
    """Labels for bands [e0, e1), [e1, e2), ..., [e_last, inf).

    Small integer bands read inclusively ('11-50'); large ones, and those one unit wide (a measure
    such as pages per visit: [2, 3) holds 2.5), by their edges ('1M-10M', '2-3').
    """
    labels = []
    for low, high in zip(edges, edges[1:]):
        inclusive = float(low).is_integer() and float(high).is_integer() and high < 10_000 and high - low > 1
        labels.append(f"{_human(low)}-{_human(high - 1)}" if inclusive else f"{_human(low)}-{_human(high)}")
    labels.append(f"{_human(edges[-1])}+")
    return labels


def band(values: pd.Series, edges: list[float]) -> pd.Series:
    """Numeric values -> band labels; missing -> 'unknown', below the first edge -> '<e0'."""
    labels = [f"<{_human(edges[0])}", *band_labels(edges), UNKNOWN]
    numbers = values.to_numpy(dtype=float)
    position = np.searchsorted(np.asarray(edges, dtype=float), numbers, side="right")  # 0: below the first edge
    position = np.where(np.isnan(numbers), len(labels) - 1, position)
    # labels looked up in Arrow: a column of Python strings would cost a second per million leads
    return pd.Series(pa.array(labels).take(pa.array(position)), index=values.index, dtype="str")


def fit_values(features: pd.DataFrame, settings: Signals) -> pd.DataFrame:
    """Each fit attribute as categories: numeric ones banded, missing as 'unknown'."""
    columns = {}
    for attribute in settings.fit_attributes:
        if attribute in settings.numeric_bins:
            columns[attribute] = band(features[attribute], settings.numeric_bins[attribute])
        else:
            columns[attribute] = features[attribute].astype("str").fillna(UNKNOWN)
    return pd.DataFrame(columns, index=features.index)


def _category_order(attribute: str, present: set[str], numeric_bins: dict[str, list[float]]) -> list[str]:
    """The values present: bands in numeric order, categories alphabetically, 'unknown' last."""
    if attribute in numeric_bins:
        edges = numeric_bins[attribute]
        ordered = [f"<{_human(edges[0])}", *band_labels(edges)]
    else:
        ordered = sorted(present - {UNKNOWN})
    return [v for v in ordered if v in present] + ([UNKNOWN] if UNKNOWN in present else [])


def activities_in(columns: Iterable[str]) -> list[str]:
    """The activities of a features table, from its columns (or the table: it iterates over them)."""
    return [c[len(COUNT_PREFIX):] for c in columns if c.startswith(COUNT_PREFIX)]


def frequency_name(spec: FrequencySignal) -> str:
    return f"{spec.activity} {spec.min_count}+ in {spec.window_days} days"


def recency_name(days: int) -> str:
    return f"any activity in the last {days} days"


def build_signals(features: pd.DataFrame, settings: Signals, frequency: list[FrequencySignal] | None = None) -> SignalSet:
    """The 0/1 matrix of every signal, with a catalog that names and groups them.

    `frequency`: the frequency signals to build (pipeline.artifacts.read_frequency_signals); None
    builds only the fixed ones of `settings` (params `signals`, before discovery has run).

    catalog columns: signal (display name, unique), kind (fit / engagement: which of the
    two scores it feeds, as in the CRMs), type (activity / frequency / fit), attribute, value.
    """
    columns: dict[str, np.ndarray] = {}
    rows: list[dict[str, str]] = []
    for activity in activities_in(features):
        columns[activity] = (features[COUNT_PREFIX + activity].to_numpy() > 0)
        rows.append({"signal": activity, "kind": "engagement", "type": "activity", "attribute": activity, "value": "yes"})
    _add_frequency(features, settings.frequency.fixed if frequency is None else frequency, columns, rows)
    latest = np.full(len(features), np.inf)  # days since the latest activity of any kind (inf: none)
    for activity in activities_in(features):  # column by column: a row-wise minimum strides across columns
        latest = np.fmin(latest, features[AGE_PREFIX + activity].to_numpy(dtype=float))  # NaN: never done
    for days in settings.recency_days:
        name = recency_name(days)
        columns[name] = latest <= days
        rows.append({"signal": name, "kind": "engagement", "type": "recency", "attribute": "recency", "value": f"<= {days} days"})
    values = fit_values(features, settings)
    for attribute in settings.fit_attributes:
        # each value compared as a dictionary code: comparing a million strings per value costs 10x more
        text = pa.array(values[attribute])  # a column read from Parquet may come in several chunks
        encoded = (text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text).dictionary_encode()
        code = {value: position for position, value in enumerate(encoded.dictionary.to_pylist())}
        codes = encoded.indices.to_numpy()
        for value in _category_order(attribute, set(code), settings.numeric_bins):
            row = _fit_signal(attribute, value)
            columns[row["signal"]] = codes == code[value]
            rows.append(row)
    matrix = pd.DataFrame({k: v.astype(np.uint8) for k, v in columns.items()}, index=features.index)
    return SignalSet(matrix=matrix, catalog=pd.DataFrame(rows), lead=lead_codes(features["lead_id"]),
                     snapshot=features["snapshot_days"].to_numpy(dtype=np.int64))


def _add_frequency(features: pd.DataFrame, frequency: list[FrequencySignal], columns: dict[str, np.ndarray],
                   rows: list[dict[str, str]]) -> None:
    """The columns and catalog rows of frequency signals: the peak of an activity in a window, at least N."""
    for spec in frequency:
        name = frequency_name(spec)
        columns[name] = features[peak_column(spec.activity, spec.window_days)].to_numpy() >= spec.min_count
        rows.append({
            "signal": name, "kind": "engagement", "type": "frequency", "attribute": spec.activity,
            "value": f">= {spec.min_count} in {spec.window_days} days",
        })


def frequency_signals(features: pd.DataFrame, frequency: list[FrequencySignal]) -> SignalSet:
    """Only the frequency signals `frequency` (in `build_signals`' form): what the close-rates
    stage counts on top of the features stage's counts of every other signal."""
    columns: dict[str, np.ndarray] = {}
    rows: list[dict[str, str]] = []
    _add_frequency(features, frequency, columns, rows)
    matrix = pd.DataFrame({k: v.astype(np.uint8) for k, v in columns.items()}, index=features.index)
    return SignalSet(matrix=matrix, catalog=pd.DataFrame(rows, columns=list(CATALOG_COLUMNS)),
                     lead=lead_codes(features["lead_id"]), snapshot=features["snapshot_days"].to_numpy(dtype=np.int64))


def _fit_signal(attribute: str, value: str) -> dict[str, str]:
    """The catalog row of "attribute = value"."""
    return {"signal": f"{attribute} = {value}", "kind": "fit", "type": "fit", "attribute": attribute, "value": value}


def merged_catalog(catalogs: list[pd.DataFrame], fit_attributes: list[str],
                   numeric_bins: dict[str, list[float]]) -> pd.DataFrame:
    """The catalog `build_signals` gives a table from the catalogs it gives that table's parts.

    Activity, frequency and recency signals come from columns and params, the same in every
    part; a fit attribute's values are those of any part, in `build_signals`' order."""
    first = catalogs[0]
    rows = first.loc[first["type"] != "fit"].to_dict("records")
    for attribute in fit_attributes:
        present = {value for catalog in catalogs
                   for value in catalog.loc[(catalog["type"] == "fit") & (catalog["attribute"] == attribute), "value"]}
        rows.extend(_fit_signal(attribute, value) for value in _category_order(attribute, present, numeric_bins))
    return pd.DataFrame(rows, columns=first.columns)


def estimation_snapshot(snapshot: np.ndarray, closed: np.ndarray, min_count: int) -> int:
    """The snapshot whose rows (one per lead) estimate what needs a lead's whole window: the
    latest one with at least `min_count` customers and as many other leads, else the one with
    the most customers. In a funnel where every deal is decided within days, day 30 may hold
    no customer at all; an earlier snapshot still can tell."""
    snapshot, closed = np.asarray(snapshot), np.asarray(closed)
    ages = np.unique(snapshot)
    customers = {int(a): int(closed[snapshot == a].sum()) for a in ages}
    others = {int(a): int((snapshot == a).sum()) - customers[int(a)] for a in ages}
    enough = [a for a in customers if customers[a] >= min_count and others[a] >= min_count]
    return max(enough) if enough else max(customers, key=lambda a: (customers[a], a))


def labelled(features: pd.DataFrame) -> pd.Series:
    """Rows whose lead's outcome is known (matured): the only ones statistics may use."""
    return features["closed"] >= 0


def validation_cohorts(features: pd.DataFrame, months: int) -> list[str]:
    """The latest `months` cohorts with known outcomes: held out to judge on the future."""
    cohorts = sorted(features.loc[labelled(features), "cohort"].unique())
    if len(cohorts) < 2:
        return []
    return cohorts[-min(months, len(cohorts) - 1):]


def purge(train: pd.Series, valid: pd.Series, features: pd.DataFrame, horizon_days: int) -> pd.Series:
    """Training leads whose outcome was known when the validation period began.

    A model deployed on the first held-out day could not have learnt from leads still
    inside their horizon then (their wins came later): keeping them would let the
    held-out months' own period leak into training and flatter the validation.
    """
    if not valid.any():
        return train
    return train & known_in_time(features, horizon_days, features.loc[valid, "created_at"].min())


def known_in_time(features: pd.DataFrame, horizon_days: int, moment: pd.Timestamp) -> pd.Series:
    """Rows of leads whose outcome was known at `moment`: created at least a horizon before it."""
    return features["created_at"] + pd.Timedelta(days=horizon_days) <= moment


def fit_rows(train: np.ndarray, max_leads: int | None, seed: int, lead: np.ndarray | None = None) -> np.ndarray:
    """The training rows a fit uses: all of them, or every row of a seeded uniform sample of `max_leads` leads.

    Uniform, not stratified: the sample keeps the close rate, so fitted intercepts and
    calibrated probabilities need no correction. Leads, not rows, are sampled: a lead keeps
    all its snapshots or none. The same seed and data give the same sample.
    """
    train = np.asarray(train, dtype=bool)
    lead = np.arange(len(train)) if lead is None else np.asarray(lead)
    leads = distinct(lead[train])
    if max_leads is None or len(leads) <= max_leads:
        return train
    chosen = np.random.default_rng(seed).choice(leads, size=max_leads, replace=False)
    return train & np.isin(lead, chosen)


@dataclass(frozen=True)
class SplitRule:
    """Which labelled rows train and which are held out, as a rule on each row's own columns:
    a part of the table (a range of leads, a Spark partition) is split as the whole table is.

    Dated exports hold out the cohorts `held_out_cohorts` and train on the leads before them
    whose outcome was known when the held-out period began (`known_by`, see `purge`); snapshot
    exports hold out the random fold `held_out_fold` (pipeline.design).
    """

    held_out_cohorts: tuple[str, ...] = ()
    known_by: pd.Timestamp | None = None
    horizon_days: int = 0
    held_out_fold: int | None = None

    def masks(self, features: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """(train mask, validation mask) of `features`' rows."""
        known = labelled(features)
        if self.held_out_fold is not None:
            held_out = known & (features[FOLD_COLUMN] == self.held_out_fold)
            return known & ~held_out, held_out
        held_out = known & features["cohort"].isin(self.held_out_cohorts)
        train = known & ~held_out
        if self.known_by is not None:
            train = train & known_in_time(features, self.horizon_days, self.known_by)
        return train, held_out


def split_rule(features: pd.DataFrame, months: int, horizon_days: int) -> SplitRule:
    """The `SplitRule` of the whole table: the latest `months` cohorts held out (a snapshot
    export: its last random fold). Too many months for the history is one clear error."""
    if is_snapshot(features):  # no months to hold out: random folds of leads (pipeline.design)
        return SplitRule(held_out_fold=int(features[FOLD_COLUMN].max()))
    cohorts = tuple(validation_cohorts(features, months))
    held_out = labelled(features) & features["cohort"].isin(cohorts)
    known_by = features.loc[held_out, "created_at"].min() if held_out.any() else None  # as `purge` does
    rule = SplitRule(held_out_cohorts=cohorts, known_by=known_by, horizon_days=horizon_days)
    if held_out.any():
        _check_validation_months(features, months, horizon_days, rule.masks(features)[0])
    return rule


def time_split(features: pd.DataFrame, months: int, horizon_days: int) -> tuple[pd.Series, pd.Series]:
    """(train mask, validation mask) over labelled leads, split by creation month.

    The latest `months` cohorts are held out; training keeps the leads before them whose
    outcome was already known when the held-out period began (`purge`).
    """
    return split_rule(features, months, horizon_days).masks(features)


def _check_validation_months(features: pd.DataFrame, months: int, horizon_days: int, train: pd.Series) -> None:
    """More months held out than the history allows: one clear line with the months there are.

    `validation_cohorts` holds out at most all months but one, and training keeps only leads whose
    outcome was known when the held-out months began: too many months leaves nothing to train on,
    which used to fail stages later with a message about something else."""
    from pipeline.errors import LeadcalError

    cohorts = sorted(features.loc[labelled(features), "cohort"].unique())
    if months <= len(cohorts) - 1 and train.any():
        return
    known = labelled(features)
    fits = [m for m in range(1, len(cohorts))
            if purge(known & ~features["cohort"].isin(cohorts[-m:]), known & features["cohort"].isin(cohorts[-m:]),
                     features, horizon_days).any()]
    advice = (f"set train.validation_months to at most {max(fits)}" if fits else
              f"the history is too short to hold any month out with a {horizon_days}-day horizon: add older leads "
              "or lower outcome.horizon_days")
    raise LeadcalError(
        f"params train.validation_months = {months}: the history has {len(cohorts)} months of matured leads "
        f"({cohorts[0]} to {cohorts[-1]}); holding out the last {min(months, len(cohorts) - 1)} leaves "
        f"{int(train.sum())} training rows whose outcome was known before them; {advice}")


def decay_matrix(signals: SignalSet, features: pd.DataFrame, half_life_days: float | None) -> SignalSet:
    """Activity signals weighted by 2^(-age / half-life): 1 if done at the cut-off, 0.5 one half-life earlier.

    Only `activity` signals decay (their age is that of the lead's latest such event);
    fit, frequency and recency signals keep their 0/1 value. None: no decay.
    """
    if half_life_days is None:
        return signals
    matrix = signals.matrix.astype(float)
    for name in signals.catalog.loc[signals.catalog["type"] == "activity", "signal"]:
        age = features[AGE_PREFIX + name].to_numpy(dtype=float)
        matrix[name] = decayed(matrix[name].to_numpy(), age, half_life_days)
    return signals.with_matrix(matrix)


def decayed(value: np.ndarray, age: np.ndarray, half_life_days: float) -> np.ndarray:
    """An activity's values weighted by 2^(-age / half-life), 0 where it was never done (age NaN):
    `decay_matrix`'s arithmetic, for a caller that decays the same columns under many half-lives."""
    return np.where(np.isnan(age), 0.0, value * np.exp2(-np.nan_to_num(age) / half_life_days))


def decay_inputs(features: pd.DataFrame) -> pd.DataFrame:
    """The feature columns `decay_matrix` reads (each activity's age), to select rows from: a
    stage that handed `features[rows]` to the decay copied every column, strings and timestamps
    included, for the ages alone (3 s of the weights and train stages at a million leads)."""
    return features[[c for c in features.columns if c.startswith(AGE_PREFIX)]]
