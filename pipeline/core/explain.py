"""Why this lead has this score: the signals that raised or lowered its odds, and by how much.

CRMs show "top predictive factors" without saying how they are computed. leadcal uses
occlusion, which works the same for any model: a signal's effect on one lead is the
change in the model's log-odds when that signal is taken away from the lead,

    effect(lead, signal) = logit P(lead) - logit P(lead without the signal)

"Without" means: for an activity, never done (its count, recency and flag reset); for a
frequency or recency signal, not met. A fit value is compared with the attribute's average
lead: the log-odds the lead would have with each value of the attribute, averaged with the
values' shares. So "industry = software (odds x1.4)" reads "compared with the average
industry", as the centred fit points do; for a linear model the two are the same number.
The effect is reported as an odds ratio: x2.0 doubles the odds of closing.
Effects are not additive for a non-linear model; each is "all else as it is".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from pipeline.schema import AGE_PREFIX, COUNT_PREFIX, NEVER_DAYS

EPS = 1e-9
INTERACTION_MARK = "@ day"  # "<signal> @ day 7": the signal's extra effect at that snapshot (pipeline.core.lead_model)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def reference_values(catalog: pd.DataFrame, X: pd.DataFrame) -> dict[str, dict[str, float]]:
    """For each fit attribute, the share of each of its values in X: the average lead to compare with."""
    fit = catalog[catalog["type"] == "fit"]
    shares = {}
    for attribute, group in fit.groupby("attribute"):
        names = [s for s in group["signal"] if s in X.columns]
        counts = X[names].sum()
        if counts.sum() > 0:
            shares[attribute] = {name: float(count / counts.sum()) for name, count in counts.items() if count > 0}
    return shares


def signal_columns(columns: Iterable[str], signal: str) -> list[str]:
    """The columns of a model matrix that carry `signal`: the signal itself, its per-snapshot
    columns ('<signal> @ day 7') and, for an activity, its count and age. Taken away together
    (explanations), left out together (pipeline.core.lead_model.supported_columns)."""
    own = {signal, COUNT_PREFIX + signal, AGE_PREFIX + signal}
    return [c for c in columns if c in own or c.startswith(f"{signal} {INTERACTION_MARK} ")]


def _signal_columns(columns: pd.Index, signal: str) -> list[tuple[int, float]]:
    """(position, value) of each column that taking `signal` away sets (`signal_columns`): its age
    to never, the others to 0."""
    return [(columns.get_loc(c), NEVER_DAYS if c == AGE_PREFIX + signal else 0.0)
            for c in signal_columns(columns, signal)]


def _gather(columns: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The rows `index` of `columns` (a column-major float array) as a column-major copy: the layout
    a frame whose columns were edited hands to the model (pandas stores it column by column), so the
    model's predictions on it are the same to the last bit. Gathered column by column, with no frame
    per signal (a pandas copy of the rows, the edit and the model's own copy were 4 s of the train
    stage at a million leads; np.take of whole rows into this layout is slower still)."""
    rows = np.empty((len(index), columns.shape[1]), order="F")
    for position in range(columns.shape[1]):
        np.take(columns[:, position], index, out=rows[:, position])
    return rows


def _predict_on(predict: Callable[[pd.DataFrame], np.ndarray], rows: np.ndarray, X: pd.DataFrame,
                index: np.ndarray) -> np.ndarray:
    """`predict` on `rows` (X's rows `index`, edited), seen as a frame without a copy."""
    return predict(pd.DataFrame(rows, index=X.index[index], columns=X.columns, copy=False))


def _average_over_values(
    predict: Callable[[pd.DataFrame], np.ndarray], X: pd.DataFrame, values: np.ndarray, index: np.ndarray,
    shares: dict[str, float],
) -> np.ndarray:
    """Share-weighted mean log-odds of X's rows `index` with each value of one attribute in turn
    (`values`: X as a column-major array). The rows once, the attribute's columns rewritten for each
    value (a frame copied and edited per value cost pandas a block consolidation each time); when
    they are every row (every lead has a value), `values` itself, its columns put back after."""
    attribute = [X.columns.get_loc(name) for name in shares]
    every_row = len(index) == len(values)
    rows, kept = (values, values[:, attribute].copy()) if every_row else (_gather(values, index), None)
    total = np.zeros(len(index))
    for value, share in shares.items():
        rows[:, attribute] = 0.0
        rows[:, X.columns.get_loc(value)] = 1.0
        total += share * logit(_predict_on(predict, rows, X, index))
    if every_row:
        rows[:, attribute] = kept
    return total


