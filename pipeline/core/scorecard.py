"""The points scorecard: integer points per signal, split into a fit and an engagement score.

Why a model and not the close rates directly: signals overlap (every webinar
attendee also registered), so adding up points derived from single-signal close
rates counts the same interest twice. The points come from one L2-penalised
logistic regression on all signals together, scaled like a credit scorecard:

    points(signal) = round(coefficient * PDO / ln 2)

where PDO ("points to double the odds") is a parameter: a lead with PDO more
points has twice the odds of closing. For each fit attribute the coefficients are
centred on the attribute's average lead, so 0 fit points means "as good a fit as
the average lead" and negative points mean a worse fit. A lead's probability of
closing follows from its total:

    P(close) = 1 / (1 + exp(-(base_log_odds + snapshot_log_odds + total_points * ln 2 / PDO)))

Leads are seen at several snapshots (pipeline.stages.features); a lead still open at day 30 closes
less often than a new one, whatever it did. The regression therefore gives each snapshot
its own baseline (`snapshot_log_odds`, 0 at the first snapshot), fitted without penalty, so
the points measure what a signal adds among leads of the same age, not how old the leads
that show it are. Support is counted in leads, and the bootstrap resamples leads with all
their rows.

The single-signal close rates stay beside each line as the evidence.

This module is the method, on arrays and frames with explicit settings; the weights stage
(pipeline.stages.weights) reads the features, calls it and writes models/weights.json.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize_scalar
from scipy.special import expit
from scipy.stats import rankdata

from pipeline.core.logistic import fit_newton, fit_newton_many
from pipeline.core.signals import UNKNOWN as UNKNOWN_VALUE
from pipeline.core.signals import (
    SignalSet,
    decay_matrix,
    decayed,
    estimation_snapshot,
    lead_starts,
    lead_support,
    per_lead_max,
)
from pipeline.errors import LeadcalError
from pipeline.schema import AGE_PREFIX, snapshot_stratum

STATUS_SCORED = "scored"
STATUS_LOW_SUPPORT = "below minimum support: no points"
STATUS_CONSTANT = "same for every lead (at each snapshot): no points"
STATUS_DECAY = "recency is already in the decay: no points"
STATUS_LOW_SUPPORT_FIT = "below minimum support: scored like the attribute's reference"


def usable_signals(
    signals: SignalSet, min_support: int, decayed: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(usable, low_support, constant, covered_by_decay) masks over the signal columns.

    Support is counted in leads (not rows) among those being fitted (never held-out ones).
    With decay, an activity's points already fade with its age, so a recency signal ("any
    activity in the last 7 days") would count recency twice: it stays evidence and gets no points.
    """
    present = signals.matrix.to_numpy() > 0
    low_support = lead_support(signals) < min_support
    # the same for every lead at each snapshot: nothing beyond the snapshot's own baseline
    snapshot = signals.snapshots()
    constant = np.ones(present.shape[1], dtype=bool)
    for age in np.unique(snapshot):
        count = present[snapshot == age].sum(axis=0)
        constant &= (count == 0) | (count == (snapshot == age).sum())
    covered = (signals.catalog["type"] == "recency").to_numpy() & decayed
    return ~low_support & ~constant & ~covered, low_support, constant, covered


def check_outcomes(closed: np.ndarray) -> None:
    if closed.sum() == 0 or closed.sum() == len(closed):
        raise LeadcalError(
            f"cannot fit points: the training leads are all {'lost' if closed.sum() == 0 else 'won'} "
            f"({len(closed)} leads, {int(closed.sum())} customers); points need both outcomes. "
            "Still available: models/close_rates.csv (each signal's close rate and lift)"
        )


# Snapshot baselines enter the regression as indicator columns scaled by this factor: the L2
# penalty on a coefficient w is w^2 / 2C, and the baseline it carries is SNAPSHOT_SCALE * w, so
# a baseline of -1 costs 1 / (2 C SNAPSHOT_SCALE^2) = 0.005 nats next to a log-likelihood summed
# over thousands of rows: unpenalised in effect, with no solver of our own.
SNAPSHOT_SCALE = 10.0
# The regressions are solved by Newton's method with a Cholesky solve (pipeline.core.logistic,
# scikit-learn's LogisticRegression objective): a few dozen columns and many rows is its case, it
# converges in a few steps to any precision asked, and a fit next to an earlier one (a bootstrap
# refit, the next half-life) keeps the earlier Hessian and pays only for gradients. L-BFGS with
# scikit-learn's default tolerance stopped the sample's points regression 4 log-likelihood units
# short of its optimum (single points off by 6, bootstrap spreads partly where the solver stopped).
# The predictive model (pipeline.core.lead_model) names scikit-learn's equivalent solver and tolerance.
SOLVER = "newton-cholesky"
SOLVER_TOLERANCE = 1e-8


