"""`leadcal plan`: lead volume needed for a target, from the measured funnel."""

from __future__ import annotations

import math

import pytest

from pipeline import io
from pipeline.cli import main
from pipeline.commands.planner import plan
from pipeline.errors import LeadcalError
from pipeline.params import Params


def test_needed_leads_follow_from_the_measured_rates(default_run: Params) -> None:
    steps = io.read_json(default_run.paths.models / "funnel.json")["plan_steps"]
    product = math.prod(row["successes"] / row["trials"] for row in steps)
    result = plan(default_run, customers=50)
    needed = {row["stage"]: row for row in result["volumes"]}
    assert needed["lead"]["needed"] == math.ceil(50 / product)
    assert needed["lead"]["low"] <= needed["lead"]["needed"] <= needed["lead"]["high"]
    assert needed["lead"]["needed"] > needed["mql"]["needed"] > needed["sql"]["needed"] > needed["customer"]["needed"] == 50


def test_revenue_target_equals_the_customers_it_takes(default_run: Params) -> None:
    by_revenue = plan(default_run, revenue=1_000_000, average_deal=30_000)
    by_customers = plan(default_run, customers=34)  # ceil(1,000,000 / 30,000)
    assert by_revenue["volumes"] == by_customers["volumes"]


def test_visitors_are_planned_only_when_known(default_run: Params) -> None:
    without = [row["stage"] for row in plan(default_run, customers=10)["volumes"]]
    visitors = 20 * default_run.generate.n_leads  # a 5 % visitor -> lead rate
    with_visitors = default_run.model_copy(update={"funnel": default_run.funnel.model_copy(update={"visitors": visitors})})
    planned = {row["stage"]: row["needed"] for row in plan(with_visitors, customers=10)["volumes"]}
    assert "visitor" not in without and planned["visitor"] > planned["lead"] * 10
    with pytest.raises(LeadcalError, match="customers must be a positive whole number"):
        plan(default_run, customers=0)


def test_plan_command_prints_a_table(default_run: Params, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"paths": {k: str(v) for k, v in default_run.paths.model_dump().items()},
                                    "allow_outside_project": True}))  # the session run's outputs, elsewhere
    assert main(["--params", str(path), "plan", "--customers", "20", "--out", str(tmp_path / "plan.json")]) == 0
    out = capsys.readouterr().out
    assert "To win 20 customers" in out and "lead" in out and "95% interval" in out
    assert io.read_json(tmp_path / "plan.json")["customers"] == 20


def test_the_new_thresholds_rates_are_explained_beside_the_crms() -> None:
    """Hand-computed: 20 % of leads reach the threshold and close at 10 %: 30 customers take
    30 / 0.10 = 300 MQLs and 300 / 0.20 = 1,500 leads; rounded up, never down."""
    from pipeline.commands.planner import format_plan, with_threshold

    thresholds = {"threshold": 38, "validation": {"mql_share": 0.2, "mql_close_rate": 0.1, "customers_captured": 0.6}}
    new = with_threshold(thresholds, 30)
    assert (new["leads"], new["mqls"], new["threshold"]) == (1500, 300, 38)
    assert with_threshold({"threshold": 38, "validation": {"mql_share": 0.3, "mql_close_rate": 0.07}}, 10)["mqls"] == 143
    assert with_threshold({"threshold": None, "validation": {}}, 30) is None
    result = {"customers": 30, "confidence": 0.95, "volumes": [], "steps": [], "with_threshold": new}
    text = format_plan(result)
    assert "rates your CRM recorded" in text and "threshold (38 points)" in text
    assert "20.0% of leads became MQLs" in text and "closed at 10.0%" in text and "about 1,500 leads and 300 MQLs" in text
