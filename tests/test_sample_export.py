"""The sample history as a one-row-per-lead CRM export: the same history as the contract tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data.generate import generate
from pipeline.data.sample_export import COLUMNS, COUNTS, LEAKY_VALUE, one_row_per_lead, write_one_row_per_lead
from pipeline.params import Params

N = 2000


@pytest.fixture(scope="module")
def params() -> Params:
    return Params.model_validate({"generate": {"n_leads": N}})


@pytest.fixture(scope="module")
def sample(params: Params) -> dict:
    return generate(params)


@pytest.fixture(scope="module")
def export(sample: dict, params: Params) -> pd.DataFrame:
    return one_row_per_lead(sample, params)


@pytest.fixture(scope="module")
def cutoff(sample: dict) -> pd.Series:
    """Independently: each lead's counting moment, min(created + 30 days, first customer or lost stage)."""
    stages = sample["stages"]
    outcome = stages.loc[stages["stage"].isin(["customer", "lost"])].groupby("lead_id")["entered_at"].min()
    leads = sample["leads"].set_index("lead_id")
    return pd.concat([leads["created_at"] + pd.Timedelta(days=30), outcome.reindex(leads.index)], axis=1).min(axis=1)


@pytest.fixture(scope="module")
def window_counts(sample: dict, cutoff: pd.Series) -> pd.DataFrame:
    events = sample["activities"]
    before = events[events["occurred_at"] < cutoff.reindex(events["lead_id"]).to_numpy()]
    return before.groupby(["lead_id", "activity"]).size().unstack(fill_value=0)


def test_one_row_per_matured_lead_in_id_order(export: pd.DataFrame, sample: dict, params: Params) -> None:
    assert list(export.columns) == COLUMNS
    assert export["Prospect ID"].is_unique and export["Lead Number"].is_unique
    assert export["Prospect ID"].is_monotonic_increasing
    leads = sample["leads"]
    export_date = pd.Timestamp(sample["truth"]["export_date"])
    matured = leads.loc[leads["created_at"] + pd.Timedelta(days=params.outcome.horizon_days) <= export_date, "lead_id"]
    assert set(export["Prospect ID"]) == set(matured)
    assert 0.75 * N < len(export) < N  # the last horizon_days of leads are left out


def test_converted_is_a_customer_stage_within_the_horizon(export: pd.DataFrame, sample: dict, params: Params) -> None:
    stages = sample["stages"]
    created = sample["leads"].set_index("lead_id")["created_at"]
    customers = stages[stages["stage"] == "customer"].set_index("lead_id")["entered_at"]
    won = customers[customers <= created.reindex(customers.index) + pd.Timedelta(days=params.outcome.horizon_days)]
    expected = export["Prospect ID"].isin(won.index).astype(int)
    assert (export["Converted"].to_numpy() == expected.to_numpy()).all()
    assert 0.015 < export["Converted"].mean() < 0.06


def test_counts_are_the_events_before_the_earlier_of_day_30_and_the_outcome(
    export: pd.DataFrame, window_counts: pd.DataFrame
) -> None:
    for column, activities in COUNTS.items():
        present = [a for a in activities if a in window_counts.columns]
        truth = window_counts[present].sum(axis=1).reindex(export["Prospect ID"], fill_value=0).to_numpy()
        cells = export[column]
        shown = cells.notna().to_numpy()
        assert (cells[shown].to_numpy(dtype=np.int64) == truth[shown]).all(), column
        assert 0.01 < (~shown).mean() < 0.06, column  # blanks exist ...
        assert (truth[~shown] == 0).all(), column  # ... and a blank is a 0
        assert truth.sum() > 0, column


def test_counts_never_see_activity_after_the_outcome(export: pd.DataFrame, sample: dict) -> None:
    # Customers are busy after the deal (onboarding webinars, pricing visits): a counter read at
    # the export date would show it; these are read before the outcome.
    events = sample["activities"]
    customers = export.loc[export["Converted"] == 1, "Prospect ID"]
    all_pricing = events[(events["activity"] == "pricing_page_visit") & events["lead_id"].isin(customers)]
    assert export.loc[export["Converted"] == 1, "Pricing Page Visits"].sum() < len(all_pricing)


