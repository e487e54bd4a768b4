"""`leadcal plan`: how many leads (and MQLs, SQLs, visitors) it takes to reach a target.

Works backwards from the measured conversion of the matured leads (models/funnel.json,
`plan_steps`): needed = target / product of the step rates, with an interval from the
rates' own uncertainty (pipeline.core.funnel.planning.plan_volume draws each rate from its Beta
posterior). Visitors are planned only when params funnel.visitors says how many there were.

Those are the rates the CRM recorded, under whatever MQL rule it used then: its lead -> MQL rate
can be far from the share of leads that reach leadcal's new threshold. So the plan also says,
from models/thresholds.json's held-out months, what the new threshold does: its MQL share and
their close rate, and the leads and MQLs that target takes when only the MQLs are worked.
"""

from __future__ import annotations

from pipeline import io
from pipeline.artifacts import THRESHOLDS
from pipeline.core.funnel.planning import plan_volume
from pipeline.data.contract import customer_amounts
from pipeline.errors import LeadcalError
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
        result = plan_volume(steps, customers=customers, revenue=revenue, average_deal=average_deal,
                             confidence=params.close_rates.confidence, seed=params.seed)
    except ValueError as exc:
        raise LeadcalError(f"leadcal plan: {exc}") from exc
    thresholds = params.paths.models / THRESHOLDS
    if thresholds.exists():
        result["with_threshold"] = with_threshold(io.read_json(thresholds), int(result["customers"]))
    return result


def with_threshold(thresholds: dict, customers: int) -> dict[str, object] | None:
    """What the published threshold's held-out figures imply for `customers`: the leads it takes
    when only the leads reaching the threshold are worked (customers / (MQL share x MQL close
    rate)), and the MQLs among them. None when the threshold has no held-out figures."""
    validation = thresholds.get("validation") or {}
    share, close = validation.get("mql_share"), validation.get("mql_close_rate")
    if thresholds.get("threshold") is None or not share or not close:
        return None
    mqls = customers / close
    return {"threshold": thresholds["threshold"], "mql_share": share, "mql_close_rate": close,
            "leads": int(-(-mqls / share // 1)), "mqls": int(-(-mqls // 1)),
            "customers_captured": validation.get("customers_captured")}


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
    new = result.get("with_threshold")
    if new:
        lines += ["", "These are the rates your CRM recorded, under the MQL rule it used then. With leadcal's "
                  f"threshold ({new['threshold']} points),",
                  f"{new['mql_share']:.1%} of leads became MQLs on the held-out months and they closed at "
                  f"{new['mql_close_rate']:.1%}: working only those MQLs,",
                  f"{result['customers']} customers take about {new['leads']:,} leads and {new['mqls']:,} MQLs"
                  + (f" (the MQLs held {new['customers_captured']:.0%} of the customers; the rest came from "
                     "leads below the threshold)." if new.get("customers_captured") is not None else ".")]
    return "\n".join(lines)
