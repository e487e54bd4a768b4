"""A screen for outcomes leaking into the features: signals too good to be true.

A real signal rarely closes 99 % of the leads who show it. When one does, the usual cause
is an activity logged because of the outcome (an onboarding call, a "closed won" e-mail),
or a history cut at the outcome. The features stage runs this screen on its rows and
writes what it finds to `features_report.json` and the run's log, and notebook 01 shows
it, so a user sees the warning before publishing points built on it.

Three checks (the thresholds are the ones a reviewer would use by eye):
- a signal whose leads close at 99 % or more, on 30 or more leads;
- a signal that on its own separates customers from the others almost perfectly
  (single-signal AUC of 0.95 or more, or 0.05 or less), on 30 or more leads;
- an activity logged mostly (half of its events or more) at or after its lead's outcome.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.signal_counts import SignalCounts

MIN_LEADS = 30
MAX_CLOSE_RATE = 0.99
MAX_AUC = 0.95
MAX_SHARE_AFTER_OUTCOME = 0.5


def single_signal_auc(counts: SignalCounts) -> np.ndarray:
    """AUC of each 0/1 signal as a score of its own, comparing rows of the same snapshot
    (pipeline.core.stats.stratified_auc): per stratum (1 + true positive rate - false positive rate) / 2,
    weighted by its customer x other pairs. Computed in closed form: a signal is one cut."""
    total, pairs = np.zeros(len(counts.catalog)), 0.0
    for k in range(len(counts.snapshots)):
        won, lost = int(counts.customers[k]), int(counts.rows[k] - counts.customers[k])
        if won and lost:
            weight = float(won) * float(lost)
            total += 0.5 * (1 + counts.present_won[k] / won - counts.present_lost[k] / lost) * weight
            pairs += weight
    return total / pairs if pairs else np.full(len(counts.catalog), np.nan)


def suspicious_signals(counts: SignalCounts) -> list[dict[str, object]]:
    """Signals that look too good to be true, from their counts over labelled rows."""
    leads, customers = counts.leads(), counts.leads_customers()
    auc = single_signal_auc(counts)
    found = []
    for j, name in enumerate(counts.catalog["signal"]):
        if leads[j] < MIN_LEADS:
            continue
        rate = customers[j] / leads[j]
        reasons = []
        if rate >= MAX_CLOSE_RATE:
            reasons.append(f"{customers[j]} of its {leads[j]} leads closed ({rate:.0%})")
        if np.isfinite(auc[j]) and max(auc[j], 1 - auc[j]) >= MAX_AUC:
            reasons.append(f"on its own it separates customers from the other leads with AUC {auc[j]:.2f}")
        if reasons:
            found.append({"signal": name, "leads": int(leads[j]), "customers": int(customers[j]),
                          "close_rate": float(rate), "auc": float(auc[j]), "why": "; ".join(reasons)})
    return found


def activities_after_outcome(counts: pd.DataFrame) -> list[dict[str, object]]:
    """Activities logged mostly at or after their lead's outcome.

    `counts`: per activity, `events_of_decided_leads` (events of leads that have an outcome
    stage) and `after_outcome` (those at or after the lead's first outcome).
    """
    found = []
    for row in counts.sort_values("activity").itertuples(index=False):
        decided = int(row.events_of_decided_leads or 0)
        after = int(row.after_outcome or 0)
        if decided >= MIN_LEADS and after / decided >= MAX_SHARE_AFTER_OUTCOME:
            found.append({"activity": row.activity, "events_of_decided_leads": decided, "after_outcome": after,
                          "share_after_outcome": after / decided,
                          "why": f"{after} of the {decided} events of won or lost leads come at or after the outcome"})
    return found
