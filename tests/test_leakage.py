"""Outcomes must not leak into the features: a history where nothing predicts closing looks like it.

The generated history below is what real exports hold when the activity says nothing: which
activities a lead does, and when, is independent of its outcome, while wins and losses fall at
random inside the first weeks (the fast deciders a naive cut-off sees "as of their outcome").
Every statistic must then say "no effect": lifts whose intervals hold 1, points near 0, a
held-out AUC of 0.5. And the leakage screen flags a field filled in after the deal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.params import Params
from pipeline.stages.extract import extract

from .conftest import params_in, run_stages

ACTIVITIES = {"webinar_attendance": 0.3, "pricing_page_visit": 0.2, "demo_request": 0.1, "email_open": 0.6,
              "blog_read": 0.4, "form_submission": 0.25}
DAY = pd.Timedelta(days=1)


def write_null_history(raw: Path, n: int = 20_000, seed: int = 5, leaked_field: bool = False) -> None:
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 540, n), unit="D").round("s")
    ids = np.array([f"N{i:05d}" for i in range(n)])
    won = rng.random(n) < 0.12
    lost = ~won & (rng.random(n) < 0.3)
    # outcomes at random inside the first weeks, whatever the lead did
    decided = created + pd.to_timedelta(rng.uniform(1, 45, n), unit="D").round("s")
    leads = pd.DataFrame({"lead_id": ids, "created_at": created,
                          "industry": rng.choice(["software", "retail", "education", "finance"], n),
                          "source": rng.choice(["organic", "paid", "referral"], n)})
    if leaked_field:  # filled in by sales after the deal: "closed won" for every customer
        leads["deal_status"] = np.where(won & (created + 90 * DAY < pd.Timestamp("2025-09-01")), "won", "open")
    onboarding = pd.DataFrame({"lead_id": ids[won], "activity": "onboarding_call",  # logged after the win
                               "occurred_at": decided[won] + pd.to_timedelta(rng.uniform(0.1, 9, won.sum()), unit="D").round("s")})
    parts = []
    for activity, share in ACTIVITIES.items():
        doers = np.flatnonzero(rng.random(n) < share)
        counts = 1 + rng.poisson(1.0, len(doers))
        owner = np.repeat(doers, counts)
        parts.append(pd.DataFrame({"lead_id": ids[owner], "activity": activity,
                                   "occurred_at": created[owner] + pd.to_timedelta(rng.uniform(0, 40, len(owner)), unit="D").round("s")}))
    stages = pd.concat([
        pd.DataFrame({"lead_id": ids, "stage": "lead", "entered_at": created}),
        pd.DataFrame({"lead_id": ids[won], "stage": "customer", "entered_at": decided[won]}),
        pd.DataFrame({"lead_id": ids[lost], "stage": "lost", "entered_at": decided[lost]}),
    ])
    end = pd.Timestamp("2025-09-01")
    raw.mkdir(parents=True)
    leads[leads["created_at"] < end].to_csv(raw / "leads.csv", index=False)
    events = pd.concat([*parts, onboarding] if leaked_field else parts)
    events[events["occurred_at"] < end].to_csv(raw / "activities.csv", index=False)
    stages[stages["entered_at"] < end].to_csv(raw / "stages.csv", index=False)


@pytest.fixture(scope="module")
def null_run(tmp_path_factory: pytest.TempPathFactory) -> Params:
    params = params_in(tmp_path_factory.mktemp("null_history"),
                       signals={"fit_attributes": ["industry", "source"], "numeric_bins": {}},
                       weights={"bootstrap_samples": 0}, train={"folds": 2, "min_customers": 50},
                       thresholds={"bootstrap_samples": 0})
    write_null_history(params.paths.raw)
    extract(params)
    run_stages(params, ["features", "close-rates", "weights", "train"])
    return params


def test_no_signal_looks_better_or_worse_than_average(null_run: Params) -> None:
    rates = pd.read_csv(null_run.paths.models / "close_rates.csv")
    rates = rates[rates["leads"] >= 30]
    assert len(rates) >= 10
    missed = ~((rates["lift_ci_low"] <= 1.0) & (rates["lift_ci_high"] >= 1.0))
    # a 95 % interval misses 1 in 20 times: allow that, not a pattern
    assert missed.sum() <= max(1, int(np.ceil(0.05 * len(rates)))), rates.loc[missed, ["signal", "lift", "lift_ci_low",
                                                                                       "lift_ci_high"]]
    assert (rates["close_rate"] < 0.5).all()


def test_no_signal_earns_more_than_a_few_points(null_run: Params) -> None:
    weights = pd.read_csv(null_run.paths.models / "weights.csv")
    assert weights["points"].abs().max() <= 6, weights.loc[weights["points"].abs() > 6, ["signal", "points", "leads"]]


def test_held_out_auc_is_a_coin_toss(null_run: Params) -> None:
    metrics = io.read_json(null_run.paths.models / "metrics" / "train.json")
    for scorer in ("model", "points_table"):
        assert metrics[scorer]["mean"]["auc"] == pytest.approx(0.5, abs=0.03), scorer


def test_the_leakage_screen_flags_a_field_filled_in_after_the_deal(tmp_path: Path) -> None:
    params = params_in(tmp_path, signals={"fit_attributes": ["industry", "deal_status"], "numeric_bins": {}})
    write_null_history(params.paths.raw, n=3000, leaked_field=True)
    extract(params)
    run_stages(params, ["features"])
    flagged = io.read_json(params.paths.features / "features_report.json")["leakage_screen"]["signals"]
    assert {f["signal"] for f in flagged} == {"deal_status = won", "deal_status = open"}  # nothing else
    won = next(f for f in flagged if f["signal"] == "deal_status = won")
    assert "closed (100%)" in won["why"] and won["auc"] >= 0.95
    after = io.read_json(params.paths.features / "features_report.json")["leakage_screen"]["activities_after_outcome"]
    assert [a["activity"] for a in after] == ["onboarding_call"] and after[0]["share_after_outcome"] == 1.0
