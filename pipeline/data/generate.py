"""A realistic B2B lead history with planted, known effects.

Why a generator: a calibration method can only be trusted if it recovers effects we
put there ourselves. `generate` writes what a CRM export looks like (leads, an
activity log, funnel stage history, as CSV with UTC timestamps) plus `truth.json`:
every true effect on the log-odds of closing, so tests can check the pipeline.

The true model, per lead (all effects on the log-odds of becoming a customer), taken at the
lead's moment of decision M:

    logit p = intercept + drift(year 2) + season(month created)
              + sum over fit attributes of effect(value)
              + sum over activities a of coef[a] * 2 ** (-age_a / half_life)
              + frequency_coef * [pricing_page_visit count before M >= min_count]

where age_a is the age in days, at M, of the lead's latest `a` before M (the term is 0
when it did not do `a`). Most leads are decided on their first 30 days (M = day 30) and
win or are lost weeks later. A share of *fast deciders*, as real funnels have, are
decided inside those 30 days (M = day 3 to 27): a burst of sales meetings and pricing-page
visits in the days before M, then the win or the loss on day M itself, and their activity
goes on afterwards. Their outcome falls inside the window a naive cut-off would use: a
pipeline that looks past a lead's moment, or sees a lead as of its outcome, finds
"recent activity" closing every fast winner (the leakage trap point-in-time rows avoid).
Activities are drawn independently of each other and of fit, except two chains a
real funnel has (attendance only after registration, clicks only after opens):
so a null activity is null in the marginal close rates too, and the chains test
that overlapping signals are not double-counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.errors import LeadcalError
from pipeline.params import Params

log = logging.getLogger(__name__)

DAY = 86_400.0  # seconds


@dataclass(frozen=True)
class ActivityTruth:
    coef: float  # effect on the log-odds when done at the cut-off (age 0); halves every HALF_LIFE_DAYS
    prevalence: float  # share of leads (of the parent's doers, for a chained activity) doing it
    extra_mean: float = 0.3  # occurrences beyond the first ~ Poisson(extra_mean)
    requires: str | None = None


ACTIVITIES: dict[str, ActivityTruth] = {
    "demo_request": ActivityTruth(3.2, 0.04, 0.1),
    "contact_sales_form": ActivityTruth(2.56, 0.03, 0.1),
    "sales_meeting": ActivityTruth(2.24, 0.03, 0.2),
    "pricing_page_visit": ActivityTruth(1.92, 0.12, 1.8),
    "webinar_attendance": ActivityTruth(1.6, 0.35, 0.2, requires="webinar_registration"),
    "case_study_download": ActivityTruth(1.36, 0.10, 0.4),
    "form_submission": ActivityTruth(1.04, 0.30, 0.3),
    "whitepaper_download": ActivityTruth(0.72, 0.25, 0.8),
    "email_click": ActivityTruth(0.56, 0.35, 0.8, requires="email_open"),
    "webinar_registration": ActivityTruth(0.8, 0.15, 0.2),
    "social_comment": ActivityTruth(0.32, 0.10, 0.3),
    "email_open": ActivityTruth(0, 0.60, 2.5),
    "blog_read": ActivityTruth(0, 0.45, 1.5),
    "social_like": ActivityTruth(0, 0.20, 0.8),
    "newsletter_signup": ActivityTruth(0, 0.15, 0.0),
    "careers_page_visit": ActivityTruth(-1.6, 0.06, 0.4),
    "unsubscribe": ActivityTruth(-2.4, 0.08, 0.0),
}
HALF_LIFE_DAYS = 10.0
WINDOW_DAYS = 30  # most leads are decided on their first 30 days of activity
# Fast deciders: this share of leads is decided on a day drawn from `decision_days`, after a burst
# of the `burst` activities (1 + Poisson(extra) of each) in the `burst_days` before it.
FAST = {"share": 0.02, "decision_days": (3.0, 27.0), "burst_days": 5.0,
        "burst": {"sales_meeting": 0.5, "pricing_page_visit": 1.0}}
FREQUENCY = {"activity": "pricing_page_visit", "min_count": 4, "window_days": 30, "coef": 0.9}

SIZE_EDGES = [1, 11, 51, 201, 1001, 5001]
SIZE_EFFECT = [-0.7, -0.2, 0.0, 0.4, 0.6, 0.3]
FIT: dict[str, dict[str, tuple[float, float]]] = {  # attribute -> value -> (share, effect)
    "industry": {
        "software": (0.22, 0.5),
        "financial_services": (0.12, 0.3),
        "healthcare": (0.10, 0.1),
        "manufacturing": (0.16, 0.0),
        "retail": (0.12, -0.2),
        "education": (0.10, -0.5),
        "government": (0.06, -0.3),
        "other": (0.12, -0.1),
    },
    "seniority": {
        "c_level": (0.06, 0.4),
        "vp": (0.08, 0.6),
        "director": (0.16, 0.4),
        "manager": (0.30, 0.1),
        "individual_contributor": (0.40, -0.3),
    },
    "country": {
        "us": (0.38, 0.1),
        "gb": (0.12, 0.1),
        "de": (0.12, 0.0),
        "fr": (0.08, -0.1),
        "nl": (0.05, 0.0),
        "in": (0.11, -0.4),
        "br": (0.08, -0.3),
        "au": (0.06, 0.1),
    },
    "source": {
        "organic_search": (0.26, 0.2),
        "paid_search": (0.18, 0.1),
        "paid_social": (0.10, -0.5),
        "referral": (0.08, 0.7),
        "event": (0.08, 0.3),
        "partner": (0.06, 0.5),
        "direct": (0.12, 0.2),
        "email": (0.12, 0.0),
    },
    "email_type": {"business": (0.75, 0.0), "personal": (0.20, -0.5), "student": (0.05, -1.5)},
}
# In year two paid social grows (a cheaper, weaker channel) and every lead closes less.
DRIFT = {"intercept_shift_year2": -0.3, "paid_social_share_year2": 0.25}
SEASON = {1: -0.1, 2: 0.0, 3: 0.15, 4: 0.0, 5: 0.0, 6: -0.1, 7: -0.25, 8: -0.3, 9: 0.1, 10: 0.2, 11: 0.25, 12: -0.2}
VOLUME = {1: 1.0, 2: 1.05, 3: 1.1, 4: 1.0, 5: 1.0, 6: 0.95, 7: 0.75, 8: 0.7, 9: 1.1, 10: 1.15, 11: 1.1, 12: 0.7}
FUNCTIONS = ["marketing", "sales", "it", "operations", "finance", "hr", "engineering"]
TITLE_PREFIX = {
    "c_level": "Chief {f} Officer",
    "vp": "VP {f}",
    "director": "Director of {f}",
    "manager": "{f} Manager",
    "individual_contributor": "{f} Specialist",
}
# The manual rule the company used until now: any of these made a lead an MQL.
LEGACY_MQL_ACTIVITIES = ("form_submission", "demo_request", "contact_sales_form", "whitepaper_download", "pricing_page_visit")


def _month_add(start: date, months: int) -> date:
    year, month = divmod(start.month - 1 + months, 12)
    return date(start.year + year, month + 1, 1)


def _choice(rng: np.random.Generator, table: dict[str, tuple[float, float]], n: int) -> np.ndarray:
    values = list(table)
    shares = np.array([table[v][0] for v in values])
    return np.array(values, dtype=object)[rng.choice(len(values), size=n, p=shares / shares.sum())]


def _creation_times(rng: np.random.Generator, start: date, end: date, n: int) -> np.ndarray:
    """Seconds since start; volume grows 30 % over the period and dips in summer and December."""
    days = pd.date_range(start, end, freq="D", inclusive="left")
    growth = np.linspace(1.0, 1.3, len(days))
    weight = growth * np.array([VOLUME[m] for m in days.month]) * np.where(days.day_of_week < 5, 1.0, 0.35)
    day_index = np.sort(rng.choice(len(days), size=n, p=weight / weight.sum()))
    seconds = day_index * DAY + rng.uniform(7 * 3600, 20 * 3600, size=n)
    return seconds


def _leads(rng: np.random.Generator, params: Params) -> pd.DataFrame:
    g = params.generate
    start, end = g.start, _month_add(g.start, g.months)
    n = g.n_leads
    seconds = _creation_times(rng, start, end, n)
    created = pd.Timestamp(start) + pd.to_timedelta(np.round(seconds), unit="s")
    year2 = np.asarray(created >= pd.Timestamp(_month_add(start, 12)))
    frame = pd.DataFrame({"lead_id": [f"L{i:06d}" for i in range(1, n + 1)], "created_at": created})
    employees = np.clip(np.round(np.exp(rng.normal(4.2, 1.7, size=n))), 1, 250_000)
    frame["company_size"] = employees.astype(int)
    revenue = employees * np.exp(rng.normal(np.log(180_000), 0.6, size=n))
    revenue[rng.random(n) < 0.08] = np.nan  # often unknown in real exports
    frame["annual_revenue"] = np.round(revenue, -3)
    for attribute in ("industry", "seniority", "country", "source", "email_type"):
        frame[attribute] = _choice(rng, FIT[attribute], n)
    # Drift: in year two paid social takes a larger share of new leads.
    shift = year2 & (rng.random(n) < DRIFT["paid_social_share_year2"] - FIT["source"]["paid_social"][0])
    frame.loc[shift, "source"] = "paid_social"
    function = np.array(FUNCTIONS, dtype=object)[rng.integers(0, len(FUNCTIONS), size=n)]
    frame["job_title"] = [
        TITLE_PREFIX[s].format(f=f.upper() if f in ("it", "hr") else f.title()) for s, f in zip(frame["seniority"], function)
    ]
    frame["year2"] = year2
    return frame


def _window_events(rng: np.random.Generator, n: int, observation_days: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each activity: (lead index, offset in seconds from creation) of every occurrence in the window."""
    window = observation_days * DAY
    events: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    first_offset: dict[str, np.ndarray] = {}
    for name in sorted(ACTIVITIES, key=lambda a: ACTIVITIES[a].requires is not None):
        truth = ACTIVITIES[name]
        if truth.requires is None:
            doers = np.flatnonzero(rng.random(n) < truth.prevalence)
            counts = 1 + rng.poisson(truth.extra_mean, size=len(doers))
            lead_index = np.repeat(doers, counts)
            offsets = rng.uniform(0, window, size=len(lead_index))
        else:
            parent_first = first_offset[truth.requires]
            parents = np.flatnonzero(~np.isnan(parent_first))
            doers = parents[rng.random(len(parents)) < truth.prevalence]
            counts = 1 + rng.poisson(truth.extra_mean, size=len(doers))
            lead_index = np.repeat(doers, counts)
            # A click follows its open, an attendance its registration: never before the parent.
            offsets = parent_first[lead_index] + rng.uniform(0.02, 10, size=len(lead_index)) * DAY
        first = np.full(n, np.inf)
        np.minimum.at(first, lead_index, offsets)
        first[np.isinf(first)] = np.nan
        first_offset[name] = first
        events[name] = (lead_index, offsets)
    return events