def test_visits_time_pages_last_activity_and_do_not_email(
    export: pd.DataFrame, sample: dict, cutoff: pd.Series, window_counts: pd.DataFrame
) -> None:
    visits = window_counts[[a for a in COUNTS["TotalVisits"] if a in window_counts.columns]].sum(axis=1)
    visits = visits.reindex(export["Prospect ID"], fill_value=0).to_numpy()
    assert ((export["Total Time Spent on Website"].to_numpy() == 0) == (visits == 0)).all()
    assert export.loc[visits > 0, "Total Time Spent on Website"].median() > 100  # seconds, a measure
    pages = export["Page Views Per Visit"]
    assert (pages.isna().to_numpy() == (visits == 0)).all()
    assert (pages.dropna() >= 1).all() and (pages.dropna().round(2) == pages.dropna()).all()
    assert (pages.dropna() % 1 != 0).any()
    unsubscribed = window_counts.get("unsubscribe", pd.Series(dtype=int)).reindex(export["Prospect ID"], fill_value=0)
    assert ((export["Do Not Email"] == "Yes").to_numpy() == (unsubscribed.to_numpy() > 0)).all()
    # Last Activity: an activity done at the latest moment before the cut-off
    events = sample["activities"]
    before = events[events["occurred_at"] < cutoff.reindex(events["lead_id"]).to_numpy()]
    latest = before[before["occurred_at"] == before.groupby("lead_id")["occurred_at"].transform("max")]
    from pipeline.data.sample_export import ACTIVITY_NAMES

    named = latest.assign(name=latest["activity"].map(ACTIVITY_NAMES)).groupby("lead_id")["name"].agg(set)
    last = export.set_index("Prospect ID")["Last Activity"]
    assert last.isna().equals(~last.index.to_series().isin(named.index))
    assert all(last[lead] in names for lead, names in named.reindex(last.dropna().index).items())
    assert {"Email Opened", "Pricing Page Visit", "Sales Meeting"} <= set(last.dropna())


def test_form_placeholders_and_blanks_in_fit_columns(export: pd.DataFrame) -> None:
    fit = ["Lead Source", "Country", "Industry", "Company Size", "Seniority", "Email Type"]
    select = {c: (export[c] == "Select").mean() for c in fit}
    assert sum(0.1 <= share <= 0.35 for share in select.values()) >= 2, select
    assert sum(export[c].isna().any() for c in fit) >= 2
    assert export["Lead Source"].str.contains(" ").any() and export["Country"].isin(["United States"]).any()


def test_tags_are_planted_leakage(export: pd.DataFrame) -> None:
    won = export["Converted"] == 1
    filled_won, filled_other = export.loc[won, "Tags"].notna().mean(), export.loc[~won, "Tags"].notna().mean()
    assert filled_won > 0.7 and filled_other < 0.25 and filled_won > 3 * filled_other
    leaky = export["Tags"] == LEAKY_VALUE
    assert leaky.sum() >= 10 and export.loc[leaky, "Converted"].eq(1).all()
    # every other value occurs among the other leads too: one value alone is the giveaway
    others = set(export.loc[~won, "Tags"].dropna())
    assert set(export.loc[won, "Tags"].dropna()) - others == {LEAKY_VALUE}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, params: Params) -> None:
    write_one_row_per_lead(params, tmp_path / "a.csv", N)
    write_one_row_per_lead(params, tmp_path / "deeper" / "b.csv", N)
    write_one_row_per_lead(params.model_copy(update={"seed": 7}), tmp_path / "c.csv", N)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "deeper" / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()
    text = (tmp_path / "a.csv").read_text()
    header, first = text.splitlines()[:2]
    assert header.startswith("Prospect ID,Lead Number,Lead Source,Do Not Email,Converted,TotalVisits")
    assert ".0," not in text  # counts, ids and seconds are plain integers
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_cli_writes_the_export_and_keeps_plain_generate(tmp_path) -> None:
    from pipeline.cli import main

    params_file = tmp_path / "params.yaml"
    params_file.write_text(f"paths:\n  sample: {tmp_path / 'sample'}\n")
    out = tmp_path / "exports" / "leads.csv"
    assert main(["--params", str(params_file), "generate", "--one-row-per-lead", str(out), "--leads", "600"]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == COLUMNS and 400 < len(frame) < 600
    assert not (tmp_path / "sample").exists()  # the contract tables are not written
    assert main(["--params", str(params_file), "generate", "--leads", "600"]) == 2
    assert main(["--params", str(params_file), "generate", "--one-row-per-lead", str(tmp_path)]) == 2