@dataclass(frozen=True)
class LogisticFit:
    coefficients: np.ndarray  # one per column of X
    intercept: float  # log-odds of the first snapshot's baseline lead
    log_likelihood: float  # of the fitted rows
    snapshot_log_odds: dict[int, float]  # each snapshot's baseline relative to the first (0 for the first)
    columns: tuple[str, ...] = ()  # the names of X's columns, when given
    hessian: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)  # the solver's last


def logistic_design(X: np.ndarray, snapshot: np.ndarray, usable: np.ndarray | None = None) -> np.ndarray:
    """X's (usable) columns, then one indicator per later snapshot scaled by SNAPSHOT_SCALE, written
    once into one C-ordered float array: the same matrix as np.hstack([X[:, usable], strata]) without
    the copies in between (half a second per fit at a million rows). X itself when that is already
    the design (every column, one snapshot, C-ordered floats): the fit only reads it."""
    X = np.asarray(X)
    ages = np.unique(snapshot)
    if (usable is None or np.all(usable)) and len(ages) == 1 and X.dtype == float and X.flags.c_contiguous:
        return X  # already the design: one snapshot adds no column (the half-life profile's rows, 30 copies)
    picked = np.arange(X.shape[1]) if usable is None else np.flatnonzero(usable)
    design = np.empty((len(snapshot), len(picked) + len(ages) - 1))
    # all of X's columns in one block copy (a fourth of the time of column by column); a choice of
    # them column by column (a gathered copy first would be one n x p copy more)
    if len(picked) == X.shape[1]:
        design[:, :len(picked)] = X
    else:
        for position, column in enumerate(picked):
            design[:, position] = X[:, column]
    for position, a in enumerate(ages[1:], start=len(picked)):
        design[:, position] = (snapshot == a) * SNAPSHOT_SCALE
    return design


def fit_logistic(X: np.ndarray, closed: np.ndarray, c: float, seed: int, snapshot: np.ndarray | None = None,
                 columns: list[str] | None = None, start: LogisticFit | None = None,
                 usable: np.ndarray | None = None, weight: np.ndarray | None = None) -> LogisticFit:
    """The L2 logistic regression of the outcomes on X (on its `usable` columns, a mask, if given),
    with an unpenalised baseline per snapshot; `weight`: each row's weight (a count of copies).

    `start`: a fit of nearly the same data (the previous half-life's, the previous validation
    fold's) to start the solver from, matched by column name, its Hessian kept if its columns and
    snapshots are these: the same optimum in fewer steps. `seed` is unused (Newton's method draws
    nothing); it stays for the callers' symmetry.
    """
    snapshot = np.zeros(len(closed), dtype=np.int64) if snapshot is None else np.asarray(snapshot)
    ages = [int(a) for a in np.unique(snapshot)]
    design = logistic_design(X, snapshot, usable)
    width = design.shape[1] - (len(ages) - 1)
    theta, H = None, None
    if start is not None:
        theta = _start_parameters(start, columns or [], ages)
        same_layout = tuple(columns or ()) == start.columns and list(start.snapshot_log_odds) == ages
        if start.hessian is not None and same_layout and len(theta) == len(start.hessian):
            H = start.hessian
    fit = fit_newton(design, closed, c, weight, theta, H)
    p = np.clip(expit(design @ fit.coefficients + fit.intercept), 1e-12, 1 - 1e-12)
    terms = closed * np.log(p) + (1 - closed) * np.log(1 - p)
    log_likelihood = float(np.sum(terms) if weight is None else np.asarray(weight, dtype=float) @ terms)
    offsets = {ages[0]: 0.0, **{a: float(w * SNAPSHOT_SCALE) for a, w in zip(ages[1:], fit.coefficients[width:])}}
    return LogisticFit(fit.coefficients[:width], fit.intercept, log_likelihood, offsets, tuple(columns or ()),
                       fit.hessian)


def _start_parameters(start: LogisticFit, columns: list[str], ages: list[int]) -> np.ndarray:
    """`start`'s parameters laid out for a design of `columns` and snapshot `ages` (logistic_design):
    matched by column name (0 for a column it lacks), the snapshot baselines, the intercept last."""
    known = dict(zip(start.columns, start.coefficients))
    return np.array([known.get(name, 0.0) for name in columns]
                    + [start.snapshot_log_odds.get(a, 0.0) / SNAPSHOT_SCALE for a in ages[1:]] + [start.intercept])