def _true_logit(
    leads: pd.DataFrame, events: dict[str, tuple[np.ndarray, np.ndarray]], decision: np.ndarray,
) -> np.ndarray:
    """Linear predictor without the intercept, from the events before each lead's moment of decision
    (`decision`: seconds after creation, per lead)."""
    n = len(leads)
    logit = np.zeros(n)
    band = np.searchsorted(SIZE_EDGES, leads["company_size"].to_numpy(), side="right") - 1
    logit += np.array(SIZE_EFFECT)[band]
    for attribute, table in FIT.items():
        logit += leads[attribute].map({v: e for v, (_, e) in table.items()}).to_numpy(dtype=float)
    logit += leads["created_at"].dt.month.map(SEASON).to_numpy(dtype=float)
    logit += np.where(leads["year2"].to_numpy(), DRIFT["intercept_shift_year2"], 0.0)
    for name, (lead_index, offsets) in events.items():
        before = offsets < decision[lead_index]
        latest = np.full(n, -np.inf)
        np.maximum.at(latest, lead_index[before], offsets[before])
        did = np.isfinite(latest)
        age_days = (decision[did] - latest[did]) / DAY
        logit[did] += ACTIVITIES[name].coef * 2.0 ** (-age_days / HALF_LIFE_DAYS)
    lead_index, offsets = events[FREQUENCY["activity"]]
    counts = np.bincount(lead_index[offsets < decision[lead_index]], minlength=n)
    logit += np.where(counts >= FREQUENCY["min_count"], FREQUENCY["coef"], 0.0)
    return logit


