"""The sample history as the export a marketer most often gets: one CSV row per lead, no dates.

`leadcal generate` writes the simulated history in the contract's shape (leads, an
activity log, stage history). This module writes the SAME history the way a CRM exports a
lead list, like the well-known online-course "Leads" export: one row per lead, CRM-spelt
headers, a 0/1 `Converted`, activity counters, a `Last Activity`, form placeholders.

Columns (in this order):

- `Prospect ID`: the lead id of the contract tables (`L000123`).
- `Lead Number`: a second id, an auto-increment with gaps in lead-id (about creation) order.
  An id, not a count: a tool must not read it as a number that means anything.
- `Lead Source`, `Country`, `Industry`, `Company Size`, `Seniority`, `Email Type`: the fit
  attributes of the leads table, CRM-spelt (`Organic Search`, `United States`, company size
  as the band text `51-200`). A web form's picklist placeholder `Select` fills a share of
  `Industry`, `Seniority` and `Company Size` (CELL_GAPS), and some cells are blank; both hide
  the value at random, whatever the lead did.
- `Converted`: 1 if the lead reached `customer` within outcome.horizon_days of creation,
  else 0. Only leads whose outcome is known at the export date (matured: created at least
  horizon_days before it) are written.
- `TotalVisits`, `Email Opens`, `Email Clicks`, `Form Submissions`, `Webinars Attended`,
  `Whitepaper Downloads`, `Pricing Page Visits` (COUNTS): the lead's events of those
  activities counted as the CRM counted them at a fixed moment, the earlier of 30 days
  after creation and the lead's outcome (its first `customer` or `lost` stage): only events
  strictly before that moment, never after the outcome, so the counters do not leak.
  A counter the CRM never incremented is sometimes left blank (~3.5 % of each column): a
  blank is always a 0.
- `Total Time Spent on Website`: seconds, the sum of one drawn duration per visit (a
  measure, not a count; 0 without a visit). `Page Views Per Visit`: drawn page views over
  visits, 2 decimals, blank without a visit.
- `Last Activity`: the readable name of the lead's latest event before the same moment
  (`Email Opened`, `Pricing Page Visit`, `Sales Meeting`, ...), blank if none.
- `Do Not Email`: Yes if the lead unsubscribed before that moment, else No.
- `Tags`: PLANTED LEAKAGE. Sales fills it after contacting a lead, so it records the
  outcome: filled for ~85 % of converted leads and for a quarter of the other MQLs (~15 %
  of the other leads), and its value `Closed by Sales` (LEAKY_VALUE) occurs only on converted
  leads, on ~40 % of them; every other value occurs on both sides. It is
  not known when a lead would be scored: an honest tool must refuse to use it as a signal
  (flag it as leakage), even though it "predicts" `Converted` almost perfectly.

Every draw comes from one generator seeded from params.seed (its own stream, so the
contract tables of `leadcal generate` are unchanged): the same params give the same bytes.
Rows are in Prospect ID order.

To calibrate on it, map it like a real export (README "Your own data"): source.leads on
the file, source.outcome `Converted`, the counters as source.wide.activities of kind count,
the time and page columns of kind number, `Last Activity` of kind category,
source.missing_values [Select]; leave `Tags` and `Lead Number` out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from pipeline import io
from pipeline.data.generate import SIZE_EDGES, WINDOW_DAYS, generate
from pipeline.errors import LeadcalError
from pipeline.params import Generate, Params

log = logging.getLogger(__name__)

DEFAULT_LEADS = 10_000  # leads simulated for this shape unless --leads says otherwise
STREAM = 0x16  # the export's own random stream beside params.seed (issue 16)

SOURCE_NAMES = {
    "organic_search": "Organic Search", "paid_search": "Paid Search", "paid_social": "Paid Social",
    "referral": "Referral", "event": "Event", "partner": "Partner", "direct": "Direct Traffic", "email": "Email Campaign",
}
COUNTRY_NAMES = {
    "us": "United States", "gb": "United Kingdom", "de": "Germany", "fr": "France", "nl": "Netherlands",
    "in": "India", "br": "Brazil", "au": "Australia",
}
INDUSTRY_NAMES = {
    "software": "Software", "financial_services": "Financial Services", "healthcare": "Healthcare",
    "manufacturing": "Manufacturing", "retail": "Retail", "education": "Education", "government": "Government",
    "other": "Other",
}
SENIORITY_NAMES = {
    "c_level": "C-Level", "vp": "VP", "director": "Director", "manager": "Manager",
    "individual_contributor": "Individual Contributor",
}
EMAIL_TYPE_NAMES = {"business": "Business", "personal": "Personal", "student": "Student"}
SIZE_BANDS = ["1-10", "11-50", "51-200", "201-1000", "1001-5000", "5001+"]  # generate.SIZE_EDGES as a picklist
ACTIVITY_NAMES = {
    "demo_request": "Demo Requested",
    "contact_sales_form": "Contacted Sales",
    "sales_meeting": "Sales Meeting",
    "pricing_page_visit": "Pricing Page Visit",
    "webinar_attendance": "Webinar Attended",
    "case_study_download": "Case Study Downloaded",
    "form_submission": "Form Submitted on Website",
    "whitepaper_download": "Whitepaper Downloaded",
    "email_click": "Email Link Clicked",
    "webinar_registration": "Webinar Registered",
    "social_comment": "Social Media Comment",
    "email_open": "Email Opened",
    "blog_read": "Blog Post Read",
    "social_like": "Social Media Like",
    "newsletter_signup": "Newsletter Signup",
    "careers_page_visit": "Careers Page Visit",
    "unsubscribe": "Unsubscribed",
}
# A visit is any event on the website (a page read, a download, a form).
WEBSITE_ACTIVITIES = ("blog_read", "pricing_page_visit", "careers_page_visit", "case_study_download",
                      "whitepaper_download", "form_submission", "demo_request", "contact_sales_form",
                      "webinar_registration", "newsletter_signup")
COUNTS: dict[str, tuple[str, ...]] = {  # column -> activities it counts
    "TotalVisits": WEBSITE_ACTIVITIES,
    "Email Opens": ("email_open",),
    "Email Clicks": ("email_click",),
    "Form Submissions": ("form_submission", "demo_request", "contact_sales_form"),
    "Webinars Attended": ("webinar_attendance",),
    "Whitepaper Downloads": ("whitepaper_download",),
    "Pricing Page Visits": ("pricing_page_visit",),
}
BLANK_COUNT_SHARE = 0.035  # share of each counter's cells left blank (always cells whose count is 0)
# column -> (share of `Select`, share of blank cells); drawn at random, whatever the lead did
CELL_GAPS = {
    "Lead Source": (0.0, 0.005),
    "Country": (0.0, 0.06),
    "Industry": (0.20, 0.02),
    "Company Size": (0.15, 0.03),
    "Seniority": (0.25, 0.02),
}
SECONDS_PER_VISIT = (240.0, 0.9)  # lognormal median and sigma of one visit's duration
EXTRA_PAGES_PER_VISIT = 1.4  # page views of a visit: 1 + Poisson(this)
# Tags: the planted leak. Fill rates, and each side's values with their shares.
TAGS_FILL = {"converted": 0.85, "other_mql": 0.25}
TAGS_CONVERTED = {"Closed by Sales": 0.45, "Will revert after reading the email": 0.25,
                  "Interested in Demo": 0.20, "Busy": 0.10}
TAGS_OTHERS = {"Ringing": 0.20, "Interested in other products": 0.15, "Not interested": 0.15,
               "Will revert after reading the email": 0.15, "Interested in Demo": 0.05, "Busy": 0.10,
               "Invalid number": 0.10, "Lost to Competitor": 0.10}
LEAKY_VALUE = "Closed by Sales"
COLUMNS = ["Prospect ID", "Lead Number", "Lead Source", "Do Not Email", "Converted", "TotalVisits",
           "Total Time Spent on Website", "Page Views Per Visit", "Last Activity", *list(COUNTS)[1:],
           "Country", "Industry", "Company Size", "Seniority", "Email Type", "Tags"]


def _pick(rng: np.random.Generator, table: dict[str, float], n: int) -> np.ndarray:
    values = list(table)
    shares = np.array(list(table.values()))
    return np.array(values, dtype=object)[rng.choice(len(values), size=n, p=shares / shares.sum())]


def counting_moments(sample: dict) -> pd.Series:
    """Per lead (index lead_id, leads-table order): the moment its counters are read, the earlier
    of WINDOW_DAYS after creation and its first customer or lost stage."""
    leads, stages = sample["leads"], sample["stages"]
    outcome = stages[stages["stage"].isin(["customer", "lost"])].groupby("lead_id")["entered_at"].min()
    created = leads.set_index("lead_id")["created_at"]
    window_end = created + pd.Timedelta(days=WINDOW_DAYS)
    return window_end.where(~(outcome.reindex(created.index) < window_end), outcome.reindex(created.index))


def one_row_per_lead(sample: dict, params: Params) -> pd.DataFrame:
    """The export, built from `generate(params)`'s tables: see the module docstring for every column."""
    leads, activities, stages = sample["leads"], sample["activities"], sample["stages"]
    n = len(leads)
    rng = np.random.default_rng([params.seed, STREAM])
    ids = leads["lead_id"].to_numpy()
    position = pd.Series(np.arange(n), index=ids)
    created = leads["created_at"]
    export_date = pd.Timestamp(sample["truth"]["export_date"])
    horizon = pd.Timedelta(days=params.outcome.horizon_days)

    # Every lead's draws, in a fixed order, before any row is dropped.
    lead_number = 580_000 + np.cumsum(rng.integers(1, 5, size=n))
    gaps = {column: rng.random(n) for column in CELL_GAPS}
    blank_draws = {column: rng.random(n) for column in COUNTS}
    tags_fill = rng.random(n)
    tags_converted = _pick(rng, TAGS_CONVERTED, n)
    tags_others = _pick(rng, TAGS_OTHERS, n)

    codes = {name: k for k, name in enumerate(ACTIVITY_NAMES)}
    window, activity_code, per_activity = _events_before_moment(sample, activities, position, codes)

    frame = pd.DataFrame({"Prospect ID": ids, "Lead Number": lead_number})
    _fit_columns(frame, leads, gaps)

    customer_at = stages[stages["stage"] == "customer"].groupby("lead_id")["entered_at"].min()
    won = (customer_at.reindex(ids) <= created.to_numpy() + horizon).to_numpy()
    frame["Converted"] = won.astype(int)

    counts = _count_columns(frame, per_activity, codes, blank_draws)
    _visit_columns(frame, rng, counts["TotalVisits"])

    # The latest event before the moment (ties: the last name in a fixed order).
    ordered = window.assign(code=activity_code).sort_values(["lead_id", "occurred_at", "code"], kind="stable")
    latest = ordered.groupby("lead_id", sort=False)["activity"].last()
    frame["Last Activity"] = latest.reindex(ids).map(ACTIVITY_NAMES).to_numpy()
    frame["Do Not Email"] = np.where(per_activity[:, codes["unsubscribe"]] > 0, "Yes", "No")

    # The leak: sales tags the leads it contacted (MQLs), the customers above all.
    mql = np.isin(ids, stages.loc[stages["stage"] == "mql", "lead_id"].unique())
    tagged = np.where(won, tags_fill < TAGS_FILL["converted"], mql & (tags_fill < TAGS_FILL["other_mql"]))
    frame["Tags"] = np.where(tagged, np.where(won, tags_converted, tags_others), None)

    matured = (created + horizon <= export_date).to_numpy()
    frame = frame.loc[matured, COLUMNS].sort_values("Prospect ID", kind="stable").reset_index(drop=True)
    return frame