def estimate_half_life(
    signals: SignalSet, features: pd.DataFrame, closed: np.ndarray, usable: np.ndarray, c: float, seed: int,
    bounds: tuple[float, float] = (1.0, 365.0), grid_points: int = 13,
) -> tuple[float, tuple[float, float], list[dict[str, float]]]:
    """The half-life (days) under which the decayed signals explain the outcomes best.

    Profile likelihood: for each candidate half-life h the activity signals become
    2^(-age/h), the joint logistic regression is refitted, and the h maximising the
    log-likelihood of the outcomes wins (a log-spaced grid, then a bounded search
    around its best point). The 95 % interval holds every h whose log-likelihood is
    within chi2(1, 0.95) / 2 = 1.92 of the maximum: its ends are where the profile crosses
    that level (found by root search, not read off the coarse grid, which would cut the
    interval short): the rows must be independent, one per lead (`half_life` gives it the
    last snapshot's rows).
    Returns (h, (low, high), profile).
    """
    evaluated: dict[float, float] = {}
    fits: dict[float, LogisticFit] = {}
    snapshot, names = signals.snapshots(), list(signals.matrix.columns[usable])
    # the usable columns read once, their activities decayed anew for each half-life (decay_matrix's
    # values, without a frame of every signal per half-life: 2 s of the weights stage at 1M leads)
    undecayed = signals.matrix.loc[:, usable].to_numpy(dtype=float)
    activities = [(names.index(name), features[AGE_PREFIX + name].to_numpy(dtype=float))
                  for name in signals.catalog.loc[signals.catalog["type"] == "activity", "signal"] if name in names]

    X = undecayed.copy()  # one matrix for every half-life: only the activities' columns change

    def log_likelihood(h: float) -> float:
        if h not in evaluated:
            for position, age in activities:
                X[:, position] = decayed(undecayed[:, position], age, h)
            # from the fit at the nearest half-life tried so far: its optimum and Hessian are close
            nearest = min(fits, key=lambda tried: abs(math.log(tried / h)), default=None)
            fits[h] = fit_logistic(X, closed, c, seed, snapshot, names, fits.get(nearest))
            evaluated[h] = fits[h].log_likelihood
        return evaluated[h]

    grid = np.exp(np.linspace(np.log(bounds[0]), np.log(bounds[1]), grid_points))
    values = [log_likelihood(float(h)) for h in grid]
    best_index = int(np.argmax(values))
    low, high = grid[max(best_index - 1, 0)], grid[min(best_index + 1, len(grid) - 1)]
    best = minimize_scalar(lambda log_h: -log_likelihood(float(np.exp(log_h))), bounds=(np.log(low), np.log(high)),
                           method="bounded", options={"xatol": 0.005})
    h_best = float(np.exp(best.x))
    top = max(evaluated.values())
    h_top = max(evaluated, key=evaluated.get)
    level = top - 1.92

    def edge(bound: float) -> float:
        """Where the profile crosses `level` between the best half-life and `bound` (the bound if it never does)."""
        if log_likelihood(bound) >= level:
            return bound
        return float(np.exp(brentq(lambda log_h: log_likelihood(float(np.exp(log_h))) - level,
                                   *sorted((np.log(bound), np.log(h_top))), xtol=0.002)))

    interval = (edge(bounds[0]), edge(bounds[1]))
    profile = [{"half_life_days": h, "log_likelihood": ll} for h, ll in sorted(evaluated.items())]
    return h_best, interval, profile


def _fit_values_per_lead(signals: SignalSet) -> tuple[list[str], np.ndarray]:
    """(the fit values' names, leads x fit values: whether each lead has each value at one of its rows)."""
    catalog = signals.catalog
    fit_names = list(catalog.loc[catalog["type"] == "fit", "signal"])
    values = signals.matrix[fit_names].to_numpy()
    return fit_names, values if signals.lead is None else per_lead_max(values, signals.lead)


def fit_prevalence(signals: SignalSet) -> pd.Series:
    """Each fit value's share of the leads (not rows): what `_centred` averages over."""
    fit_names, per_lead = _fit_values_per_lead(signals)
    return pd.Series(per_lead.mean(axis=0), index=fit_names)


def _centred(coefficient: pd.Series, intercept: float, signals: SignalSet,
             prevalence: pd.Series | None = None) -> tuple[pd.Series, float]:
    """Centre each fit attribute on its average lead, so 0 fit points reads "average fit".

    Every lead has exactly one value per attribute ('unknown' included), so subtracting
    the same amount from all of the attribute's values and adding it to the intercept
    leaves every prediction unchanged. Values left out of the fit (too rare) have
    coefficient 0, the reference, and move with the others: they are scored like the
    reference, not like the average. Shares are counted in leads, not rows (`fit_prevalence`;
    `prevalence`: given, for a bootstrap resample's leads).
    """
    coefficient = coefficient.copy()
    catalog = signals.catalog.set_index("signal")
    fit_names = list(catalog.index[catalog["type"] == "fit"])
    if not fit_names:
        return coefficient, intercept
    prevalence = fit_prevalence(signals) if prevalence is None else prevalence
    for _, group in catalog.loc[fit_names].groupby("attribute", sort=False):
        names = list(group.index)
        share = prevalence[names]
        if share.sum() == 0:
            continue
        mean = float((coefficient[names] * share).sum() / share.sum())
        coefficient[names] -= mean
        intercept += mean
    return coefficient, intercept


