"""A ten-lead export whose point-in-time rows, close rates, interval and labels are computed by hand.

Every rule of the data contract shows up once: an event after the last snapshot, an event
after the deal, a fast deal (day 10: the lead is seen on days 0 and 7, never as of its win),
a deal after the horizon, a lead too young to be labelled, and a repeated event.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipeline import io
from pipeline.params import Params
from pipeline.stages import close_rates
from pipeline.stages.extract import extract
from pipeline.stages.features import build_features

from .conftest import params_in

START = datetime(2024, 1, 1, 9, 0)


def day(n: float, start: datetime = START) -> str:
    return (start + timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_fixture(raw: Path) -> None:
    late = datetime(2024, 12, 1, 9, 0)
    leads = [(f"L{i}", day(0)) for i in range(1, 9)] + [("L9", day(0, late)), ("L10", day(0))]
    activities = [
        ("L1", "webinar_attendance", day(2)),
        ("L2", "webinar_attendance", day(5)),
        ("L3", "webinar_attendance", day(10)),
        ("L4", "webinar_attendance", day(29)),
        ("L5", "webinar_attendance", day(35)),  # after the last snapshot (day 30): not seen
        ("L7", "demo_request", day(3)),
        ("L7", "webinar_attendance", day(15)),  # after L7's deal on day 10: not seen
        ("L8", "blog_read", day(1)),
        ("L9", "webinar_attendance", day(2, late)),  # lead too young to be labelled
        ("L10", "webinar_attendance", day(1)),
        ("L10", "webinar_attendance", day(3)),  # second time: still one lead
    ]
    stages = [(lead, "lead", created, "") for lead, created in leads] + [
        ("L1", "customer", day(50), "1000"),
        ("L2", "customer", day(120), "1000"),  # after the 90-day horizon: not closed
        ("L3", "lost", day(40), ""),
        ("L4", "customer", day(60), "2500.5"),
        ("L5", "customer", day(70), "1000"),
        ("L6", "lost", day(45), ""),
        ("L7", "customer", day(10), "1000"),
    ]
    raw.mkdir(parents=True)
    pd.DataFrame(leads, columns=["lead_id", "created_at"]).assign(industry="software").to_csv(raw / "leads.csv", index=False)
    pd.DataFrame(activities, columns=["lead_id", "activity", "occurred_at"]).to_csv(raw / "activities.csv", index=False)
    pd.DataFrame(stages, columns=["lead_id", "stage", "entered_at", "amount"]).to_csv(raw / "stages.csv", index=False)


@pytest.fixture()
def small(tmp_path: Path) -> Params:
    params = params_in(
        tmp_path,
        outcome={"horizon_days": 90, "snapshot_days": [0, 7, 30], "as_of": "2024-12-31"},
        signals={"fit_attributes": ["industry"], "frequency": {"discover": False}, "min_support": 1},
    )
    write_fixture(params.paths.raw)
    extract(params)
    return params


def test_labels_and_snapshots_follow_the_contract(small: Params) -> None:
    features, report = build_features(small)
    f = features.set_index(["lead_id", "snapshot_days"])
    seen = features.groupby("lead_id")["snapshot_days"].apply(list)
    assert seen["L1"] == [0, 7, 30] and seen["L8"] == [0, 7, 30]
    assert seen["L7"] == [0, 7]  # won on day 10: seen on days 0 and 7, never as of its win
    assert seen["L9"] == [0, 7]  # created 30 days before the export (09:00): day 30 has not come
    closed = features.groupby("lead_id")["closed"].first()
    assert closed[["L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8", "L10"]].tolist() == [1, 0, 0, 1, 1, 0, 1, 0, 0]
    assert closed["L9"] == -1  # outcome unknown
    assert f.loc[("L7", 7), "cutoff_at"] == pd.Timestamp(day(7)).tz_localize(None)
    assert (features.loc[features["snapshot_days"] == 0, "n__webinar_attendance"] == 0).all()  # nothing before creation
    assert f.loc[("L5", 30), "n__webinar_attendance"] == 0  # day 35 is after every snapshot
    assert f.loc[("L7", 7), "n__webinar_attendance"] == 0 and f.loc[("L7", 7), "n__demo_request"] == 1
    assert f.loc[("L3", 7), "n__webinar_attendance"] == 0 and f.loc[("L3", 30), "n__webinar_attendance"] == 1
    assert f.loc[("L10", 7), "n__webinar_attendance"] == 2
    assert f.loc[("L4", 30), "age__webinar_attendance"] == pytest.approx(1.0)  # day 29 seen from day 30
    assert f.loc[("L1", 7), "age__webinar_attendance"] == pytest.approx(5.0)  # day 2 seen from day 7
    assert report["matured_leads"] == 9 and report["customers_in_horizon"] == 4
    day30 = next(s for s in report["snapshots"] if s["snapshot_days"] == 30)
    assert (day30["leads_old_enough"], day30["decided_before"], day30["won_before"], day30["rows"]) == (9, 1, 1, 8)


def test_close_rate_and_interval_match_hand_computation(small: Params) -> None:
    from pipeline.stages.features import write_features

    write_features(small)
    metrics = close_rates.run(small)
    table = pd.read_csv(small.paths.models / "close_rates.csv").set_index("signal")
    webinar = table.loc["webinar_attendance"]
    # Each matured lead counted once, at the first snapshot where it had attended: L1, L2, L10 on
    # day 7, L3 and L4 on day 30 (L5 attended after day 30, L7 after its deal).
    assert (webinar["leads"], webinar["customers"]) == (5, 2)
    assert webinar["close_rate"] == pytest.approx(0.4)
    # Wilson 95 % for 2/5, by hand: centre 0.78415/1.76829 = 0.44345, half 0.32583.
    assert webinar["ci_low"] == pytest.approx(0.1176, abs=1e-4)
    assert webinar["ci_high"] == pytest.approx(0.7693, abs=1e-4)
    # Average: 4 customers among 9 matured leads. Still open on day 7: the 9, 4 of them customers;
    # on day 30: 8 (L7 won on day 10), 3 customers. Expected for the webinar's leads:
    # (3 x 4/9 + 2 x 3/8) / 5 = 0.416667; lift = 0.4 / 0.416667 = 0.96.
    assert metrics["average_close_rate"] == pytest.approx(4 / 9)
    assert metrics["close_rate_by_snapshot"] == pytest.approx({"0": 4 / 9, "7": 4 / 9, "30": 3 / 8})
    assert webinar["expected_close_rate"] == pytest.approx((3 * 4 / 9 + 2 * 3 / 8) / 5, abs=1e-6)
    assert webinar["lift"] == pytest.approx(0.96, abs=1e-5)
    assert webinar["lift_ci_low"] == pytest.approx(webinar["ci_low"] / webinar["expected_close_rate"], rel=1e-5)
    demo = table.loc["demo_request"]
    assert (demo["leads"], demo["customers"], demo["close_rate"]) == (1, 1, 1.0)
    assert io.read_json(small.paths.models / "metrics" / "close_rates.json")["customers"] == 4