def _fast_deciders(
    rng: np.random.Generator, events: dict[str, tuple[np.ndarray, np.ndarray]], n: int,
) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Each lead's moment of decision (seconds after creation) and the events with the fast deciders' bursts."""
    decision = np.full(n, WINDOW_DAYS * DAY)
    fast = np.flatnonzero(rng.random(n) < FAST["share"])
    decision[fast] = rng.uniform(*FAST["decision_days"], size=len(fast)) * DAY
    events = dict(events)
    for name, extra in FAST["burst"].items():
        counts = 1 + rng.poisson(extra, size=len(fast))
        lead_index = np.repeat(fast, counts)
        offsets = decision[lead_index] - rng.uniform(0.05, FAST["burst_days"], size=len(lead_index)) * DAY
        offsets = np.maximum(offsets, rng.uniform(0, 3600, size=len(lead_index)))  # not before the lead
        existing = events[name]
        events[name] = (np.concatenate([existing[0], lead_index]), np.concatenate([existing[1], offsets]))
    return decision, events


def _solve_intercept(logit: np.ndarray, target: float) -> float:
    """The intercept whose mean probability equals the target close rate (bisection)."""
    low, high = -20.0, 5.0
    for _ in range(100):
        mid = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(mid + logit)))) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _deal_amount(rng: np.random.Generator, size_factor: float) -> float:
    """A deal's amount: lognormal around 18,000, larger with the company, rounded to hundreds."""
    return float(np.round(np.exp(rng.normal(np.log(18_000), 0.5)) * size_factor, -2))