def _events_before_moment(sample: dict, activities: pd.DataFrame, position: pd.Series,
                          codes: dict[str, int]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The events strictly before each lead's counting moment (so no counter sees its outcome), their
    activity codes, and the leads x activities count of them (rows in leads-table order)."""
    moment = counting_moments(sample).to_numpy()
    index = position[activities["lead_id"]].to_numpy()
    window = activities[activities["occurred_at"].to_numpy() < moment[index]]
    window_index = position[window["lead_id"]].to_numpy()
    activity_code = window["activity"].map(codes).to_numpy()
    per_activity = np.zeros((len(position), len(codes)), dtype=np.int64)
    np.add.at(per_activity, (window_index, activity_code), 1)
    return window, activity_code, per_activity


def _fit_columns(frame: pd.DataFrame, leads: pd.DataFrame, gaps: dict[str, np.ndarray]) -> None:
    """The fit attributes, CRM-spelt, with the form's `Select` and blank cells drawn in `gaps`
    (whatever the lead did, so the gaps carry no signal)."""
    frame["Lead Source"] = leads["source"].map(SOURCE_NAMES).to_numpy()
    frame["Country"] = leads["country"].map(COUNTRY_NAMES).to_numpy()
    frame["Industry"] = leads["industry"].map(INDUSTRY_NAMES).to_numpy()
    band = np.searchsorted(SIZE_EDGES, leads["company_size"].to_numpy(), side="right") - 1
    frame["Company Size"] = np.array(SIZE_BANDS, dtype=object)[band]
    frame["Seniority"] = leads["seniority"].map(SENIORITY_NAMES).to_numpy()
    frame["Email Type"] = leads["email_type"].map(EMAIL_TYPE_NAMES).to_numpy()
    for column, (select, blank) in CELL_GAPS.items():
        draw = gaps[column]
        frame.loc[draw < select, column] = "Select"
        frame.loc[(draw >= select) & (draw < select + blank), column] = None


def _count_columns(frame: pd.DataFrame, per_activity: np.ndarray, codes: dict[str, int],
                   blank_draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The COUNTS columns, some zeros left blank as a CRM leaves a counter it never incremented;
    returns the counts themselves (the visits drive the time and page columns)."""
    counts = {column: per_activity[:, [codes[a] for a in names]].sum(axis=1) for column, names in COUNTS.items()}
    for column, values in counts.items():
        zero = values == 0
        # blank a zero with the chance that makes the column's blank share BLANK_COUNT_SHARE
        chance = min(1.0, BLANK_COUNT_SHARE / zero.mean()) if zero.any() else 0.0
        frame[column] = pd.array(values, dtype="Int64")
        frame.loc[zero & (blank_draws[column] < chance), column] = pd.NA
    return counts


def _visit_columns(frame: pd.DataFrame, rng: np.random.Generator, visits: np.ndarray) -> None:
    """Time on the website and page views per visit, drawn per visit (measures, not counts: the
    numbers an export holds beside its counters). Draws: every duration, then every page count."""
    n = len(visits)
    visit_lead = np.repeat(np.arange(n), visits)
    median, sigma = SECONDS_PER_VISIT
    seconds = np.exp(rng.normal(np.log(median), sigma, size=len(visit_lead)))
    pages = 1 + rng.poisson(EXTRA_PAGES_PER_VISIT, size=len(visit_lead))
    frame["Total Time Spent on Website"] = np.round(np.bincount(visit_lead, seconds, minlength=n)).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_visit = np.bincount(visit_lead, pages, minlength=n) / visits
    frame["Page Views Per Visit"] = np.where(visits > 0, np.round(per_visit, 2), np.nan)


def write_one_row_per_lead(params: Params, path: str | Path, n_leads: int | None = None) -> pd.DataFrame:
    """Simulate the history (`n_leads`, default DEFAULT_LEADS; the other generate settings from
    params) and write it as one row per lead to `path` (a CSV file), atomically."""
    path = Path(path)
    if path.is_dir():
        raise LeadcalError(f"{path}: is a folder; --one-row-per-lead takes a file path, e.g. {path / 'leads.csv'}")
    try:
        shape = Generate.model_validate({**params.generate.model_dump(), "n_leads": n_leads or DEFAULT_LEADS})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise LeadcalError(f"--leads: {problems}") from exc
    params = params.model_copy(update={"generate": shape})
    frame = one_row_per_lead(generate(params), params)
    if frame.empty:
        raise LeadcalError(
            f"no simulated lead is older than outcome.horizon_days={params.outcome.horizon_days} at the export date, "
            "so none has a known outcome: raise generate.months or lower outcome.horizon_days")
    io.write_csv(path, frame)
    converted = frame["Converted"].to_numpy()
    log.info("generate: wrote %d matured leads of %d, one row each, to %s (converted %.2f %%)",
             len(frame), shape.n_leads, path, 100 * converted.mean())
    return frame
