"""The funnel: hand-made funnels with counts worked out by hand, and the default sample."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.core.funnel import common, conversion, feedback, planning, timing
from pipeline.core.stats import wilson_interval
from pipeline.params import Params
from pipeline.stages import funnel

BASE = pd.Timestamp("2024-01-01")

# Ten leads, hours after creation of every stage row. Skipped stages and rejected MQLs on purpose.
PATHS: dict[str, list[tuple[str, float]]] = {
    "L01": [("lead", 0)],                                                       # never an MQL
    "L02": [("lead", 0), ("mql", 24), ("lost", 124)],                           # rejected MQL
    "L03": [("lead", 0), ("mql", 48), ("sal", 58), ("lost", 200)],              # rejected after sal, before sql
    "L04": [("lead", 0), ("mql", 24), ("sal", 54), ("sql", 102), ("lost", 300)],
    "L05": [("lead", 0), ("mql", 24), ("sal", 26), ("sql", 74), ("opportunity", 122), ("customer", 242)],
    "L06": [("lead", 0), ("mql", 48), ("sql", 108), ("customer", 348)],         # skips sal and opportunity
    "L07": [("lead", 0), ("customer", 480)],                                    # sales-sourced: skips everything
    "L08": [("lead", 0), ("mql", 72)],                                          # MQL nobody followed up
    "L09": [("lead", 0), ("lost", 96)],                                         # lost, never an MQL
    "L10": [("lead", 0), ("mql", 24), ("sal", 44), ("sql", 92), ("opportunity", 140), ("lost", 400)],
}
SOURCE = {"L01": "web", "L02": "web", "L03": "web", "L04": "web", "L05": "web",
          "L06": "event", "L07": "event", "L08": "event", "L09": "event", "L10": "event"}


def _created(lead: str) -> pd.Timestamp:
    # L01-L03 created in January, the others in February (each a day apart)
    number = int(lead[1:])
    return BASE + pd.Timedelta(days=number) if number <= 3 else BASE + pd.Timedelta(days=31 + number)


def hand_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        {"lead_id": lead, "stage": stage, "entered_at": _created(lead) + pd.Timedelta(hours=h), "amount": np.nan}
        for lead, path in PATHS.items() for stage, h in path
    ]
    stages = pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)  # order must not matter
    leads = pd.DataFrame({"lead_id": list(PATHS), "created_at": [_created(x) for x in PATHS],
                          "source": [SOURCE[x] for x in PATHS]})
    return stages, leads


def _by_stage(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("stage")


# ------------------------------------------------------------------------------------- conversion

def test_hand_funnel_counts_and_rates() -> None:
    stages, leads = hand_tables()
    table = _by_stage(conversion.funnel_conversion(stages, leads))
    # reached (the stage or any later one):
    #   lead 10; mql: L02-L08, L10 = 8 (L07 through its customer row); sal: L03-L07, L10 = 6;
    #   sql: L04-L07, L10 = 5; opportunity: L05, L06, L07, L10 = 4; customer: L05, L06, L07 = 3
    assert list(table.index) == list(common.FUNNEL)
    assert table["leads"].tolist() == [10, 8, 6, 5, 4, 3]
    assert table["previous"].tolist() == [10, 10, 8, 6, 5, 4]
    assert table["base"].tolist() == [10] * 6
    assert table["rate_from_previous"].tolist() == [1.0, 8 / 10, 6 / 8, 5 / 6, 4 / 5, 3 / 4]
    assert table["rate_from_lead"].tolist() == [1.0, 0.8, 0.6, 0.5, 0.4, 0.3]
    low, high = wilson_interval(np.array([8, 6, 5, 4, 3]), np.array([10, 8, 6, 5, 4]))
    assert table["rate_from_previous_low"].iloc[1:].tolist() == low.tolist()
    assert table["rate_from_previous_high"].iloc[1:].tolist() == high.tolist()
    low, high = wilson_interval(np.array([3]), np.array([10]))
    assert (table.loc["customer", "rate_from_lead_low"], table.loc["customer", "rate_from_lead_high"]) == (low[0], high[0])
    assert set(table["population"]) == {"all"}
    assert set(table["note"]) == {""}


def test_hand_funnel_by_source_and_month() -> None:
    stages, leads = hand_tables()
    by_source = conversion.funnel_conversion(stages, leads, by="source")
    # web = L01-L05: mql L02-L05 = 4, sal L03-L05 = 3, sql L04, L05 = 2, opportunity L05, customer L05
    # event = L06-L10: mql L06, L07, L08, L10 = 4, sal L06, L07, L10 = 3, sql 3, opportunity 3, customer L06, L07 = 2
    assert by_source["source"].tolist() == ["event"] * 6 + ["web"] * 6  # groups sorted
    assert by_source["leads"].tolist() == [5, 4, 3, 3, 3, 2] + [5, 4, 3, 2, 1, 1]
    web = _by_stage(by_source[by_source["source"] == "web"])
    assert web.loc["customer", "rate_from_previous"] == 1.0  # 1 of 1 opportunity
    assert web.loc["sql", "rate_from_previous"] == 2 / 3
    by_month = conversion.funnel_conversion(stages, leads, by="month")
    # January = L01-L03: mql L02, L03; sal L03; nothing further
    jan = _by_stage(by_month[by_month["month"] == "2024-01"])
    assert jan["leads"].tolist() == [3, 2, 1, 0, 0, 0]
    assert jan.loc["sql", "note"] == "no lead reached this stage"
    assert jan.loc["sql", "rate_from_previous"] == 0.0  # 0 of 1 sal
    assert math.isnan(jan.loc["opportunity", "rate_from_previous"])  # 0 of 0 sql
    assert jan.loc["opportunity", "note"] == "no lead reached sql: rate undefined"
    assert (jan.loc["opportunity", "rate_from_previous_low"], jan.loc["opportunity", "rate_from_previous_high"]) == (0.0, 1.0)
    assert sorted(by_month["month"].unique()) == ["2024-01", "2024-02"]


def test_stage_no_lead_reached_is_reported_with_a_note() -> None:
    stages, leads = hand_tables()
    no_customers = stages[stages["stage"] != "customer"]
    table = _by_stage(conversion.funnel_conversion(no_customers, leads))
    # without customer rows: L07 is only a lead, L06 stops at sql.
    #   mql: L02-L06, L08, L10 = 7; sal: L03-L06, L10 = 5; sql: L04-L06, L10 = 4; opportunity: L05, L10 = 2
    assert table["leads"].tolist() == [10, 7, 5, 4, 2, 0]
    assert table.loc["customer", "rate_from_previous"] == 0.0
    assert table.loc["customer", "note"] == "no lead reached this stage"


def test_matured_mask_restricts_only_the_customer_step() -> None:
    stages, leads = hand_tables()
    matured = ~leads["lead_id"].isin(["L09", "L10"]).to_numpy()
    table = _by_stage(conversion.funnel_conversion(stages, leads, matured=matured))
    # earlier stages on all 10 leads, as before
    assert table["leads"].tolist()[:5] == [10, 8, 6, 5, 4]
    # customer on the 8 matured leads: opportunity L05, L06, L07 (L10 is not matured), customers all three
    assert table.loc["customer", ["leads", "previous", "base"]].tolist() == [3, 3, 8]
    assert table.loc["customer", "rate_from_previous"] == 1.0
    assert table.loc["customer", "rate_from_lead"] == 3 / 8
    assert table.loc["customer", "population"] == "matured"
    none = _by_stage(conversion.funnel_conversion(stages, leads, matured=np.zeros(10, dtype=bool)))
    assert none.loc["customer", "note"] == "no matured lead: rates toward customer are not known yet"
    assert math.isnan(none.loc["customer", "rate_from_lead"])
    with pytest.raises(ValueError, match="boolean mask of 10"):
        conversion.funnel_conversion(stages, leads, matured=np.ones(3, dtype=bool))


def test_within_days_ignores_late_stages() -> None:
    stages, leads = hand_tables()
    # within 15 days (360 h): L07's customer at 480 h is too late, so L07 stays a lead
    table = _by_stage(conversion.funnel_conversion(stages, leads, within_days=15))
    assert table["leads"].tolist() == [10, 7, 5, 4, 3, 2]


def test_conversion_counts_chain() -> None:
    stages, leads = hand_tables()
    counts = conversion.conversion_counts(stages, leads)
    # lead->mql 8 of 10, mql->sql 5 of 8, sql->customer 3 of 5
    assert counts[["from_stage", "to_stage", "successes", "trials"]].values.tolist() == [
        ["lead", "mql", 8, 10], ["mql", "sql", 5, 8], ["sql", "customer", 3, 5]]
    monthly = conversion.monthly_rates(stages, leads).set_index("month")
    # February = L04-L10: mql L04-L08, L10 = 6 of 7; sql L04-L07, L10 = 5 of 6; customer 3 of 5
    assert monthly.loc["2024-02"].tolist() == [6 / 7, 5 / 6, 3 / 5]
    assert monthly.loc["2024-01", "lead_to_mql"] == 2 / 3
    assert math.isnan(monthly.loc["2024-01", "sql_to_customer"])  # no SQL in January
    with pytest.raises(ValueError, match="funnel order"):
        conversion.conversion_counts(stages, leads, chain=("sql", "mql"))
    with pytest.raises(ValueError, match="not a column"):
        conversion.funnel_conversion(stages, leads, by="industry")


# ------------------------------------------------------------------------------------- SLA, durations

def test_sla_follow_up_by_hand() -> None:
    stages, _ = hand_tables()
    sla = timing.sla_follow_up(stages, sla_hours=[48, 24])
    # MQLs with an mql row: L02, L03, L04, L05, L06, L08, L10 = 7 (L07 skipped mql); all older than 48 h.
    # next stage, hours after the mql: L02 lost 100, L03 sal 10, L04 sal 30, L05 sal 2, L06 sql 60, L10 sal 20; L08 none
    assert (sla["mqls"], sla["mqls_due"], sla["mqls_not_yet_due"]) == (7, 7, 0)
    assert sla["accepted"]["mqls"] == 5 and sla["accepted"]["share"] == 5 / 7  # L03, L04, L05, L06, L10
    assert sla["followed_up"]["mqls"] == 6 and sla["followed_up"]["share"] == 6 / 7
    assert sla["next_stage"] == {"lost": 1, "sal": 4, "sql": 1}
    # sorted hours 2, 10, 20, 30, 60, 100: median (20 + 30) / 2 = 25; p90 at position 4.5: 60 + 0.5 * 40 = 80
    assert sla["hours_to_next_stage"] == {"mqls": 6, "median": 25.0, "p90": 80.0}
    # within 24 h: 2, 10, 20 -> 3 of 7; within 48 h: + 30 -> 4 of 7 (the unfollowed L08 is a miss)
    assert [(w["hours"], w["mqls"], w["share"]) for w in sla["within_sla"]] == [(24, 3, 3 / 7), (48, 4, 4 / 7)]
    strict = timing.sla_follow_up(stages, sla_hours=[24], lost_is_follow_up=False)
    assert strict["followed_up"]["mqls"] == 5  # L02's lost no longer counts
    # as of 47 h after L08's mql, L08 and L10 (whose mql is at the same moment) are not due for a 48 h SLA
    recent = timing.sla_follow_up(stages, as_of=_created("L08") + pd.Timedelta(hours=72 + 47))
    assert recent["mqls_not_yet_due"] == 2  # L08, and L10 (created two days later)
    with pytest.raises(ValueError, match="sla_hours"):
        timing.sla_follow_up(stages, sla_hours=[])
    with pytest.raises(ValueError, match="sla_hours"):
        timing.sla_follow_up(stages, sla_hours=[24, -1])


def test_stage_durations_by_hand() -> None:
    stages, leads = hand_tables()
    result = timing.stage_durations(stages, leads)
    t = result["transitions"].set_index(["from_stage", "to_stage"])
    # lead->mql: 24, 48, 24, 24, 48, 72, 24 h = 1, 2, 1, 1, 2, 3, 1 days: median 1; p90 at 5.4: 2 + 0.4 = 2.4
    assert t.loc[("lead", "mql")].tolist() == [7, 1.0, pytest.approx(2.4), 0]
    # mql->sal: 10, 30, 2, 20 h: median 15 h; p90 at 2.7: 20 + 0.7 * 10 = 27 h
    assert t.loc[("mql", "sal"), "median_days"] == pytest.approx(15 / 24)
    assert t.loc[("mql", "sal"), "p90_days"] == pytest.approx(27 / 24)
    # skipped stages make their own transitions
    assert t.loc[("mql", "sql"), "leads"] == 1 and t.loc[("mql", "sql"), "median_days"] == 2.5   # L06, 60 h
    assert t.loc[("sql", "customer"), "median_days"] == 10.0                                    # L06, 240 h
    assert t.loc[("lead", "customer"), "median_days"] == 20.0                                   # L07, 480 h
    assert t.loc[("sal", "sql")].tolist() == [3, 2.0, 2.0, 0]                                   # 48 h each
    assert ("lead", "lost") not in t.index  # lost is not a funnel stage
    assert list(t.index) == sorted(t.index, key=lambda p: (common.RANK[p[0]], common.RANK[p[1]]))
    # sales cycle: 242, 348, 480 h = 10.083, 14.5, 20 days: median 14.5, p90 at 1.8: 14.5 + 0.8 * 5.5 = 18.9
    assert result["sales_cycle"]["customers"] == 3
    assert result["sales_cycle"]["median_days"] == 14.5
    assert result["sales_cycle"]["p90_days"] == pytest.approx(18.9)
    cycle = result["by"]["sales_cycle"].set_index("source")
    assert cycle.loc["web"].tolist() == [1, pytest.approx(242 / 24), pytest.approx(242 / 24)]
    # event: 348, 480 h: median 414 h; p90 348 + 0.9 * 132 = 466.8 h
    assert cycle.loc["event"].tolist() == [2, pytest.approx(414 / 24), pytest.approx(466.8 / 24)]
    # without leads: the lead row dates the start, and no source column -> no groups
    alone = timing.stage_durations(stages)
    assert alone["by"] is None and alone["sales_cycle"]["median_days"] == 14.5
    with pytest.raises(ValueError, match="not a column"):
        timing.stage_durations(stages, leads, by="industry")


# ------------------------------------------------------------------------------------- rejections

def test_rejection_feedback_by_hand() -> None:
    stages, leads = hand_tables()
    outcomes = feedback.mql_outcomes(stages, leads["lead_id"])
    # MQLs: L02-L08, L10 (8); rejected: L02 and L03 (lost without sql). L04 reached sql, L08 has no lost,
    # L09 was lost without being an MQL.
    assert outcomes.index[outcomes["mql"]].tolist() == ["L02", "L03", "L04", "L05", "L06", "L07", "L08", "L10"]
    assert outcomes.index[outcomes["rejected"]].tolist() == ["L02", "L03"]
    ids = leads["lead_id"].tolist()
    matrix = pd.DataFrame({
        "only_rejected": [int(x in ("L01", "L02", "L03", "L09")) for x in ids],  # L01, L09 are not MQLs
        "never_rejected": [int(x in ("L05", "L06")) for x in ids],
        "everyone": [1] * 10,
        "nobody": [0] * 10,
    }, index=pd.Index(ids, name="lead_id"))
    catalog = pd.DataFrame({"signal": matrix.columns, "kind": ["engagement", "engagement", "fit", "fit"]})
    result = feedback.rejection_feedback(stages, matrix, catalog)
    assert result["overall"]["mqls"] == 8 and result["overall"]["rejected"] == 2
    assert result["overall"]["rate"] == 0.25
    table = result["signals"]
    assert table["signal"].tolist() == ["only_rejected", "everyone", "never_rejected", "nobody"]
    rows = table.set_index("signal")
    assert rows.loc["only_rejected", ["mqls", "rejected", "rejection_rate"]].tolist() == [2, 2, 1.0]
    assert rows.loc["only_rejected", "relative"] == 4.0  # 100 % vs 25 %
    assert rows.loc["only_rejected", "share_of_rejected"] == 1.0
    assert rows.loc["only_rejected", "kind"] == "engagement"
    assert rows.loc["everyone", ["mqls", "rejected", "rejection_rate", "relative"]].tolist() == [8, 2, 0.25, 1.0]
    assert rows.loc["never_rejected", "rejection_rate"] == 0.0
    assert rows.loc["nobody", "mqls"] == 0 and math.isnan(rows.loc["nobody", "rejection_rate"])
    with pytest.raises(ValueError, match="0/1"):
        feedback.rejection_feedback(stages, matrix * 2)


def test_lost_before_becoming_an_mql_is_not_a_rejection() -> None:
    # R1: lost at 10 h, recycled, MQL at 50 h, nothing since: not rejected (yet).
    # R2: MQL at 5 h, lost at 30 h: rejected. R3: MQL at 5 h, sql at 8 h, lost at 30 h: reached sql, not rejected.
    rows = [("R1", "lead", 0), ("R1", "lost", 10), ("R1", "mql", 50), ("R2", "lead", 0), ("R2", "mql", 5),
            ("R2", "lost", 30), ("R3", "lead", 0), ("R3", "mql", 5), ("R3", "sql", 8), ("R3", "lost", 30)]
    stages = pd.DataFrame([{"lead_id": i, "stage": s, "entered_at": BASE + pd.Timedelta(hours=h)} for i, s, h in rows])
    outcomes = feedback.mql_outcomes(stages, ["R1", "R2", "R3", "R4"])  # R4 has no stage row at all
    assert outcomes["mql"].tolist() == [True, True, True, False]
    assert outcomes["rejected"].tolist() == [False, True, False, False]


# ------------------------------------------------------------------------------------- planning

HAND_RATES = {"lead->mql": (8, 10), "mql->sql": (5, 8), "sql->customer": (3, 5)}


def test_plan_volume_point_estimate_by_hand() -> None:
    plan = planning.plan_volume(HAND_RATES, customers=3)
    # 3 customers / (3/5) = 5 SQLs; / (5/8) = 8 MQLs; / (8/10) = 10 leads
    volumes = {v["stage"]: v for v in plan["volumes"]}
    assert [v["stage"] for v in plan["volumes"]] == ["lead", "mql", "sql", "customer"]
    assert [volumes[s]["needed"] for s in ("lead", "mql", "sql", "customer")] == [10, 8, 5, 3]
    assert "visitor" not in volumes
    for v in plan["volumes"]:
        assert v["low"] <= v["needed"] <= v["high"]
    # the same counts from conversion_counts, and the order of the steps does not matter
    stages, leads = hand_tables()
    assert planning.plan_volume(conversion.conversion_counts(stages, leads), customers=3)["volumes"] == plan["volumes"]
    shuffled = dict(reversed(list(HAND_RATES.items())))
    assert planning.plan_volume(shuffled, customers=3) == plan
    # visitors only when a visitor->lead rate is given: 10 leads / 2 % = 500 visitors
    with_visitors = planning.plan_volume({"visitor->lead": (200, 10_000), **HAND_RATES}, customers=3)
    assert with_visitors["volumes"][0]["stage"] == "visitor"
    assert with_visitors["volumes"][0]["needed"] == 500


def test_plan_volume_interval_tight_with_huge_counts_wide_with_tiny() -> None:
    huge = {"lead->mql": (40_000_000, 100_000_000), "mql->sql": (25_000_000, 100_000_000),
            "sql->customer": (10_000_000, 100_000_000)}
    plan = planning.plan_volume(huge, customers=100)
    lead = plan["volumes"][0]
    # point: 100 / (0.4 * 0.25 * 0.1) = 10,000 leads
    assert lead["needed"] == 10_000
    assert lead["low"] <= 10_000 <= lead["high"]
    assert (lead["high"] - lead["low"]) / lead["needed"] < 0.005
    tiny = planning.plan_volume({"lead->mql": (2, 5), "mql->sql": (1, 4), "sql->customer": (1, 10)}, customers=100)
    lead = tiny["volumes"][0]
    assert lead["needed"] == 10_000  # the same point estimate
    assert lead["low"] < 0.5 * lead["needed"] and lead["high"] > 2 * lead["needed"]
    # seeded: the same seed gives the same interval, another seed a different one
    again = planning.plan_volume({"lead->mql": (2, 5), "mql->sql": (1, 4), "sql->customer": (1, 10)}, customers=100)
    assert again == tiny
    other = planning.plan_volume({"lead->mql": (2, 5), "mql->sql": (1, 4), "sql->customer": (1, 10)}, customers=100, seed=1)
    assert other["volumes"][0]["high"] != lead["high"]


def test_plan_volume_revenue_equals_customers() -> None:
    by_revenue = planning.plan_volume(HAND_RATES, revenue=250_000, average_deal=20_000)  # 12.5 -> 13 customers
    by_customers = planning.plan_volume(HAND_RATES, customers=13)
    assert by_revenue["customers"] == 13
    assert by_revenue["volumes"] == by_customers["volumes"]
    exact = planning.plan_volume(HAND_RATES, revenue=0.3, average_deal=0.1)  # 0.3 / 0.1 = 2.9999999999999996 -> 3
    assert exact["customers"] == 3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"customers": 0}, "customers must be a positive"),
    ({"customers": -5}, "customers must be a positive"),
    ({"customers": 2.5}, "whole number"),
    ({}, "exactly one of customers or revenue"),
    ({"customers": 3, "revenue": 1000.0, "average_deal": 10.0}, "exactly one of customers or revenue"),
    ({"revenue": 1000.0}, "revenue needs average_deal"),
    ({"revenue": 1000.0, "average_deal": 0}, "average_deal must be a positive"),
    ({"revenue": -1.0, "average_deal": 10}, "revenue must be a positive"),
    ({"customers": 3, "average_deal": 10}, "average_deal is only used with revenue"),
    ({"customers": 3, "confidence": 1.0}, "confidence"),
    ({"customers": 3, "simulations": 10}, "simulations"),
])
def test_plan_volume_rejects_bad_targets(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        planning.plan_volume(HAND_RATES, **kwargs)


@pytest.mark.parametrize(("rates", "message"), [
    ({}, "no steps"),
    ({"lead->mql": (11, 10)}, "successes for 10 trials"),
    ({"lead->mql": (-1, 10)}, "successes for 10 trials"),
    ({"lead->mql": (0, 0)}, "at least one"),
    ({"lead->mql": (0, 10)}, "converted 0 of 10"),
    ({"lead->mql": (1.5, 10)}, "whole number"),
    ({"lead->mql": (1, 10), "sql->customer": (1, 10)}, "one chain"),
    ({"lead->mql": (1, 10), "mql->lead": (1, 10)}, "one chain"),
    ({"lead to mql": (1, 10)}, "must be 'from->to'"),
    ({"lead->mql": 0.3}, r"needs \(successes, trials\)"),
    ([("lead", "mql", 1, 10)], "expected a mapping"),
])
def test_plan_volume_rejects_bad_rates(rates: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        planning.plan_volume(rates, customers=3)


# ------------------------------------------------------------------------------------- default sample

@pytest.fixture(scope="module")
def sample(default_run: Params) -> dict[str, pd.DataFrame]:
    paths = default_run.paths
    return {
        "stages": io.read_parquet(paths.extracted / "stages.parquet"),
        "leads": io.read_parquet(paths.extracted / "leads.parquet"),
        # one row per lead (its first snapshot): the funnel counts leads
        "features": io.read_parquet(paths.features / "features.parquet").drop_duplicates("lead_id"),
    }


def test_sample_customers_match_matured_closed_leads(sample: dict[str, pd.DataFrame], default_run: Params) -> None:
    stages, leads, features = sample["stages"], sample["leads"], sample["features"]
    matured_ids = set(features.loc[features["matured"], "lead_id"])
    matured = leads["lead_id"].isin(matured_ids).to_numpy()
    customers = int((features["closed"] == 1).sum())
    assert customers > 100
    # restricted to matured leads, with or without the horizon (the generator closes every deal inside it)
    for within in (None, default_run.outcome.horizon_days):
        only = _by_stage(conversion.funnel_conversion(stages, leads[matured], within_days=within))
        assert only.loc["customer", "leads"] == customers
        masked = _by_stage(conversion.funnel_conversion(stages, leads, matured=matured, within_days=within))
        assert masked.loc["customer", "leads"] == customers
        assert masked.loc["customer", "base"] == int(matured.sum())
    # all leads count more customers (immature leads that already closed)
    everyone = _by_stage(conversion.funnel_conversion(stages, leads))
    assert everyone.loc["customer", "leads"] == stages.loc[stages["stage"] == "customer", "lead_id"].nunique() > customers


def test_sample_sql_to_customer_rate_matches_pandas(sample: dict[str, pd.DataFrame]) -> None:
    stages, leads, features = sample["stages"], sample["leads"], sample["features"]
    matured_ids = set(features.loc[features["matured"], "lead_id"])
    mine = stages[stages["lead_id"].isin(matured_ids)]
    # The generator walks every closed lead through mql -> sal -> sql -> opportunity -> customer:
    won = set(mine.loc[mine["stage"] == "customer", "lead_id"])
    for stage in ("mql", "sal", "sql", "opportunity"):
        assert won <= set(mine.loc[mine["stage"] == stage, "lead_id"])
    # independently: SQLs are matured leads with an sql row (or a later one), customers are closed == 1
    sqls = mine.loc[mine["stage"].isin(["sql", "opportunity", "customer"]), "lead_id"].nunique()
    opportunities = mine.loc[mine["stage"].isin(["opportunity", "customer"]), "lead_id"].nunique()
    mqls = mine.loc[mine["stage"].isin(["mql", "sal", "sql", "opportunity", "customer"]), "lead_id"].nunique()
    customers = int((features["closed"] == 1).sum())
    counts = conversion.conversion_counts(stages, leads, matured=leads["lead_id"].isin(matured_ids).to_numpy())
    step = counts.set_index("to_stage").loc["customer"]
    assert (step["successes"], step["trials"]) == (customers, sqls)
    assert step["population"] == "matured"
    assert customers / mqls < step["rate"] < customers / opportunities
    low, high = wilson_interval(np.array([customers]), np.array([sqls]))
    assert (step["low"], step["high"]) == (low[0], high[0])
    assert 0.05 < step["rate"] < 0.5  # a plausible B2B SQL close rate, not 0 or 1 from a wrong join


def test_run_writes_the_artifacts(default_run: Params, tmp_path) -> None:
    models = tmp_path / "models"
    (models).mkdir()
    (models / "signals.json").write_bytes((default_run.paths.models / "signals.json").read_bytes())
    params = default_run.model_copy(update={"paths": default_run.paths.model_copy(update={"models": models})})
    payload = funnel.run(params, [24, 48])
    written = io.read_json(models / "funnel.json")
    assert set(written) == {"population", "funnel", "by_source", "by_segment", "by_month", "plan_steps", "sla", "durations",
                            "rejection_feedback"}
    assert [row["stage"] for row in written["funnel"]] == list(common.FUNNEL)
    assert len(written["rejection_feedback"]["signals"]) == funnel.TOP_REJECTION_SIGNALS
    assert written["population"]["leads"] == default_run.generate.n_leads
    customers = next(r for r in written["funnel"] if r["stage"] == "customer")
    features = io.read_parquet(default_run.paths.features / "features.parquet").drop_duplicates("lead_id")
    assert customers["leads"] == int((features["closed"] == 1).sum())
    assert {r["source"] for r in written["by_source"]} == set(features["source"].dropna())
    assert [w["hours"] for w in written["sla"]["within_sla"]] == [24, 48]
    assert len(payload["funnel"]) == 6
    plot = pd.read_csv(models / "plots" / "funnel.csv")
    assert plot.columns.tolist() == ["stage", "leads", "rate_from_previous"]
    monthly = pd.read_csv(models / "plots" / "funnel_by_month.csv")
    assert monthly.columns.tolist() == ["month", "lead_to_mql", "mql_to_sql", "sql_to_customer"]
    assert len(monthly) == 24
    # the latest months have not matured: no customer rate yet, but their top of funnel is there
    assert monthly["sql_to_customer"].isna().iloc[-2:].all() and monthly["lead_to_mql"].notna().all()
    # a plan from the published steps works end to end
    plan = planning.plan_volume(pd.DataFrame(written["plan_steps"]), customers=10)
    assert plan["volumes"][0]["stage"] == "lead" and plan["volumes"][0]["needed"] > 10


def test_funnel_by_segment_matches_pandas(default_run) -> None:
    """Customers per company-size band in funnel.json equal a plain pandas count on the features."""

    from pipeline.core.signals import band

    funnel = io.read_json(default_run.paths.models / "funnel.json")
    features = io.read_parquet(default_run.paths.features / "features.parquet").drop_duplicates("lead_id")
    matured = features[features["closed"] >= 0]
    bands = band(matured["company_size"], default_run.signals.numeric_bins["company_size"])
    expected = matured.groupby(bands)["closed"].agg(["size", "sum"])
    rows = {r["company_size"]: r for r in funnel["by_segment"]["company_size"] if r["stage"] == "customer"}
    for label, (size, won) in expected.iterrows():
        assert rows[label]["leads"] == won
        assert rows[label]["rate_from_lead"] == pytest.approx(won / size)
    # funnel.segments: null in params.yaml: every fit attribute of the leads, source aside (by_source has it)
    leads = io.read_parquet(default_run.paths.extracted / "leads.parquet")
    assert default_run.funnel.segments is None
    assert set(funnel["by_segment"]) == {a for a in default_run.signals.fit_attributes if a in leads.columns} - {"source"}


def test_rejection_feedback_sees_each_mql_as_it_was_when_it_became_one() -> None:
    """Not its last row: a rejected MQL is soon lost and seen early, an accepted one is seen later."""
    t0 = pd.Timestamp("2024-01-01")
    features = pd.DataFrame({
        "lead_id": ["A", "A", "A", "B", "B", "C", "C", "C"],
        "snapshot_days": [0, 7, 30, 0, 7, 0, 7, 30],
        "closed": [0, 0, 0, 0, 0, -1, -1, -1],
    })
    features["cutoff_at"] = t0 + pd.to_timedelta(features["snapshot_days"], unit="D")
    stages = pd.DataFrame({"lead_id": ["A", "A", "B", "C"], "stage": ["mql", "sql", "lost", "mql"],
                           "entered_at": [t0 + pd.Timedelta(days=10), t0 + pd.Timedelta(days=40),
                                          t0 + pd.Timedelta(days=9), t0 + pd.Timedelta(days=2)]})
    # A: MQL on day 10 -> its day-7 row; B: never an MQL -> its first row; C: not matured -> left out
    assert feedback.rows_at_mql(features, stages).tolist() == [1, 3]


def test_segments_default_to_the_fit_attributes_the_export_has(caplog: pytest.LogCaptureFixture) -> None:
    """funnel.segments: null (the default) breaks the funnel down by every fit attribute present, without
    a warning for the ones an export lacks; an explicit list is kept as given, a missing one warned about."""
    import logging

    from pipeline.params import Funnel

    assert Funnel().segments is None
    leads = pd.DataFrame({"lead_id": ["A", "B", "C"], "country": ["FR", None, "DE"], "source": ["ads", "seo", "ads"],
                          "company_size": [5, 60, None]})
    default = Params.model_validate({"signals": {"fit_attributes": ["industry", "company_size", "country", "source"]}})
    assert funnel.segment_attributes(leads, default) == ["company_size", "country"]
    with caplog.at_level(logging.WARNING, logger="pipeline.stages.funnel"):
        segmented = funnel._segments(leads, default)
    assert list(segmented) == ["company_size", "country"] and caplog.text == ""
    edges = default.signals.numeric_bins["company_size"]
    from pipeline.core.signals import band

    assert segmented["company_size"]["company_size"].tolist() == band(leads["company_size"], edges).tolist()

    explicit = Params.model_validate({"funnel": {"segments": ["industry", "country"]}})
    assert funnel.segment_attributes(leads, explicit) == ["industry", "country"]
    with caplog.at_level(logging.WARNING, logger="pipeline.stages.funnel"):
        assert list(funnel._segments(leads, explicit)) == ["country"]
    assert "segment 'industry' is not a lead column" in caplog.text