def fit_points(
    signals: SignalSet, closed: np.ndarray, evidence: pd.DataFrame, points_to_double_odds: float, c: float, seed: int,
    decayed: bool = False, min_support: int = 30, start: LogisticFit | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Fit the scorecard on the given leads; returns (table, header with base_log_odds).

    `signals` may hold decayed activity values (pipeline.core.signals.decay_matrix, then
    `decayed`): the points are then those of an activity done at the cut-off. `evidence` is the
    close-rate table (pipeline.stages.close_rates), joined on `signal`. The regression itself is in
    `table.attrs["fit"]` (the start of the bootstrap refits, `start`).
    """
    closed = np.asarray(closed, dtype=int)
    check_outcomes(closed)
    usable, low_support, constant, covered = usable_signals(signals, min_support, decayed)
    if not usable.any():
        raise LeadcalError("cannot fit points: every signal is below the minimum support or the same for every lead")
    columns = signals.matrix.columns
    fit = fit_logistic(signals.matrix.to_numpy(), closed, c, seed, signals.snapshots(), list(columns[usable]), start,
                       usable)
    coefficient = pd.Series(0.0, index=columns)
    coefficient[columns[usable]] = fit.coefficients
    coefficient, intercept = _centred(coefficient, fit.intercept, signals)

    scale = points_to_double_odds / math.log(2)
    table = signals.catalog.copy()
    table["coefficient"] = coefficient.to_numpy()
    table["points"] = np.round(coefficient.to_numpy() * scale).astype(int)  # 0 for unfitted non-fit signals
    is_fit = (signals.catalog["type"] == "fit").to_numpy()
    # a fit value too rare (or absent) in training first: it is scored like its attribute's reference
    table["status"] = np.select(
        [low_support & is_fit, constant, low_support, covered],
        [STATUS_LOW_SUPPORT_FIT, STATUS_CONSTANT, STATUS_LOW_SUPPORT, STATUS_DECAY], STATUS_SCORED)
    evidence_columns = ["signal", "leads", "customers", "close_rate", "ci_low", "ci_high", "lift", "shrunk_lift"]
    table = table.merge(evidence[evidence_columns], on="signal", how="left")
    header = {"points_to_double_odds": points_to_double_odds, "base_log_odds": intercept,
              "snapshot_log_odds": {str(a): v for a, v in fit.snapshot_log_odds.items()}}
    table.attrs["fit"] = fit
    return table, header


def _resample_counts(rng: np.random.Generator, lead: np.ndarray, samples: int) -> np.ndarray:
    """leads x samples: how often each bootstrap resample draws each lead, from the same draws as
    pipeline.core.signals.resample_leads (a lead drawn twice counts as two leads)."""
    n = len(lead_starts(lead))
    return np.column_stack([np.bincount(rng.integers(0, n, size=n), minlength=n) for _ in range(samples)]
                           ).reshape(n, samples)


def _usable_in_resamples(signals: SignalSet, counts: np.ndarray, min_support: int, decayed: bool) -> np.ndarray:
    """samples x signals: `usable_signals` of each resample, from its lead counts (leads x samples)
    instead of copied rows: support is the resample's count of leads showing the signal, a signal is
    constant if the drawn rows of each snapshot all have it or all lack it."""
    lead = signals.leads()
    present = signals.matrix.to_numpy() > 0
    support = counts.T.astype(np.float32) @ per_lead_max(present, lead).astype(np.float32)
    drawn = np.repeat(counts > 0, np.diff(np.append(lead_starts(lead), len(lead))), axis=0)  # rows x samples
    snapshot = signals.snapshots()
    constant = np.ones(support.shape, dtype=bool)
    for age in np.unique(snapshot):
        at = snapshot == age
        count = drawn[at].T.astype(np.float32) @ present[at].astype(np.float32)  # exact: counts < 2^24
        constant &= (count == 0) | (count == drawn[at].sum(axis=0)[:, None])
    covered = (signals.catalog["type"] == "recency").to_numpy() & decayed
    return (support >= min_support) & ~constant & ~covered


def bootstrap_points(
    signals: SignalSet, closed: np.ndarray, evidence: pd.DataFrame, points_to_double_odds: float, c: float,
    seed: int, samples: int, decayed: bool = False, min_support: int = 30, start: LogisticFit | None = None,
) -> pd.DataFrame:
    """Points refitted on `samples` resamples (with replacement) of the leads, each drawn with
    all its rows: one column per resample. `start`: the fit on all the leads, where each refit's
    solver starts (required).

    A lead drawn k times enters its refit once with weight k: the same likelihood, support and
    centring as k copies of its rows (tests/test_scorecard.py), and all refits share each pass
    over the rows (pipeline.core.logistic.fit_newton_many). `evidence` is unused: a refit keeps
    only its points."""
    closed = np.asarray(closed, dtype=int)
    lead, snapshot, columns = signals.leads(), signals.snapshots(), signals.matrix.columns
    counts = _resample_counts(np.random.default_rng(seed), lead, samples)
    weights = np.repeat(counts, np.diff(np.append(lead_starts(lead), len(lead))), axis=0).astype(float)
    usable = _usable_in_resamples(signals, counts, min_support, decayed)
    customers, rows = closed @ weights, weights.sum(axis=0)
    fitted = [j for j in range(samples) if 0 < customers[j] < rows[j] and usable[j].any()]
    if not fitted:
        return pd.DataFrame(index=columns)
    union = usable[fitted].any(axis=0)
    ages = [int(a) for a in np.unique(snapshot)]
    theta = _start_parameters(start, list(columns[union]), ages)
    mask = np.hstack([usable[fitted][:, union], np.ones((len(fitted), len(ages) - 1), dtype=bool)])
    thetas = fit_newton_many(logistic_design(signals.matrix.to_numpy(), snapshot, union), closed,
                             weights[:, fitted], c, mask, theta)
    fit_names, per_lead = _fit_values_per_lead(signals)
    per_lead = per_lead.astype(float)
    scale = points_to_double_odds / math.log(2)
    runs = {}
    for position, j in enumerate(fitted):
        coefficient = pd.Series(0.0, index=columns)
        coefficient[columns[union]] = thetas[:int(union.sum()), position]
        prevalence = pd.Series(counts[:, j] @ per_lead / counts[:, j].sum(), index=fit_names)
        coefficient, _ = _centred(coefficient, 0.0, signals, prevalence)
        runs[f"sample_{j}"] = np.round(coefficient.to_numpy() * scale).astype(int)
    return pd.DataFrame(runs, index=columns)


def score_leads(matrix: pd.DataFrame, weights: pd.DataFrame, caps: dict[str, float] | None = None,
                numeric: Iterable[str] = ()) -> pd.DataFrame:
    """fit_points, engagement_points and total_points per lead from a points table.

    `matrix` holds 0/1 signals, or decayed values for activities (decay_matrix). A cap
    limits what a group can add: keys are an attribute (an activity with its frequency
    signals, a fit attribute) or 'fit' / 'engagement'. Each score is rounded to whole
    points. A signal of the table that the leads do not have as a column counts as absent.
    """
    table = weights.set_index("signal")
    scores = _scores(_ScoringLayout(matrix, table, numeric), table["points"].to_numpy(dtype=float)[:, None], caps)
    scores = {name: values[:, 0] for name, values in scores.items()}
    scores["total_points"] = scores["fit_points"] + scores["engagement_points"]
    return pd.DataFrame(scores, index=matrix.index)


def total_points_many(matrix: pd.DataFrame, weights: pd.DataFrame, points: np.ndarray,
                      caps: dict[str, float] | None = None, numeric: Iterable[str] = ()) -> np.ndarray:
    """rows x k: the total_points score_leads gives each row of `matrix` under the table `weights`
    with each column of `points` (signals x k, e.g. the bootstrap's tables) as its points, to the
    last bit: the same products and additions, run for all k tables at once on blocks of rows
    (the held-out leads' scores under 30 tables were 30 passes of score_leads, a third of the
    weights stage at a million leads). The table's other columns (kind, attribute, status) are
    shared by every k."""
    table = weights.set_index("signal")
    scores = _scores(_ScoringLayout(matrix, table, numeric), np.asarray(points, dtype=float), caps)
    return scores["fit_points"] + scores["engagement_points"]


class _ScoringLayout:
    """What scoring a matrix with a table needs apart from the points: the matrix's values in the
    table's signal order (a signal it lacks as 0), then one 0/1 column per "any other value" rule
    (`_other_values`), each column's table row (whose points it gets), each group's columns in
    score_leads' order of addition, and which columns hold whole numbers only (`_exact_groups`)."""

    def __init__(self, matrix: pd.DataFrame, table: pd.DataFrame, numeric: Iterable[str]) -> None:
        frame = matrix.reindex(columns=table.index, fill_value=0)
        others = _other_values(matrix, table, numeric)
        values = frame.to_numpy(dtype=float)
        self.values = np.column_stack([values] + [unlisted for unlisted, _ in others.values()]) if others else values
        self.sources = np.array(list(range(len(table))) + [position for _, position in others.values()], dtype=int)
        # NumPy integer columns (the 0/1 signals) are whole; a float one (decayed) only if every value
        # is (NaN never is; an infinite value fails the bound of _exact_groups)
        self.whole = np.array([isinstance(dtype, np.dtype) and dtype.kind in "iub" for dtype in frame.dtypes]
                              + [True] * len(others))
        for j in np.flatnonzero(~self.whole):
            self.whole[j] = bool(np.all(self.values[:, j] == np.round(self.values[:, j])))
        self.largest = np.maximum(self.values.max(axis=0, initial=0.0), -self.values.min(axis=0, initial=0.0))
        kinds = list(table["kind"]) + ["fit"] * len(others)
        attributes = list(table["attribute"]) + [name.split(" = ")[0] for name in others]
        self.groups: dict[str, dict[str, list[int]]] = {"fit": {}, "engagement": {}}
        for j, (kind, attribute) in enumerate(zip(kinds, attributes)):
            if kind in self.groups:
                self.groups[kind].setdefault(attribute, []).append(j)
        self.groups = {kind: dict(sorted(grouped.items())) for kind, grouped in self.groups.items()}


def _exact_groups(layout: _ScoringLayout, points: np.ndarray) -> set[tuple[str, str]]:
    """The (kind, attribute) groups whose sums are exact in floating point under `points`: whole
    values times whole points, no partial sum beyond 2^53. Every order of addition gives the same
    bits there, so a matrix product can replace `_group_sum`'s compensated loop (the 0/1 fit values
    always; undecayed activities too)."""
    table_points = points[layout.sources]
    whole_points = np.all(table_points == np.round(table_points), axis=1)
    bound = layout.largest * np.abs(table_points).max(axis=1, initial=0.0)
    return {(kind, name) for kind, grouped in layout.groups.items() for name, members in grouped.items()
            if layout.whole[members].all() and whole_points[members].all() and bound[members].sum() < 2.0 ** 53}


SCORE_BLOCK_ROWS = 1 << 14  # rows per block: a block's (rows x tables) temporaries stay in cache


def _scores(layout: _ScoringLayout, points: np.ndarray, caps: dict[str, float] | None) -> dict[str, np.ndarray]:
    """fit_points and engagement_points (rows x k, int64) under each column of `points`, block by
    block of rows: every element sees the arithmetic score_leads always did (a signal's value times
    its points, each group summed by `_group_sum` in column order, groups added in name order, caps,
    rounding), so a block, or k tables at once, changes no bit. A group of whole numbers
    (`_exact_groups`) is summed by a matrix product: exact, so the same bits, at a tenth of the cost."""
    caps = caps or {}
    n, k = len(layout.values), points.shape[1]
    exact = _exact_groups(layout, points)
    out = {f"{kind}_points": np.empty((n, k), dtype=np.int64) for kind in ("fit", "engagement")}
    for begin in range(0, n, SCORE_BLOCK_ROWS):
        values = layout.values[begin:begin + SCORE_BLOCK_ROWS]
        rows = len(values)
        for kind in ("fit", "engagement"):
            total = np.zeros((rows, k))
            for name, members in layout.groups[kind].items():
                if (kind, name) in exact:
                    grouped = values[:, members] @ points[layout.sources[members]]
                else:
                    grouped = _group_sum([values[:, j, None] * points[layout.sources[j]] for j in members], (rows, k))
                if name in caps:
                    grouped = np.minimum(grouped, caps[name])
                total = total + grouped  # attribute by attribute, in name order
            if kind in caps:
                total = np.minimum(total, caps[kind])
            out[f"{kind}_points"][begin:begin + SCORE_BLOCK_ROWS] = np.round(total).astype(np.int64)
    return out


def _group_sum(columns: list[np.ndarray], shape: int | tuple[int, ...]) -> np.ndarray:
    """The sum of an attribute's contribution columns, row by row, with the arithmetic pandas'
    groupby sum does (compensated, Kahan, summation in column order, missing values skipped):
    score_leads once summed with `frame.T.groupby(attribute).sum()`, and the same additions in
    the same order keep every score the same to the last bit, at a tenth of the cost."""
    total, compensation = np.zeros(shape), np.zeros(shape)
    for column in columns:
        present = ~np.isnan(column)
        y = column - compensation
        t = total + y
        fresh = (t - total) - y
        fresh[np.isnan(fresh)] = 0.0
        if present.all():
            total, compensation = t, fresh
        else:
            total, compensation = np.where(present, t, total), np.where(present, fresh, compensation)
    return total


def _other_values(matrix: pd.DataFrame, table: pd.DataFrame, numeric: Iterable[str]) -> dict[str, tuple[np.ndarray, int]]:
    """The "any other value" rule of each fit attribute that has too-rare values: the leads whose
    value the table does not list (one never seen in training) get the points of the attribute's
    first rare value (its row in `table`), scored like the rare ones, as the model does
    (coefficient 0) and as the CRM exports' "any other value" rule does. An empty value
    ('unknown') is not another value, nor is a band of a `numeric` attribute (its rule is its range)."""
    if "status" not in table.columns:
        return {}
    rare = (table["type"] == "fit") & (table["status"] == STATUS_LOW_SUPPORT_FIT) & (table["value"] != UNKNOWN_VALUE) & \
        ~table["attribute"].isin(list(numeric))
    out = {}
    for attribute in sorted(set(table.loc[rare, "attribute"])):
        listed = [s for s in table.index[(table["type"] == "fit") & (table["attribute"] == attribute)] if s in matrix.columns]
        known = matrix[listed].to_numpy(dtype=float).sum(axis=1) if listed else np.zeros(len(matrix))
        empty = f"{attribute} = {UNKNOWN_VALUE}"
        if empty in matrix.columns and empty not in table.index:
            known = known + matrix[empty].to_numpy(dtype=float)
        first = int(np.flatnonzero((rare & (table["attribute"] == attribute)).to_numpy())[0])
        out[f"{attribute} = (not in the table)"] = (~(known > 0), first)
    return out


def score_features(features: pd.DataFrame, signals: SignalSet, weights: pd.DataFrame, header: dict) -> pd.DataFrame:
    """Score leads with a published table: its decay and caps included (header from weights.json)."""
    decayed = decay_matrix(signals, features, header.get("half_life_days"))
    return score_leads(decayed.matrix, weights, header.get("caps"), header.get("numeric_attributes") or ())


def points_probability(total_points: np.ndarray, header: dict, snapshot: np.ndarray | None = None) -> np.ndarray:
    """P(close) implied by a points total (the scorecard's own calibration), at each row's snapshot."""
    log_odds = header["base_log_odds"] + np.asarray(total_points, dtype=float) * math.log(2) / header["points_to_double_odds"]
    offsets = header.get("snapshot_log_odds") or {}
    if snapshot is not None and offsets:
        ages = np.array(sorted(int(a) for a in offsets))
        shift = np.array([offsets[str(a)] for a in ages])
        log_odds = log_odds + shift[np.searchsorted(ages, snapshot_stratum(np.asarray(snapshot), list(ages)))]
    return 1.0 / (1.0 + np.exp(-log_odds))


class PointsScorecard:
    """A points table, fitted scikit-learn style: set the method's settings, `fit` on the
    training leads, then `score`, `probability` and `bootstrap`.

    `table_` (one row per signal: points, coefficient, status, evidence) and `header_` (base
    log-odds, snapshot baselines, half-life, caps) are what models/weights.json holds; a
    published table comes back with `from_published`. The functions above are the method
    itself; this object carries the settings between them, so the weights stage, the train
    stage's refits per fold, the thresholds stage and `leadcal score` fit and score alike.
    """

    def __init__(self, points_to_double_odds: float = 20.0, regularization_c: float = 1.0, seed: int = 0,
                 min_support: int = 30, half_life_days: float | None = None,
                 caps: Mapping[str, float] | None = None, numeric_attributes: Iterable[str] = ()) -> None:
        self.points_to_double_odds = points_to_double_odds
        self.regularization_c = regularization_c
        self.seed = seed
        self.min_support = min_support
        self.half_life_days = half_life_days
        self.caps = dict(caps or {})
        self.numeric_attributes = sorted(numeric_attributes)

    @classmethod
    def from_published(cls, table: pd.DataFrame, header: Mapping[str, object]) -> PointsScorecard:
        """The scorecard a weights.json describes (its table and header), ready to score and to
        turn totals into probabilities. The fitting settings (regularization, seed, minimum
        support) are not in the file: refit a published table with a new, configured scorecard."""
        card = cls(header.get("points_to_double_odds"), half_life_days=header.get("half_life_days"),
                   caps=header.get("caps"), numeric_attributes=header.get("numeric_attributes") or ())
        card.table_, card.header_ = table, dict(header)
        return card

    def decay(self, signals: SignalSet, features: pd.DataFrame) -> SignalSet:
        """The signals with each activity's value decayed by its age (none without a half-life)."""
        return decay_matrix(signals, features, self.half_life_days)

    def fit(self, decayed: SignalSet, closed: np.ndarray, evidence: pd.DataFrame,
            start: PointsScorecard | None = None) -> PointsScorecard:
        """Fit the points on the training leads' `decayed` signals (`decay`) and outcomes;
        `evidence`: the close-rate table, joined to each row. `start`: a scorecard fitted in this
        process on nearly the same leads (the previous validation fold's), where the solver starts."""
        table, header = fit_points(decayed, closed, evidence, self.points_to_double_odds, self.regularization_c,
                                   self.seed, self.half_life_days is not None, self.min_support,
                                   None if start is None else start.table_.attrs.get("fit"))
        header.update({"half_life_days": self.half_life_days, "caps": dict(self.caps),
                       "numeric_attributes": list(self.numeric_attributes)})
        self.table_, self.header_ = table, header
        return self

    def bootstrap(self, decayed: SignalSet, closed: np.ndarray, evidence: pd.DataFrame, samples: int) -> pd.DataFrame:
        """The points refitted on `samples` resamples of the leads (one column each), each refit
        starting from this fit."""
        return bootstrap_points(decayed, closed, evidence, self.points_to_double_odds, self.regularization_c,
                                self.seed, samples, self.half_life_days is not None, self.min_support,
                                self.table_.attrs["fit"])

    def with_points(self, points: np.ndarray) -> PointsScorecard:
        """The same scorecard with other points per signal (a bootstrap refit's), to score with."""
        return PointsScorecard.from_published(self.table_.assign(points=np.asarray(points)), self.header_)

    def score(self, signals: SignalSet, features: pd.DataFrame) -> pd.DataFrame:
        """fit_points, engagement_points and total_points of each row, decay and caps included."""
        return score_features(features, signals, self.table_, self.header_)

    def score_decayed_many(self, matrix: pd.DataFrame, points: np.ndarray) -> np.ndarray:
        """rows x k: each row's total_points, from signals already decayed (`decay`), under this
        scorecard with each column of `points` (signals x k, e.g. its own points and the
        bootstrap's) as its points, caps included: one set of leads scored with several tables,
        neither decayed again nor passed over once per table (total_points_many)."""
        return total_points_many(matrix, self.table_, points, self.caps, self.numeric_attributes)

    def probability(self, total_points: np.ndarray, snapshot: np.ndarray | None = None) -> np.ndarray:
        """P(close) implied by a points total, at each row's snapshot."""
        return points_probability(total_points, self.header_, snapshot)


def rank_stability(scores: np.ndarray, bootstrap_scores: list[np.ndarray]) -> dict[str, float | None]:
    """How the published ranking of leads agrees with the bootstrap tables' rankings (Spearman).

    Spearman's rho as scipy's spearmanr computes it (the correlation matrix of the two columns of
    ranks), with the published scores ranked once, not once per table as spearmanr(scores, other)
    did: the same numbers, half the sorting."""
    if np.std(scores) == 0:
        return {"median": None, "min": None}
    ranks = rankdata(scores)
    rhos = [np.corrcoef(np.column_stack([ranks, rankdata(other)]), rowvar=False)[1, 0]
            for other in bootstrap_scores if np.std(other) > 0]
    if not rhos:
        return {"median": None, "min": None}
    return {"median": float(np.median(rhos)), "min": float(np.min(rhos))}


def half_life(
    signals: SignalSet, features: pd.DataFrame, closed: np.ndarray, *, decay: bool, fixed_days: float | None,
    min_support: int, regularization_c: float, seed: int,
) -> dict[str, object]:
    """The half-life to use: days (None: no decay), where it came from, its interval and profile.

    Estimated on the training leads' rows at one snapshot (`estimation_snapshot`: the last,
    day 30, unless it holds too few customers): one row per lead, so the likelihood interval is
    honest, each lead with its whole window of activity, so ages spread over the window. A lead seen at day 7 and again at day 30 would otherwise count
    twice, and the early rows, whose outcome lies weeks ahead, say little about how fast
    interest fades before a decision.
    """
    if not decay:
        return {"days": None, "source": "decay off (params weights.decay)"}
    if fixed_days is not None:
        return {"days": fixed_days, "source": "params weights.half_life_days"}
    if not usable_signals(signals, min_support)[0].any():
        raise LeadcalError("cannot fit points: every signal is below the minimum support or the same for every lead")
    at = estimation_snapshot(signals.snapshots(), closed, min_support)
    rows = signals.snapshots() == at
    signals, features, closed = signals.take(rows), features[rows], closed[rows]
    if closed.sum() in (0, len(closed)):
        return {"days": None, "source": f"not identifiable: the leads seen at day {at} are all "
                                        f"{'lost' if closed.sum() == 0 else 'won'}; no decay"}
    usable = usable_signals(signals, min_support)[0]
    if not (usable & (signals.catalog["type"] == "activity").to_numpy()).any():
        return {"days": None, "source": f"not identifiable: among the leads seen at day {at} no activity tells "
                                        "leads apart (done by every lead, or by too few), so the data cannot tell how "
                                        "fast interest fades; no decay"}
    activity = usable & (signals.catalog["type"] == "activity").to_numpy()
    ages = features[[AGE_PREFIX + a for a in signals.catalog.loc[activity, "signal"]]].to_numpy(dtype=float)
    if not (np.nan_to_num(np.nanmax(ages, axis=0, initial=-np.inf) - np.nanmin(ages, axis=0, initial=np.inf))
            >= 1.0).any():
        return {"days": None, "source": f"not identifiable: among the leads seen at day {at} every "
                                        "activity is the same age (logged at creation, say), so the data cannot "
                                        "tell how fast interest fades; no decay"}
    bounds = (1.0, 365.0)
    days, interval, profile = estimate_half_life(signals, features, closed, usable, regularization_c, seed,
                                                 bounds)
    likelihoods = [row["log_likelihood"] for row in profile]
    if max(likelihoods) - min(likelihoods) < 1e-6 or (interval[0] <= bounds[0] and interval[1] >= bounds[1]):
        return {"days": None, "profile": profile,
                "source": "not identifiable: the timing of the activities cannot tell how fast interest fades "
                          f"(every half-life from {bounds[0]:g} to {bounds[1]:g} days fits as well); no decay"}
    if days >= 0.99 * bounds[1]:
        return {"days": None, "profile": profile, "interval_95": list(interval),
                "source": f"interest does not measurably fade: the best half-life is the longest tried ({bounds[1]:g} "
                          "days); no decay"}
    return {"days": days, "source": f"estimated from the training leads seen at day {at} (profile likelihood)",
            "interval_95": list(interval), "profile": profile}
