"""The MQL threshold, chosen by a policy marketing and sales agree on, and the fit x interest matrix.

Every policy is computed on the training cohorts and reported side by side in
models/thresholds.json; `thresholds.policy` picks the published one.

A CRM makes a lead an MQL the first time its score reaches the threshold. Leads are seen at
several snapshots while open (pipeline.stages.features), so each lead is judged by its *peak*: its
highest total at any snapshot before its outcome. "Leads scoring t or more" below means leads
whose peak reaches t, and every count is a count of leads, once each. The matrix places each
lead at its peak row.

The policies:

- close_rate_multiple: the lowest total score t such that the leads scoring t or more close
  at `mql_lift` times the average close rate (lowest: among thresholds that keep MQLs that
  good, it sends sales the most leads). When the data cannot reach that multiple (3 x a 38.5 %
  average asks for 115 %), the multiple is capped and the file says so (`mql_lift_used`);
- sales_capacity: the lowest t whose MQLs fit in `capacity_per_week` at the historical flow;
- target_precision: the lowest t whose MQLs close at `target_precision` or more;
- target_recall: the highest t whose MQLs still hold `target_recall` of the customers;
- cost_benefit: the t that maximises customers x deal value - MQLs x cost of a sales touch
  (the deal value: thresholds.deal_value, else the median amount of the customer stages).

A policy that finds no threshold says why (`note`). When the policy set in params finds none,
the published threshold is the first policy of FALLBACK_ORDER that finds one, named in the file
(`policy`, `fallback`) and in the log; when none does, the threshold is null and the publish
stage rejects the run. A null threshold is never published.

Each comes with its expected MQLs per week, their close rate, the share of customers they
hold, a 95 % bootstrap interval for each (the training leads resampled), and what it does on
the held-out cohorts. Every threshold must leave at least `min_mql_leads` training leads.

The matrix places leads by fit score and engagement score. Each axis is cut where it best
separates customers from the rest (the largest G statistic, as for frequency signals), giving
four quadrants with an action each; the CRMs' A-D (fit) x 1-4 (engagement) grades cut each
axis at its quartiles.

This module is the method, on arrays with explicit settings; the thresholds stage
(pipeline.stages.thresholds) reads the scores, calls it and writes models/thresholds.json.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.crm_scoring import TARGETS, crm_scores, grade_label, points_per_third, scoring_for
from pipeline.core.frequency import best_split
from pipeline.core.signals import SignalSet, lead_starts
from pipeline.params import Thresholds


def peak_rows(total_points: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """Position of each lead's peak row: its highest total (the first such row, if tied).

    Rows of a lead are consecutive (pipeline.stages.features), one position per lead, in lead order.
    """
    total_points = np.asarray(total_points)
    starts = lead_starts(lead)
    if len(starts) == 0:
        return starts
    lengths = np.diff(np.append(starts, len(total_points)))
    highest = np.repeat(np.maximum.reduceat(total_points, starts), lengths)
    positions = np.where(total_points == highest, np.arange(len(total_points)), len(total_points))
    return np.minimum.reduceat(positions, starts)


def threshold_curve(total_points: np.ndarray, closed: np.ndarray) -> pd.DataFrame:
    """For every candidate score t: leads and customers at or above t, their close rate and lift."""
    total_points = np.asarray(total_points)
    closed = np.asarray(closed, dtype=int)
    frame = pd.DataFrame({"score": total_points, "closed": closed})
    per_score = frame.groupby("score")["closed"].agg(leads="size", customers="sum").sort_index(ascending=False)
    curve = per_score.cumsum().rename(columns={"leads": "leads_at_or_above", "customers": "customers_at_or_above"})
    curve = curve.sort_index().reset_index()
    average = closed.mean() if len(closed) else 0.0
    curve["share_at_or_above"] = curve["leads_at_or_above"] / len(closed)
    curve["close_rate_at_or_above"] = curve["customers_at_or_above"] / curve["leads_at_or_above"]
    curve["lift_at_or_above"] = curve["close_rate_at_or_above"] / average if average > 0 else 0.0
    curve["customers_captured"] = curve["customers_at_or_above"] / closed.sum() if closed.sum() else 0.0
    return curve


def score_distribution(total_points: np.ndarray, closed: np.ndarray) -> pd.DataFrame:
    """Leads per points total, customers and the others side by side (one row per score)."""
    frame = pd.DataFrame({"total_points": np.asarray(total_points), "closed": np.asarray(closed, dtype=int)})
    counts = frame.groupby("total_points")["closed"].agg(customers="sum", leads="size")
    counts["other_leads"] = counts["leads"] - counts["customers"]
    return counts[["customers", "other_leads"]].reset_index()


def choose_threshold(curve: pd.DataFrame, mql_lift: float, min_leads: int) -> int | None:
    """Lowest score whose leads at or above it reach `mql_lift` x average; None if no score does."""
    passing = curve[(curve["lift_at_or_above"] >= mql_lift) & (curve["leads_at_or_above"] >= min_leads)]
    if passing.empty:
        return None
    return int(passing["score"].min())


POLICIES = ("close_rate_multiple", "sales_capacity", "target_precision", "target_recall", "cost_benefit")

# When the policy set in params finds no threshold, the first of these that finds one is published.
# Relative quality first: the capped close-rate multiple adapts to the data's own average, so it
# means the same on any export (MQLs close clearly better than the average lead). Then what sales
# can absorb, then the share of customers kept. Last, the rules whose settings are absolute and
# least likely to fit an unknown export: an 8 % target precision makes every lead an MQL at a 38 %
# average, and cost_benefit needs a deal value.
FALLBACK_ORDER = ("close_rate_multiple", "sales_capacity", "target_recall", "target_precision", "cost_benefit")


def _average(curve: pd.DataFrame) -> float:
    """The average close rate of the leads of a threshold curve (its lowest score holds them all)."""
    lowest = curve.loc[curve["score"].idxmin()] if len(curve) else None
    return float(lowest["customers_at_or_above"] / lowest["leads_at_or_above"]) if lowest is not None else 0.0


def mql_lift_used(curve: pd.DataFrame, mql_lift: float, min_leads: int) -> tuple[float | None, str | None]:
    """The close-rate multiple close_rate_multiple asks for on these leads, and why it is not `mql_lift`.

    `mql_lift` itself when some threshold leaving `min_leads` leads reaches it. When none can,
    because the multiple asks for a close rate of 100 % or more (3 x a 38.5 % average is 115 %)
    or above the best close rate any such threshold reaches, the multiple is capped halfway
    between 1 and the best multiple reached: MQLs must close halfway between the average lead and
    the best group of at least `min_leads` leads. Why halfway rather than the best itself:

    - it is always reachable (the threshold of the best group passes), so the policy still
      gives a threshold, and it still asks MQLs to close clearly better than the average lead;
    - the best multiple is usually reached by the smallest group allowed (`min_leads` leads at
      the very top), the noisiest estimate and too few MQLs for sales; halfway between the
      average and 100 % (the other obvious cap) is often not reachable either.

    Returns (None, reason) when no threshold leaving `min_leads` leads closes above the average:
    the scores do not separate customers and there is no multiple to ask for. The second item is
    None when `mql_lift` is used as set.
    """
    average = _average(curve)
    eligible = curve[curve["leads_at_or_above"] >= min_leads]
    if eligible.empty:
        return None, f"fewer than {min_leads} leads in all (thresholds.min_mql_leads)"
    best_lift = float(eligible["lift_at_or_above"].max())
    if best_lift >= mql_lift:
        return mql_lift, None
    asked, best = mql_lift * average, best_lift * average
    reaches = f"the best close rate any threshold leaving {min_leads} leads reaches"
    why = (f"{mql_lift:g} x the average close rate ({100 * average:.1f} %) asks for {100 * asked:.1f} %, "
           + (f"a close rate of 100 % or more ({reaches}: {100 * best:.1f} %)" if asked >= 1
              else f"above {reaches} ({100 * best:.1f} %)"))
    if best_lift <= 1 + 1e-9:
        return None, f"{why}, and no such threshold closes above the average: the scores do not separate customers"
    used = (1 + best_lift) / 2
    return used, (f"{why}; capped at {used:.2f} x, halfway between the average and that best close rate "
                  f"(MQLs close at {100 * used * average:.1f} % or more)")


def no_threshold_note(policy: str, curve: pd.DataFrame, settings: Thresholds, weeks: float | None,
                      deal_value: float | None) -> str:
    """Why a policy finds no threshold on these leads, in the words of its setting."""
    if policy == "sales_capacity" and weeks is None:
        return "needs the lead flow per week: a snapshot export has no dates (set another thresholds.policy)"
    eligible = curve[curve["leads_at_or_above"] >= settings.min_mql_leads]
    if eligible.empty:
        return f"fewer than {settings.min_mql_leads} leads in all (thresholds.min_mql_leads)"
    leaving = f"leaving at least {settings.min_mql_leads} leads (thresholds.min_mql_leads)"
    if policy == "sales_capacity":
        return (f"even the highest threshold {leaving} sends {eligible['leads_at_or_above'].min() / weeks:.1f} MQLs "
                f"per week, more than thresholds.capacity_per_week = {settings.capacity_per_week:g}")
    if policy == "target_precision":
        return (f"no threshold {leaving} closes at thresholds.target_precision = {settings.target_precision:.0%} "
                f"(the best closes at {eligible['close_rate_at_or_above'].max():.1%})")
    if policy == "cost_benefit":
        if deal_value is None:
            return ("needs a deal value: set thresholds.deal_value, or give the customer stages an amount "
                    "(the median amount is used); this export has neither")
        return (f"no threshold pays: at every threshold {leaving}, MQLs x {settings.cost_per_touch:g} per sales touch "
                f"cost more than customers x the deal value {deal_value:g}")
    return "no score satisfies this policy on the training leads"


def choose_by_policy(policy: str, curve: pd.DataFrame, settings: Thresholds, weeks: float | None,
                     deal_value: float | None) -> int | None:
    """The threshold a policy picks on a threshold curve (None: no score satisfies it). `weeks`, the span
    the leads arrived over, is None for a snapshot export: then sales_capacity cannot be applied."""
    if policy == "close_rate_multiple":
        return choose_threshold(curve, settings.mql_lift, settings.min_mql_leads)
    eligible = curve[curve["leads_at_or_above"] >= settings.min_mql_leads]
    if policy == "sales_capacity":
        if weeks is None:
            return None
        passing = eligible[eligible["leads_at_or_above"] / weeks <= settings.capacity_per_week]
        return int(passing["score"].min()) if len(passing) else None
    if policy == "target_precision":
        passing = eligible[eligible["close_rate_at_or_above"] >= settings.target_precision]
        return int(passing["score"].min()) if len(passing) else None
    if policy == "target_recall":
        passing = eligible[eligible["customers_captured"] >= settings.target_recall]
        return int(passing["score"].max()) if len(passing) else None
    if policy == "cost_benefit":
        if deal_value is None or eligible.empty:
            return None
        value = eligible["customers_at_or_above"] * deal_value - eligible["leads_at_or_above"] * settings.cost_per_touch
        return int(eligible["score"].to_numpy()[int(np.argmax(value.to_numpy()))]) if value.max() > 0 else None
    raise ValueError(f"unknown policy {policy!r}")


def _weighted_curve(order: np.ndarray, index: np.ndarray, weights: np.ndarray, closed: np.ndarray) -> pd.DataFrame:
    """threshold_curve for leads counted `weights` times (a bootstrap resample), without copying them."""
    leads = np.bincount(index, weights=weights, minlength=len(order))[::-1].cumsum()[::-1]
    customers = np.bincount(index, weights=weights * closed, minlength=len(order))[::-1].cumsum()[::-1]
    total, won = leads[0], customers[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(leads > 0, customers / np.maximum(leads, 1e-12), 0.0)
    return pd.DataFrame({
        "score": order, "leads_at_or_above": leads, "customers_at_or_above": customers,
        "share_at_or_above": leads / total, "close_rate_at_or_above": rate,
        "lift_at_or_above": rate / (won / total) if won else 0.0,
        "customers_captured": customers / won if won else 0.0,
    })


def policy_results(
    scores: np.ndarray, closed: np.ndarray, weeks: float | None, settings: Thresholds, deal_value: float | None,
    seed: int,
) -> dict[str, dict[str, object]]:
    """Every policy's threshold and expected results on these leads, with 95 % bootstrap intervals.

    The intervals resample the leads: the threshold interval re-chooses the threshold on each
    resample; the results' intervals keep the chosen threshold and re-measure what it does.

    close_rate_multiple asks for the multiple `mql_lift_used` finds on these leads (`mql_lift`, or
    its cap when the data cannot reach it), and its entry says which (`mql_lift_used`,
    `capped_because`); its resamples re-choose the threshold for that same multiple. A policy
    without a threshold has a `note` saying why.
    """
    scores, closed = np.asarray(scores), np.asarray(closed, dtype=float)
    order = np.unique(scores)
    index = np.searchsorted(order, scores)
    curve = threshold_curve(scores, closed.astype(int))
    rng = np.random.default_rng(seed)
    resamples = [rng.multinomial(len(scores), np.full(len(scores), 1 / len(scores))).astype(float)
                 for _ in range(settings.bootstrap_samples)]
    lift, lift_note = mql_lift_used(curve, settings.mql_lift, settings.min_mql_leads)
    results: dict[str, dict[str, object]] = {}
    for policy in POLICIES:
        rule = settings
        entry: dict[str, object] = {}
        if policy == "close_rate_multiple":
            rule = settings.model_copy(update={"mql_lift": lift}) if lift is not None else None
            entry.update({"mql_lift_setting": settings.mql_lift, "mql_lift_used": lift,
                          "capped_because": lift_note if lift is not None else None})
        threshold = None if rule is None else choose_by_policy(policy, curve, rule, weeks, deal_value)
        entry = {"threshold": threshold, **entry}
        if threshold is None:
            entry["note"] = lift_note if rule is None else no_threshold_note(policy, curve, settings, weeks, deal_value)
            results[policy] = entry
            continue
        row = curve[curve["score"] == threshold].iloc[0]
        entry.update({
            "mql_per_week": float(row["leads_at_or_above"] / weeks) if weeks else None,
            "mql_share": float(row["share_at_or_above"]),
            "mql_close_rate": float(row["close_rate_at_or_above"]),
            "customers_captured": float(row["customers_captured"]),
        })
        if resamples:
            draws: dict[str, list[float]] = {"threshold": [], "mql_per_week": [], "mql_close_rate": [], "customers_captured": []}
            position = int(np.searchsorted(order, threshold))
            for weights in resamples:
                resampled = _weighted_curve(order, index, weights, closed)
                again = choose_by_policy(policy, resampled, rule, weeks, deal_value)
                if again is not None:
                    draws["threshold"].append(again)
                at = resampled.iloc[position]
                if weeks:
                    draws["mql_per_week"].append(at["leads_at_or_above"] / weeks)
                draws["mql_close_rate"].append(at["close_rate_at_or_above"])
                draws["customers_captured"].append(at["customers_captured"])
            entry["interval_95"] = {k: [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))] if v else None
                                    for k, v in draws.items()}
        results[policy] = entry
    return results


# Which of several candidate rules a policy prefers (Account Engagement: one per grade cut-off):
# the "lowest threshold that satisfies" policies want the most MQLs, target_recall the fewest,
# cost_benefit the most value.
def _preference(policy: str, row: pd.Series, settings: Thresholds, deal_value: float | None) -> tuple[float, ...]:
    if policy == "target_recall":
        return (-float(row["leads_at_or_above"]), float(row["customers_at_or_above"]))
    if policy == "cost_benefit":
        return (float(row["customers_at_or_above"]) * (deal_value or 0.0) - float(row["leads_at_or_above"]) * settings.cost_per_touch,)
    return (float(row["leads_at_or_above"]), float(row["customers_at_or_above"]))


BELOW_EVERY_SCORE = -(10**9)  # the score of a lead whose grade is below the rule's: it never passes


def two_axis_rule(policy: str, grade: np.ndarray, score: np.ndarray, closed: np.ndarray, settings: Thresholds,
                  weeks: float | None, deal_value: float | None) -> tuple[int, int] | None:
    """Account Engagement's MQL rule, grade >= G and score >= S, chosen by `policy` over every G.

    For each grade cut-off the policy picks S on the leads at or above it (the others never
    pass, but still count in the average and the shares); among those rules the policy's own
    preference wins (the most MQLs for the 'lowest threshold that satisfies' policies). None:
    no rule satisfies the policy.
    """
    grade, score, closed = np.asarray(grade), np.asarray(score), np.asarray(closed, dtype=int)
    best: tuple[tuple[float, ...], int, int] | None = None
    for cut in np.unique(grade):
        masked = np.where(grade >= cut, score, BELOW_EVERY_SCORE)
        curve = threshold_curve(masked, closed)
        curve = curve[curve["score"] > BELOW_EVERY_SCORE].reset_index(drop=True)
        chosen = choose_by_policy(policy, curve, settings, weeks, deal_value) if len(curve) else None
        if chosen is None:
            continue
        key = _preference(policy, curve[curve["score"] == chosen].iloc[0], settings, deal_value)
        if best is None or key > best[0]:
            best = (key, int(cut), int(chosen))
    return None if best is None else (best[1], best[2])


def _auc(total: np.ndarray, closed: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    closed = np.asarray(closed, dtype=int)
    return float(roc_auc_score(closed, total)) if 0 < closed.sum() < len(closed) else None


def crm_thresholds(features: pd.DataFrame, signals: SignalSet, table: pd.DataFrame, header: dict,
                   train_mask: np.ndarray, valid_mask: np.ndarray, policy: str, settings: Thresholds,
                   weeks: float | None, deal_value: float | None, leadcal_threshold: int | None) -> dict[str, object]:
    """Each CRM's own threshold (pipeline.core.crm_scoring): its leads scored as that tool does, each at its
    peak, the same policy and settings as leadcal's threshold, validated on the held-out months.

    `at_leadcal_threshold`: what leadcal's own threshold would do inside that tool (the share
    of later leads it would send to sales, and their close rate), the cost of not recalibrating.
    """
    leads = signals.leads()
    out: dict[str, object] = {}
    for target in TARGETS:
        scoring = scoring_for(target, header.get("half_life_days"))
        scores = crm_scores(signals, features, table, header, scoring)
        peak = peak_rows(scores["total_points"].to_numpy(), leads)
        scores = scores.iloc[peak].reset_index(drop=True)
        closed = features["closed"].to_numpy()[peak]
        train, valid = np.asarray(train_mask)[peak], np.asarray(valid_mask)[peak]
        total = scores["total_points"].to_numpy()
        entry: dict[str, object] = {"label": scoring.label, "scoring": scoring.describe()}
        if scoring.grading:
            grade, score = scores["grade"].to_numpy(), scores["score"].to_numpy()
            rule = two_axis_rule(policy, grade[train], score[train], closed[train], settings, weeks, deal_value)
            threshold = None if rule is None else rule[1]
            passing = total if rule is None else np.where(grade >= rule[0], score, BELOW_EVERY_SCORE)
            entry.update({"grade_at_least": None if rule is None else grade_label(rule[0]),
                          "points_per_grade_third": points_per_third(table)})
        else:
            curve = threshold_curve(total[train], closed[train])
            threshold = choose_by_policy(policy, curve, settings, weeks, deal_value) if len(curve) else None
            passing = total
        training = summarise(passing[train], closed[train], threshold)
        if weeks and training.get("mql_leads") is not None:
            training["mql_per_week"] = training["mql_leads"] / weeks
        validation = {**summarise(passing[valid], closed[valid], threshold), "auc": _auc(total[valid], closed[valid])}
        entry.update({"threshold": threshold, "training": training, "validation": validation})
        if not scoring.grading and leadcal_threshold is not None:
            entry["at_leadcal_threshold"] = {"threshold": leadcal_threshold,
                                             "validation": summarise(total[valid], closed[valid], leadcal_threshold)}
        out[target] = entry
    return out


QUADRANTS = {
    "hot": "fit and interested: hand to sales within 24 h",
    "nurture": "fit, not yet interested: nurture",
    "quick_check": "interested, not fit: quick check by sales",
    "drop": "neither: drop from campaigns",
}


def quadrant(fit: np.ndarray, engagement: np.ndarray, fit_boundary: float, engagement_boundary: float) -> np.ndarray:
    fit_ok, interested = np.asarray(fit) >= fit_boundary, np.asarray(engagement) >= engagement_boundary
    return np.select([fit_ok & interested, fit_ok, interested], ["hot", "nurture", "quick_check"], "drop")


def grade(values: np.ndarray, cutoffs: list[float], labels: list[str]) -> np.ndarray:
    """labels[0] for values >= cutoffs[0], labels[1] for >= cutoffs[1], ..., the last label below."""
    values = np.asarray(values)
    return np.select([values >= c for c in cutoffs], labels[:-1], labels[-1])


def grade_cutoffs(values: np.ndarray) -> list[float]:
    """Cut-offs of the A-D (or 1-4) grades: the quartiles, highest first.

    Points totals tie a lot: when the lowest quartile is the minimum itself (many leads with
    no engagement at all), the lowest grade would be empty; it is then the leads at the
    minimum, and the next grade starts just above it.
    """
    values = np.asarray(values, dtype=float)
    cuts = [float(q) for q in np.quantile(values, [0.75, 0.5, 0.25])]
    above = values[values > values.min()]
    if cuts[-1] <= values.min() and len(above):
        cuts[-1] = float(above.min())
        cuts = [max(c, cuts[-1]) for c in cuts]
    return cuts


def _cells(groups: np.ndarray, closed: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    closed = np.asarray(closed, dtype=int)
    out = {}
    for name in names:
        mask = groups == name
        leads, won = int(mask.sum()), int(closed[mask].sum())
        out[name] = {"leads": leads, "customers": won, "close_rate": won / leads if leads else None,
                     "share_of_leads": leads / len(closed) if len(closed) else None,
                     "share_of_customers": won / closed.sum() if closed.sum() else None}
    return out


def fit_interest_matrix(
    fit: np.ndarray, engagement: np.ndarray, closed: np.ndarray, min_support: int,
) -> dict[str, object]:
    """Quadrant boundaries and grade cut-offs learnt from these (training) leads, and their cells."""
    boundaries = {}
    for axis, values in (("fit", fit), ("engagement", engagement)):
        found = best_split(values, closed, min_support)
        boundaries[axis] = found[0] if found else float(np.median(values))
    fit_cuts, engagement_cuts = grade_cutoffs(fit), grade_cutoffs(engagement)
    return {
        "fit_boundary": boundaries["fit"], "engagement_boundary": boundaries["engagement"],
        "fit_grade_cutoffs": fit_cuts, "engagement_grade_cutoffs": engagement_cuts,
    }


def matrix_cells(matrix: dict[str, object], fit: np.ndarray, engagement: np.ndarray, closed: np.ndarray) -> dict[str, object]:
    """Close rate and volume of each quadrant and each A1-D4 grade cell, for one set of leads."""
    quadrants = quadrant(fit, engagement, matrix["fit_boundary"], matrix["engagement_boundary"])
    cells = np.char.add(grade(fit, matrix["fit_grade_cutoffs"], ["A", "B", "C", "D"]).astype(str),
                        grade(engagement, matrix["engagement_grade_cutoffs"], ["1", "2", "3", "4"]).astype(str))
    quadrant_cells = _cells(quadrants, closed, list(QUADRANTS))
    for name, action in QUADRANTS.items():
        quadrant_cells[name]["action"] = action
    return {"quadrants": quadrant_cells,
            "grades": _cells(cells, closed, [f + e for f in "ABCD" for e in "1234"])}


def summarise(total_points: np.ndarray, closed: np.ndarray, threshold: int | None) -> dict[str, float | int | None]:
    """What the threshold does on a set of leads: share passing, their close rate and lift."""
    total_points = np.asarray(total_points)
    closed = np.asarray(closed, dtype=int)
    average = float(closed.mean()) if len(closed) else None
    summary: dict[str, float | int | None] = {"leads": int(len(closed)), "customers": int(closed.sum()), "average_close_rate": average}
    if threshold is None or not len(closed):
        return summary
    above = total_points >= threshold
    mql_rate = float(closed[above].mean()) if above.any() else None
    summary.update({
        "mql_leads": int(above.sum()),
        "mql_share": float(above.mean()),
        "mql_close_rate": mql_rate,
        "mql_lift": mql_rate / average if mql_rate is not None and average else None,
        "customers_captured": float(closed[above].sum() / closed.sum()) if closed.sum() else None,
    })
    return summary


HOW = {
    "close_rate_multiple": "lowest total score whose leads (score >= threshold) close at {mql_lift:.3g} x the average close rate",
    "sales_capacity": "lowest total score whose MQLs fit in {capacity_per_week:g} per week at the historical lead flow",
    "target_precision": "lowest total score whose MQLs close at {target_precision:.0%} or more",
    "target_recall": "highest total score whose MQLs still hold {target_recall:.0%} of the customers",
    "cost_benefit": "total score maximising customers x deal value - MQLs x {cost_per_touch:g} per sales touch",
}


def published_policy(requested: str, policies: dict[str, dict[str, object]]) -> tuple[str, dict[str, str] | None]:
    """The policy whose threshold is published, and the fallback record when it is not `requested`.

    `requested` when it finds a threshold; else the first policy of FALLBACK_ORDER that finds
    one, with {"from", "to", "reason"}; else `requested` (its threshold is None: not published).
    """
    if policies[requested]["threshold"] is not None:
        return requested, None
    for name in FALLBACK_ORDER:
        if policies[name]["threshold"] is not None:
            return name, {"from": requested, "to": name, "reason": (
                f"policy {requested} (params thresholds.policy) finds no threshold: {policies[requested]['note']}; "
                f"the threshold is {name}'s ({policies[name]['threshold']} points), the first of "
                f"{', '.join(FALLBACK_ORDER)} that finds one")}
    return requested, None
