"""A value seen in two leads never becomes a rule, a coefficient or a reason of its own.

The points table scores a fit value seen in fewer than `signals.min_support` training leads
like its attribute's reference. The predictive model, its explanations and the CRM exports
must pool it the same way: two customers with an odd industry are luck, not a segment.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline import io
from pipeline.commands.score import score
from pipeline.params import Params
from pipeline.stages.extract import extract

from .conftest import params_in, run_stages
from .test_leakage import write_null_history


@pytest.fixture(scope="module")
def rare_run(tmp_path_factory: pytest.TempPathFactory) -> Params:
    params = params_in(tmp_path_factory.mktemp("rare_value"),
                       signals={"fit_attributes": ["industry", "source"], "numeric_bins": {}},
                       weights={"bootstrap_samples": 0}, train={"folds": 1, "min_customers": 50},
                       thresholds={"bootstrap_samples": 0}, publish={"min_points_auc": 0.0, "min_model_auc": 0.0})
    write_null_history(params.paths.raw, n=6000, seed=11)
    leads = pd.read_csv(params.paths.raw / "leads.csv")
    customers = set(pd.read_csv(params.paths.raw / "stages.csv").query("stage == 'customer'")["lead_id"])
    early = leads[leads["lead_id"].isin(customers) & (leads["created_at"] < "2024-06-01")]["lead_id"][:2]
    leads.loc[leads["lead_id"].isin(early), "industry"] = "unicorn"  # two customers, both won
    leads.to_csv(params.paths.raw / "leads.csv", index=False)
    extract(params)
    run_stages(params, ["features", "close-rates", "weights", "train", "thresholds", "publish", "exports"])
    return params


def test_the_rare_value_is_pooled_in_the_points_table(rare_run: Params) -> None:
    weights = pd.read_csv(rare_run.paths.models / "weights.csv").set_index("signal")
    assert weights.loc["industry = unicorn", "leads"] == 2
    assert weights.loc["industry = unicorn", "status"].startswith("below minimum support")


def test_the_model_has_no_coefficient_for_it(rare_run: Params) -> None:
    features = io.read_json(rare_run.paths.models / "model.json")["features"]
    assert "industry = unicorn" not in features and "industry = software" in features
    factors = pd.read_csv(rare_run.paths.models / "factors.csv")
    assert not factors["signal"].str.contains("unicorn").any()


def test_no_lead_gets_it_as_a_reason(rare_run: Params, tmp_path: Path) -> None:
    folder = tmp_path / "to_score"
    folder.mkdir()
    leads = pd.read_csv(rare_run.paths.raw / "leads.csv")
    picked = leads[leads["industry"].isin(["unicorn", "software"])].head(40)
    picked.to_csv(folder / "leads.csv", index=False)
    events = pd.read_csv(rare_run.paths.raw / "activities.csv")
    events[events["lead_id"].isin(picked["lead_id"])].to_csv(folder / "activities.csv", index=False)
    scored = score(folder, tmp_path / "scored.csv", rare_run).set_index("lead_id")
    assert (picked["industry"] == "unicorn").sum() == 2
    assert not scored["top_reasons"].str.contains("unicorn").any()
    assert scored["top_reasons"].str.contains("industry = software").any()  # supported values still explain


def test_the_crm_exports_pool_it_into_any_other_value(rare_run: Params) -> None:
    exports = rare_run.paths.models / "exports"
    generic = pd.read_csv(exports / "weights.csv")
    assert not (generic["value"].astype(str) == "unicorn").any()
    for name in ("hubspot_score_properties.csv", "salesforce_scoring.csv", "mautic_point_actions.json"):
        assert "unicorn" not in (exports / name).read_text(), name
    industry = generic[generic["attribute"] == "industry"]
    other = industry[industry["operator"] == "is_none_of"]
    if len(other):  # the pooled rule carries the reference points, when they are not 0
        assert set(other["value"].iloc[0].split("; ")) == {"education", "finance", "retail", "software"}
