"""`leadcal plan`: how many leads (and MQLs, SQLs, visitors) it takes to reach a target.

Works backwards from the measured conversion of the matured leads (models/funnel.json,
`plan_steps`): needed = target / product of the step rates, with an interval from the
rates' own uncertainty (pipeline.funnel.plan_volume draws each rate from its Beta
posterior). Visitors are planned only when params funnel.visitors says how many there were.
"""

from __future__ import annotations

from pipeline import io
from pipeline.contract import customer_amounts
from pipeline.errors import LeadcalError
from pipeline.funnel import plan_volume
from pipeline.params import Params


def mean_deal_value(params: Params) -> float:
    amounts = customer_amounts(io.read_parquet(params.paths.extracted / "stages.parquet", columns=["stage", "amount"]))
    if amounts.empty:
        raise LeadcalError(
            f"{params.paths.extracted / 'stages.parquet'}: no customer has an amount, so the average deal is unknown; "
            "give --average-deal"
        )
    return float(amounts.mean())


def plan(params: Params, customers: int | None = None, revenue: float | None = None,
         average_deal: float | None = None) -> dict[str, object]:
    funnel = io.read_json(params.paths.models / "funnel.json")
    steps = {f"{row['from_stage']}->{row['to_stage']}": (row["successes"], row["trials"]) for row in funnel["plan_steps"]}
    if params.funnel.visitors is not None:
        leads = funnel["population"]["leads"]
        steps = {"visitor->lead": (leads, max(params.funnel.visitors, leads)), **steps}
    if revenue is not None and average_deal is None:
        average_deal = mean_deal_value(params)
    try:
        return plan_volume(steps, customers=customers, revenue=revenue, average_deal=average_deal,
                           confidence=params.close_rates.confidence, seed=params.seed)
    except ValueError as exc:
        raise LeadcalError(f"leadcal plan: {exc}") from exc


def format_plan(result: dict[str, object]) -> str:
    """A small table a marketer can paste into a planning document."""
    target = f"{result['customers']} customers"
    if result.get("revenue"):
        target += f" (revenue {result['revenue']:,.0f} at {result['average_deal']:,.0f} per deal)"
    confidence = f"{result['confidence']:.0%}"
    lines = [f"To win {target}, with the conversion measured on your matured leads:", "",
             f"{'stage':<14}{'needed':>10}   {confidence} interval"]
    for row in result["volumes"]:
        lines.append(f"{row['stage']:<14}{row['needed']:>10,}   {row['low']:,} to {row['high']:,}")
    lines += ["", "step rates: " + ", ".join(f"{s['from_stage']} -> {s['to_stage']} {s['rate']:.1%}" for s in result["steps"])]
    return "\n".join(lines)
