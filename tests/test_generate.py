"""The sample generator: deterministic, realistic, and its truth matches its data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data.contract import STAGES
from pipeline.data.generate import _true_logit, generate
from pipeline.params import Params


@pytest.fixture(scope="module")
def sample() -> dict:
    return generate(Params.model_validate({"generate": {"n_leads": 4000}}))


def test_same_seed_same_sample_other_seed_other_sample(sample: dict) -> None:
    again = generate(Params.model_validate({"generate": {"n_leads": 4000}}))
    other = generate(Params.model_validate({"seed": 7, "generate": {"n_leads": 4000}}))
    for table in ("leads", "activities", "stages"):
        pd.testing.assert_frame_equal(sample[table], again[table])
    assert not sample["activities"].equals(other["activities"])


def test_funnel_dates_are_in_order_and_stages_known(sample: dict) -> None:
    stages = sample["stages"]
    assert set(stages["stage"]) <= set(STAGES)
    order = {s: i for i, s in enumerate(STAGES[:-1])}
    won = stages[stages["stage"] != "lost"].assign(rank=lambda f: f["stage"].map(order))
    for _, lead in won.groupby("lead_id"):
        assert lead.sort_values("rank")["entered_at"].is_monotonic_increasing
    created = sample["leads"].set_index("lead_id")["created_at"]
    events = sample["activities"]
    assert (events["occurred_at"].to_numpy() >= created.reindex(events["lead_id"]).to_numpy()).all()


def test_truth_probabilities_match_the_realised_outcomes(sample: dict) -> None:
    truth = sample["truth_probabilities"]
    assert truth["p_close"].mean() == pytest.approx(sample["truth"]["target_close_rate"], rel=1e-6)
    # customers are drawn from these probabilities: the top fifth closes far more often
    top = truth["p_close"] >= truth["p_close"].quantile(0.8)
    assert truth.loc[top, "closed"].mean() > 2.5 * truth.loc[~top, "closed"].mean()
    # every drawn customer has a customer stage unless the export ended first
    customers = set(sample["stages"].loc[sample["stages"]["stage"] == "customer", "lead_id"])
    assert customers <= set(truth.loc[truth["closed"] == 1, "lead_id"])


def test_attendance_and_clicks_follow_their_parent_activity(sample: dict) -> None:
    events = sample["activities"]
    first = events.groupby(["lead_id", "activity"])["occurred_at"].min().unstack()
    for child, parent in (("webinar_attendance", "webinar_registration"), ("email_click", "email_open")):
        has_child = first[child].notna()
        assert first.loc[has_child, parent].notna().all(), child
        assert (first.loc[has_child, child] >= first.loc[has_child, parent]).all(), child


def test_truth_is_a_function_of_the_exported_events_before_each_moment_of_decision(sample: dict) -> None:
    # Rebuild every lead's true probability from the exported activity log alone, taken at its
    # moment of decision: day 30, or the day of its win or loss for a fast decider. Events
    # after that moment (post-deal activity included) must not matter, and nothing the truth
    # counted may be missing from the export.
    leads = sample["leads"].copy()
    leads["year2"] = leads["created_at"] >= pd.Timestamp("2025-01-01")
    position = pd.Series(np.arange(len(leads)), index=leads["lead_id"])
    created = leads["created_at"].to_numpy()
    events = sample["activities"]
    offsets = (events["occurred_at"].to_numpy() - created[position[events["lead_id"]].to_numpy()])
    offsets = offsets / np.timedelta64(1, "s")
    by_activity = {
        name: (position[events.loc[rows, "lead_id"]].to_numpy(), offsets[rows.to_numpy()])
        for name in sample["truth"]["activities"]
        for rows in [events["activity"] == name]
    }
    window = sample["truth"]["window_days"] * 86_400.0
    outcomes = sample["stages"][sample["stages"]["stage"].isin(["customer", "lost"])].groupby("lead_id")["entered_at"].min()
    outcome_offset = (outcomes.reindex(leads["lead_id"]).to_numpy() - created) / np.timedelta64(1, "s")
    decision = np.where(outcome_offset < window, outcome_offset, window)  # NaN (no outcome) compares False
    fast = decision < window
    assert 0.01 * len(leads) < fast.sum() < 0.04 * len(leads)  # fast deciders exist, a minority
    logit = _true_logit(leads, by_activity, decision)
    rebuilt = 1 / (1 + np.exp(-(sample["truth"]["intercept"] + logit)))
    # Leads whose moment had not come at the export: the truth counts events still to come.
    complete = (created + decision.astype("timedelta64[s]") < np.datetime64(sample["truth"]["export_date"]))
    assert complete.mean() > 0.95
    expected = sample["truth_probabilities"]["p_close"].to_numpy()
    # Exported times are rounded to whole seconds: the decay weights move by < 1e-5 relative.
    np.testing.assert_allclose(rebuilt[complete], expected[complete], rtol=1e-5)


def test_fast_deciders_win_after_a_burst_of_meetings_and_pricing_visits(sample: dict) -> None:
    """A realistic share of customers and losses falls inside the first 30 days, right after a burst."""
    stages, events = sample["stages"], sample["activities"]
    created = sample["leads"].set_index("lead_id")["created_at"]
    outcome = stages[stages["stage"].isin(["customer", "lost"])].groupby("lead_id").agg(
        at=("entered_at", "min"), won=("stage", lambda s: (s == "customer").any()))
    days = (outcome["at"] - created.reindex(outcome.index)) / pd.Timedelta(days=1)
    fast = outcome[days < 30]
    customers = outcome[outcome["won"]]
    assert 0.15 < fast["won"].sum() / len(customers) < 0.5  # a share of the wins, not all of them
    assert (~fast["won"]).sum() > fast["won"].sum()  # most fast deciders are lost
    meetings = events[events["activity"] == "sales_meeting"].merge(fast["at"], left_on="lead_id", right_index=True)
    before = meetings[(meetings["occurred_at"] < meetings["at"])
                      & (meetings["occurred_at"] >= meetings["at"] - pd.Timedelta(days=5))]
    assert before["lead_id"].nunique() == len(fast)  # every fast decider met sales in the 5 days before


def test_generate_never_writes_into_the_users_export(tmp_path) -> None:
    from pipeline.data.generate import write_sample

    export = tmp_path / "my_crm_export"
    export.mkdir()
    (export / "leads.csv").write_text("lead_id,created_at\nA,2024-01-01\n")
    before = {p.name: p.read_bytes() for p in export.iterdir()}
    params = Params.model_validate({
        "generate": {"n_leads": 300, "months": 3},
        "paths": {"sample": str(tmp_path / "sample"), "raw": str(export)},
    })
    write_sample(params)
    assert {p.name: p.read_bytes() for p in export.iterdir()} == before
    assert (tmp_path / "sample" / "truth.json").exists() and (tmp_path / "sample" / "leads.csv").stat().st_size > 0


def test_generate_refuses_a_folder_holding_someone_elses_export(tmp_path) -> None:
    from pipeline.data.generate import write_sample
    from pipeline.errors import LeadcalError

    export = tmp_path / "raw"
    export.mkdir()
    (export / "leads.csv").write_text("lead_id,created_at\nA,2024-01-01\n")
    params = Params.model_validate({"generate": {"n_leads": 300, "months": 3}, "paths": {"sample": str(export)}})
    with pytest.raises(LeadcalError, match="not a leadcal sample; refusing to overwrite"):
        write_sample(params)
    assert (export / "leads.csv").read_text() == "lead_id,created_at\nA,2024-01-01\n"
    write_sample(params.model_copy(update={"paths": params.paths.model_copy(update={"sample": tmp_path / "s"})}))
    write_sample(params.model_copy(update={"paths": params.paths.model_copy(update={"sample": tmp_path / "s"})}))  # a sample may be rewritten