def _won_rows(
    rng: np.random.Generator, rows: list[tuple[int, str, float, float]], i: int, mql: float, decision: float,
    fast: bool, size_factor: float, horizon_days: int,
) -> float:
    """Append the stages of lead `i`, which closes: mql, sal, sql, opportunity, customer, in order.
    Returns the win's offset (seconds after creation): a fast decider wins at its moment of
    `decision`, any other lead on a day inside the horizon after the observation window."""
    window = WINDOW_DAYS * DAY
    # Every deal closes inside the horizon: a slow one after the observation window.
    won = decision if fast else window + DAY + rng.uniform(5, horizon_days - WINDOW_DAYS - 6) * DAY
    if np.isnan(mql):  # sales-sourced: became an MQL through an SDR
        mql = rng.uniform(0.1, 0.6) * won if fast else rng.uniform(2, WINDOW_DAYS - 1) * DAY
    mql = min(mql, won - 2 * 3600)  # a burst's visit hours before the deal: the MQL came a little earlier
    sal, sql, opp = np.sort(rng.uniform(mql + 60, won - 60, size=3))
    amount = _deal_amount(rng, size_factor)
    rows += [(i, "mql", mql, np.nan), (i, "sal", sal, np.nan), (i, "sql", sql, np.nan),
             (i, "opportunity", opp, amount), (i, "customer", won, amount)]
    return won