def effects(
    predict: Callable[[pd.DataFrame], np.ndarray], X: pd.DataFrame, catalog: pd.DataFrame,
    reference: dict[str, dict[str, float]],
) -> pd.DataFrame:
    """Leads x signals: change in log-odds due to each signal the lead has (NaN where it has not)."""
    base = logit(predict(X))
    values = np.array(X.to_numpy(dtype=float), order="F")  # its own copy, read column by column (_gather)
    names = list(catalog["signal"])
    out = np.full((len(X), len(names)), np.nan)
    for row in catalog[catalog["type"] != "fit"].itertuples(index=False):
        if row.signal not in X.columns:
            continue
        index = np.flatnonzero(values[:, X.columns.get_loc(row.signal)] > 0)
        if len(index):
            rows = _gather(values, index)
            for position, value in _signal_columns(X.columns, row.signal):
                rows[:, position] = value
            out[index, names.index(row.signal)] = base[index] - logit(_predict_on(predict, rows, X, index))
            del rows  # before the next signal's rows are gathered: one copy at a time
    for attribute, shares in reference.items():
        present = [s for s in shares if s in X.columns]
        value_columns = values[:, [X.columns.get_loc(s) for s in present]]
        index = np.flatnonzero(value_columns.sum(axis=1) > 0)
        if not len(index):
            continue
        delta = base[index] - _average_over_values(predict, X, values, index, {s: shares[s] for s in present})
        own = value_columns[index].argmax(axis=1)
        for position, name in enumerate(present):
            if name not in names:  # a value the model knows that the scored leads' catalog lacks: a column of its own
                names.append(name)
                out = np.column_stack([out, np.full(len(X), np.nan)])
            out[index[own == position], names.index(name)] = delta[own == position]
    return pd.DataFrame(out, index=X.index, columns=names)


def top_reasons(lead_effects: pd.DataFrame, count: int = 3) -> list[str]:
    """Per lead, its `count` strongest effects as 'signal (odds x2.3)', strongest first."""
    values = lead_effects.to_numpy()
    names = np.asarray(lead_effects.columns)
    reasons = []
    for row in values:
        present = np.flatnonzero(~np.isnan(row))
        strongest = present[np.argsort(-np.abs(row[present]), kind="stable")][:count]
        reasons.append("; ".join(f"{names[i]} (odds x{np.exp(row[i]):.2g})" for i in strongest))
    return reasons


def global_factors(lead_effects: pd.DataFrame, lead: np.ndarray | None = None) -> pd.DataFrame:
    """One row per signal: how many leads have it and its typical effect (over their rows), strongest first.

    `lead`: each row's lead, when a lead has several rows (snapshots): `leads` counts leads."""
    values = lead_effects.to_numpy()
    present = ~np.isnan(values)
    rows = present.sum(axis=0)
    if lead is None:
        leads = rows
    else:
        seen = np.zeros((int(np.max(lead)) + 1 if len(lead) else 0, values.shape[1]), dtype=bool)
        np.logical_or.at(seen, np.asarray(lead), present)
        leads = seen.sum(axis=0)
    filled = np.array(values, copy=True)  # np.nansum's own copy with 0 for NaN (its layout too: the same
    np.copyto(filled, 0.0, where=~present)  # sums, bit for bit), made once for the three sums below
    with np.errstate(invalid="ignore"):
        mean = np.where(rows > 0, filled.sum(axis=0) / np.maximum(rows, 1), np.nan)
        mean_abs = np.where(rows > 0, np.abs(filled).sum(axis=0) / np.maximum(rows, 1), np.nan)
        raising = np.where(rows > 0, (filled > 0).sum(axis=0) / np.maximum(rows, 1), np.nan)
    table = pd.DataFrame({
        "signal": lead_effects.columns,
        "leads": leads,
        "mean_log_odds_effect": mean,
        "mean_abs_log_odds_effect": mean_abs,
        "typical_odds_ratio": np.exp(mean),
        "share_of_leads_raised": raising,
    })
    table = table[table["leads"] > 0]
    return table.sort_values(["mean_abs_log_odds_effect", "signal"], ascending=[False, True], kind="stable").reset_index(drop=True)
