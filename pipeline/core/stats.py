"""Pure statistical functions: arrays in, numbers or arrays out, no I/O.

Kept separate so each can be checked against hand-computed cases and reused on any engine.
"""

from __future__ import annotations

import numpy as np
from scipy.special import (
    ndtri,  # the normal quantile (what scipy.stats.norm.ppf calls), without scipy.stats' import cost
)


def wilson_interval(customers: np.ndarray, leads: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion customers / leads.

    Chosen over the textbook normal interval because close rates are small (1-5 %)
    and signals can be rare: Wilson stays inside [0, 1] and does not collapse to
    zero width when no lead closed.

        z = Phi^-1(1 - (1 - confidence) / 2),  p = k / n
        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    Where n = 0 the interval is [0, 1]: nothing is known.
    """
    k = np.asarray(customers, dtype=float)
    n = np.asarray(leads, dtype=float)
    z = ndtri(1 - (1 - confidence) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, k / n, 0.0)
        denominator = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denominator
        half = z / denominator * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    # Rounding can leave the bound a hair past the rate when k = 0 or k = n (1e-17 instead of 0).
    low = np.where(n > 0, np.clip(np.minimum(centre - half, p), 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(np.maximum(centre + half, p), 0.0, 1.0), 1.0)
    return low, high


def top_fraction_lift(y: np.ndarray, score: np.ndarray, fraction: float = 0.1,
                      strata: np.ndarray | None = None) -> tuple[float, float]:
    """Close-rate lift and capture rate of the top `fraction` of leads by score.

    Ties at the boundary are shared pro rata, so an integer points score with many
    equal values gets the expected value over every ordering of the ties, not a
    number that depends on the row order. With `strata`, the top fraction of each
    stratum (see `cumulative_gain`).

    Returns (lift, capture): close rate in the top fraction / overall close rate, and
    the share of all customers found there.
    """
    capture = float(cumulative_gain(y, score, np.array([fraction]), strata)[0])
    return capture / fraction, capture


def expected_calibration_error(y: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """ECE: the lead-weighted average gap |mean predicted - observed rate| over equal-count bins.

    0.01 means predictions are off by one percentage point on average: "20 %" means 19-21 %.
    """
    rows = calibration_table(y, probability, bins)
    total = sum(row["leads"] for row in rows)
    return float(sum(row["leads"] * abs(row["predicted"] - row["observed"]) for row in rows) / total) if total else float("nan")


def _within_strata(metric, weight, y: np.ndarray, score: np.ndarray, strata: np.ndarray | None) -> float:  # noqa: ANN001
    """`metric(y, score)` in each stratum holding both outcomes, averaged with `weight(customers, others)`."""
    y, score = np.asarray(y, dtype=int), np.asarray(score, dtype=float)
    strata = np.zeros(len(y), dtype=np.int64) if strata is None else np.asarray(strata)
    total, weights = 0.0, 0.0
    for stratum in np.unique(strata):
        inside = strata == stratum
        customers = int(y[inside].sum())
        others = int(inside.sum()) - customers
        if customers and others:
            total += metric(y[inside], score[inside]) * weight(customers, others)
            weights += weight(customers, others)
    return total / weights if weights else float("nan")


def stratified_auc(y: np.ndarray, score: np.ndarray, strata: np.ndarray | None = None) -> float:
    """The chance that a customer scores above a non-customer of the same stratum (ties count half).

    Leads are seen at several ages (snapshots); who to call first is decided among leads
    seen at the same moment, so only pairs within a stratum are compared: each stratum's AUC
    weighted by its pairs. Equals the usual ROC AUC with one stratum. NaN when no stratum
    holds both outcomes.
    """
    from sklearn.metrics import roc_auc_score

    return _within_strata(roc_auc_score, lambda customers, others: customers * others, y, score, strata)


def stratified_average_precision(y: np.ndarray, score: np.ndarray, strata: np.ndarray | None = None) -> float:
    """PR-AUC (average precision) within each stratum, averaged with the strata's customers as weights."""
    from sklearn.metrics import average_precision_score

    return _within_strata(average_precision_score, lambda customers, others: customers, y, score, strata)


def classification_metrics(y: np.ndarray, probability: np.ndarray, score: np.ndarray | None = None,
                           strata: np.ndarray | None = None) -> dict[str, float]:
    """AUC, PR-AUC, Brier, log loss, ECE and top-decile lift/capture for one scorer on one period.

    `score` ranks the leads (defaults to the probability); Brier and log loss judge the
    probabilities themselves, so they also show whether "20 %" means 20 %. `strata` (each
    row's snapshot): the ranking measures compare leads seen at the same moment; the
    probability measures pool every row, since "20 %" must mean 20 % at every moment.
    """
    # imported here: scikit-learn takes 0.7 s to load, and the close-rate and funnel stages never score a model
    from sklearn.metrics import brier_score_loss, log_loss

    y = np.asarray(y, dtype=int)
    probability = np.clip(np.asarray(probability, dtype=float), 1e-9, 1 - 1e-9)
    score = probability if score is None else np.asarray(score, dtype=float)
    lift, capture = top_fraction_lift(y, score, 0.1, strata)
    return {
        "auc": stratified_auc(y, score, strata),
        "pr_auc": stratified_average_precision(y, score, strata),
        "ece": expected_calibration_error(y, probability),
        "brier": float(brier_score_loss(y, probability)),
        "log_loss": float(log_loss(y, probability, labels=[0, 1])),
        "top_decile_lift": lift,
        "top_decile_capture": capture,
        "mean_predicted": float(probability.mean()),
        "observed_rate": float(y.mean()),
    }


def calibration_table(y: np.ndarray, probability: np.ndarray, bins: int = 10,
                      groups: np.ndarray | None = None) -> list[dict[str, float]]:
    """Observed close rate against mean predicted probability in equal-count bins.

    `leads` counts the rows of a bin. With `groups` (each row's lead), `distinct_leads` counts the
    leads behind them: a lead seen at several ages has the same outcome in each of its rows, so
    an interval for the bin's close rate must take the leads, not the rows, as its n.
    """
    y = np.asarray(y, dtype=float)
    probability = np.asarray(probability, dtype=float)
    order = np.argsort(probability, kind="stable")
    rows = []
    for index, chunk in enumerate(np.array_split(order, bins)):
        if len(chunk) == 0:
            continue
        row = {
            "bin": index + 1,
            "leads": int(len(chunk)),
            "predicted": float(probability[chunk].mean()),
            "observed": float(y[chunk].mean()),
        }
        if groups is not None:
            row["distinct_leads"] = int(len(np.unique(np.asarray(groups)[chunk])))
        rows.append(row)
    return rows


def cumulative_gain(y: np.ndarray, score: np.ndarray, shares: np.ndarray, strata: np.ndarray | None = None) -> np.ndarray:
    """Share of all customers found in the top `shares` of leads ranked by `score` (highest first).

    Leads with the same score cannot be told apart, so a cut inside a tie takes that
    group's customers in proportion (the expected gain under random tie-breaking). A
    points table has many ties; counting them in file order would flatter or punish it
    by chance. With `strata` (each row's snapshot), the top share of every stratum is
    taken: leads are ranked against those seen at the same moment.
    """
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    if len(y) == 0 or y.sum() == 0:
        return np.full(len(shares), np.nan)
    if strata is not None and len(np.unique(strata)) > 1:
        strata = np.asarray(strata)
        found = np.zeros(len(shares))
        for stratum in np.unique(strata):
            inside = strata == stratum
            if y[inside].sum() > 0:
                found += cumulative_gain(y[inside], score[inside], shares) * y[inside].sum()
        return found / y.sum()
    values, inverse = np.unique(-score, return_inverse=True)  # groups from the highest score down
    leads = np.bincount(inverse, minlength=len(values)).astype(float)
    customers = np.bincount(inverse, weights=y, minlength=len(values))
    lead_edges = np.concatenate([[0.0], np.cumsum(leads)]) / len(y)
    customer_edges = np.concatenate([[0.0], np.cumsum(customers)]) / y.sum()
    return np.interp(np.asarray(shares, dtype=float), lead_edges, customer_edges)


def gain_table(y: np.ndarray, scores: dict[str, np.ndarray], steps: int = 20,
               strata: np.ndarray | None = None) -> list[dict[str, float]]:
    """Cumulative gain of several scorers at `steps` equal shares of leads, with the random baseline."""
    shares = np.linspace(0.0, 1.0, steps + 1)
    gains = {name: cumulative_gain(y, score, shares, strata) for name, score in scores.items()}
    return [{"share_of_leads": float(share), **{name: float(gain[i]) for name, gain in gains.items()},
             "random": float(share)} for i, share in enumerate(shares)]


def beta_binomial_strength(customers: np.ndarray, leads: np.ndarray, average: float | np.ndarray) -> float:
    """Empirical-Bayes prior strength m for shrinking close rates towards the average.

    Each signal's true close rate is taken to come from a Beta prior with mean the
    average close rate p (one for all signals, or each signal's own expected rate) and
    strength m (alpha = m p, beta = m (1 - p)); m is the value
    that makes the observed (customers, leads) of all signals most likely under the
    beta-binomial model:

        m = argmax  sum_i [ ln B(k_i + m p, n_i - k_i + m (1 - p)) - ln B(m p, m (1 - p)) ]

    A large m means signals differ little from the average (strong shrinkage); a small
    m means their differences are real (weak shrinkage). Bounded to [1, 1e6] leads.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import betaln

    k = np.asarray(customers, dtype=float)
    n = np.asarray(leads, dtype=float)
    p = np.broadcast_to(np.asarray(average, dtype=float), k.shape)
    keep = (n > 0) & (p > 0) & (p < 1)
    k, n, p = k[keep], n[keep], p[keep]
    if len(n) < 2:
        return float("inf")

    def negative_log_likelihood(log_m: float) -> float:
        m = np.exp(log_m)
        a, b = m * p, m * (1 - p)
        return -float(np.sum(betaln(k + a, n - k + b) - betaln(a, b)))

    best = minimize_scalar(negative_log_likelihood, bounds=(0.0, np.log(1e6)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x))


def shrink_close_rate(customers: np.ndarray, leads: np.ndarray, average: float | np.ndarray, strength: float) -> np.ndarray:
    """Posterior mean close rate: (k + m p) / (n + m).

    A signal seen in 2 leads moves almost all the way to the average; one seen in
    10,000 leads keeps its own rate. With m = inf every signal is the average.
    """
    k = np.asarray(customers, dtype=float)
    n = np.asarray(leads, dtype=float)
    average = np.broadcast_to(np.asarray(average, dtype=float), k.shape)
    if not np.isfinite(strength):
        return average.copy()
    return (k + strength * average) / (n + strength)