def _stages(
    rng: np.random.Generator, leads: pd.DataFrame, closed: np.ndarray, p_true: np.ndarray,
    legacy_mql_offset: np.ndarray, decision: np.ndarray, horizon_days: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Funnel history: lead -> mql -> sal -> sql -> opportunity -> customer or lost, dates in order.

    A lead decided on day 30 wins or is lost weeks later; a fast decider wins or is lost on
    its moment of decision itself, inside the first 30 days.
    """
    n = len(leads)
    created = leads["created_at"].to_numpy()
    rows: list[tuple[int, str, float, float]] = [(i, "lead", 0.0, np.nan) for i in range(n)]
    window = WINDOW_DAYS * DAY
    customer_offset = np.full(n, np.nan)
    size_factor = np.clip(leads["company_size"].to_numpy() / 200.0, 0.3, 8.0)
    for i in range(n):
        mql = legacy_mql_offset[i]
        fast = decision[i] < window
        if closed[i]:
            customer_offset[i] = _won_rows(rng, rows, i, mql, decision[i], fast, size_factor[i], horizon_days)
            continue
        if fast:  # disqualified after the burst of meetings: lost on the day of decision
            if not np.isnan(mql):
                rows.append((i, "mql", mql, np.nan))
            rows.append((i, "lost", decision[i], np.nan))
            continue
        lost = window + rng.uniform(1, horizon_days) * DAY
        if np.isnan(mql):
            if rng.random() < 0.1:
                rows.append((i, "lost", lost, np.nan))
            continue
        rows.append((i, "mql", mql, np.nan))
        quality = min(0.9, 0.35 + 6 * p_true[i])
        reached = ["mql"]
        for stage, chance in (("sal", quality), ("sql", 0.6), ("opportunity", 0.65)):
            if rng.random() >= chance:
                break
            reached.append(stage)
        times = np.sort(rng.uniform(mql + 3600, lost - 3600, size=len(reached) - 1))
        for stage, offset in zip(reached[1:], times):
            amount = _deal_amount(rng, size_factor[i]) if stage == "opportunity" else np.nan
            rows.append((i, stage, offset, amount))
        if len(reached) > 1 or rng.random() < 0.8:  # rejected MQLs are closed lost, some are recycled silently
            rows.append((i, "lost", lost, np.nan))
    index, stage, offset, amount = zip(*rows)
    index = np.array(index)
    frame = pd.DataFrame({
        "lead_id": leads["lead_id"].to_numpy()[index],
        "stage": stage,
        "entered_at": created[index] + pd.to_timedelta(np.round(np.array(offset)), unit="s").to_numpy(),
        "amount": amount,
    })
    return frame, customer_offset


def _later_events(
    rng: np.random.Generator, n: int, decision: np.ndarray, customer_offset: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Activity after the moment of decision: it must never reach the truth's features (a leakage trap).

    Customers are busy after the deal (onboarding webinars, pricing, e-mails), so any
    leak would show up as inflated lifts for those activities.
    """
    window = WINDOW_DAYS * DAY
    later: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names = list(ACTIVITIES)
    active = np.flatnonzero(rng.random(n) < 0.35)
    counts = rng.poisson(2.0, size=len(active))
    lead_index = np.repeat(active, counts)
    kind = rng.integers(0, len(names), size=len(lead_index))
    offsets = window + rng.uniform(0, 120, size=len(lead_index)) * DAY
    customers = np.flatnonzero(~np.isnan(customer_offset))
    for name, rate in (("email_open", 4.0), ("webinar_attendance", 0.8), ("pricing_page_visit", 1.5), ("case_study_download", 0.5)):
        c = rng.poisson(rate, size=len(customers))
        idx = np.repeat(customers, c)
        later[name] = (idx, customer_offset[idx] + rng.uniform(0.1, 60, size=len(idx)) * DAY)
    for k, name in enumerate(names):
        pick = kind == k
        extra = later.get(name, (np.array([], dtype=int), np.array([])))
        later[name] = (np.concatenate([extra[0], lead_index[pick]]), np.concatenate([extra[1], offsets[pick]]))
    # A CRM logs no attendance without a registration, no click without an open.
    for name, truth in ACTIVITIES.items():
        if truth.requires is not None:
            child_index, child_offset = later[name]
            parent_offset = child_offset - rng.uniform(0.02, 5, size=len(child_index)) * DAY
            # never back before the lead's moment of decision, where the truth did not count it
            boundary = decision[child_index]
            parent_offset = np.where(parent_offset < boundary, boundary + (child_offset - boundary) / 2, parent_offset)
            parent_index, existing = later[truth.requires]
            later[truth.requires] = (np.concatenate([parent_index, child_index]), np.concatenate([existing, parent_offset]))
    return later


def generate(params: Params) -> dict[str, pd.DataFrame | dict]:
    """Build the sample history in memory: leads, activities, stages, truth."""
    g, o = params.generate, params.outcome
    rng = np.random.default_rng(params.seed)
    end = pd.Timestamp(_month_add(g.start, g.months))
    leads = _leads(rng, params)
    n = len(leads)
    log.info("generate: %d leads from %s to %s", n, g.start, end.date())
    decision, events = _fast_deciders(rng, _window_events(rng, n, WINDOW_DAYS), n)
    logit = _true_logit(leads, events, decision)
    intercept = _solve_intercept(logit, g.target_close_rate)
    p_true = 1 / (1 + np.exp(-(intercept + logit)))
    closed = rng.random(n) < p_true
    legacy = _legacy_mql_offsets(events, decision, n)
    stages, customer_offset = _stages(rng, leads, closed, p_true, legacy, decision, o.horizon_days)
    later = _later_events(rng, n, decision, customer_offset)

    activities = _activity_log(leads, (events, later), end)
    stages = stages[stages["entered_at"] < end].sort_values(["lead_id", "entered_at"], kind="stable").reset_index(drop=True)
    probabilities = pd.DataFrame({"lead_id": leads["lead_id"], "p_close": p_true, "closed": closed.astype(int)})
    return {
        "leads": leads.drop(columns=["year2"]),
        "activities": activities,
        "stages": stages,
        "truth": _truth(params, end, decision, closed, intercept, p_true),
        "truth_probabilities": probabilities,
    }


def _legacy_mql_offsets(events: dict[str, tuple[np.ndarray, np.ndarray]], decision: np.ndarray, n: int) -> np.ndarray:
    """When the legacy MQL rule fired for each lead (seconds after creation, NaN: never): ten
    minutes after its first LEGACY_MQL_ACTIVITIES event before its moment of decision."""
    legacy = np.full(n, np.inf)
    for name in LEGACY_MQL_ACTIVITIES:
        lead_index, offsets = events[name]
        inside = offsets + 600 < decision[lead_index]
        np.minimum.at(legacy, lead_index[inside], offsets[inside] + 600)
    legacy[~np.isfinite(legacy)] = np.nan
    return legacy


def _activity_log(leads: pd.DataFrame, sources: tuple[dict[str, tuple[np.ndarray, np.ndarray]], ...],
                  end: pd.Timestamp) -> pd.DataFrame:
    """The events of every source as one log, as the export at `end` holds it: nothing after it
    (it has not happened yet), in time order."""
    created = leads["created_at"].to_numpy()
    parts = []
    for source in sources:
        for name, (lead_index, offsets) in source.items():
            parts.append(pd.DataFrame({
                "lead_id": leads["lead_id"].to_numpy()[lead_index],
                "activity": name,
                "occurred_at": created[lead_index] + pd.to_timedelta(np.round(offsets), unit="s").to_numpy(),
            }))
    activities = pd.concat(parts, ignore_index=True)
    # The export is taken at `end`: nothing after it has happened yet.
    activities = activities[activities["occurred_at"] < end]
    return activities.sort_values(["occurred_at", "lead_id", "activity"], kind="stable").reset_index(drop=True)


def _truth(params: Params, end: pd.Timestamp, decision: np.ndarray, closed: np.ndarray, intercept: float,
           p_true: np.ndarray) -> dict:
    """truth.json: every planted effect and how the history was drawn, for tests to check the pipeline against."""
    g, o = params.generate, params.outcome
    return {
        "description": "Planted effects on the log-odds of becoming a customer; see pipeline/data/generate.py for the model.",
        "seed": params.seed,
        "export_date": end.date().isoformat(),
        "window_days": WINDOW_DAYS,
        "fast_deciders": {**FAST, "leads": int((decision < WINDOW_DAYS * DAY).sum()),
                          "customers": int((closed & (decision < WINDOW_DAYS * DAY)).sum()),
                          "note": "decided on a day inside the window, after a burst of the burst activities; "
                                  "the truth is taken at that day"},
        "horizon_days": o.horizon_days,
        "intercept": intercept,
        "target_close_rate": g.target_close_rate,
        "mean_true_probability": float(p_true.mean()),
        "realised_close_rate": float(closed.mean()),
        "activities": {
            name: {"coef": t.coef, "prevalence": t.prevalence, "requires": t.requires} for name, t in ACTIVITIES.items()
        },
        "decay": {"half_life_days": HALF_LIFE_DAYS, "applies_to": "every activity, by the age of its latest occurrence at the lead's moment of decision"},
        "frequency": FREQUENCY,
        "fit": {
            "company_size": {"edges": SIZE_EDGES, "effects": SIZE_EFFECT},
            "annual_revenue": {"effect": 0.0, "note": "correlated with company_size, no effect of its own"},
            **{attr: {v: e for v, (_, e) in table.items()} for attr, table in FIT.items()},
        },
        "seasonality_by_month_created": SEASON,
        "drift": DRIFT,
        "legacy_mql_rule": list(LEGACY_MQL_ACTIVITIES),
    }


def _iso_utc(values: pd.Series) -> pd.Series:
    return values.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _refuse_foreign_folder(out_dir: Path) -> None:
    """A folder with data files but no truth.json is someone's export, not a sample: keep it."""
    if not out_dir.is_dir() or (out_dir / "truth.json").exists():
        return
    data = sorted(p.name for p in out_dir.iterdir() if p.suffix in (".csv", ".parquet"))
    if data:
        raise LeadcalError(
            f"{out_dir}: holds {', '.join(data)} but no truth.json, so it is not a leadcal sample; "
            "refusing to overwrite it. Keep your export in another folder (paths.raw) "
            "or set paths.sample to an empty one"
        )


def write_sample(params: Params, out_dir: Path | None = None) -> None:
    """Write the sample as a CRM export would look: CSV files with UTC timestamps."""
    out_dir = Path(out_dir or params.paths.sample)
    _refuse_foreign_folder(out_dir)
    sample = generate(params)
    leads = sample["leads"].assign(created_at=lambda f: _iso_utc(f["created_at"]))
    activities = sample["activities"].assign(occurred_at=lambda f: _iso_utc(f["occurred_at"]))
    stages = sample["stages"].assign(entered_at=lambda f: _iso_utc(f["entered_at"]))
    io.write_csv(out_dir / "leads.csv", leads)
    io.write_csv(out_dir / "activities.csv", activities)
    io.write_csv(out_dir / "stages.csv", stages)
    io.write_json(out_dir / "truth.json", sample["truth"])
    io.write_csv(out_dir / "truth_probabilities.csv", sample["truth_probabilities"])
    log.info(
        "generate: wrote %d leads, %d activities, %d stage rows to %s (realised close rate %.2f %%)",
        len(leads), len(activities), len(stages), out_dir, 100 * sample["truth"]["realised_close_rate"],
    )
