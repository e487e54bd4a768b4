"""Volume planning: how many SQLs, MQLs and leads it takes to win N customers, with an interval from
the uncertainty of the measured rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.funnel.common import check_confidence


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return int(value)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _ceil(value: float) -> int:
    """Round up, ignoring float noise (3 / 0.6 = 5.000000000000001 needs 5, not 6)."""
    up = math.ceil(value)
    return up - 1 if math.isclose(value, up - 1, rel_tol=1e-9, abs_tol=0.0) else up


def _plan_steps(rates: Any) -> list[tuple[str, str, int, int]]:
    """(from, to, successes, trials) per step, ordered from the top of the funnel down."""
    if isinstance(rates, pd.DataFrame):
        missing = [c for c in ("from_stage", "to_stage", "successes", "trials") if c not in rates.columns]
        if missing:
            raise ValueError(f"rates: missing column(s) {missing}; found {list(rates.columns)}")
        raw = [(str(r.from_stage), str(r.to_stage), r.successes, r.trials) for r in rates.itertuples(index=False)]
    elif isinstance(rates, Mapping):
        raw = []
        for key, value in rates.items():
            if isinstance(key, tuple) and len(key) == 2:
                frm, to = key
            elif isinstance(key, str) and key.count("->") == 1:
                frm, to = (part.strip() for part in key.split("->"))
            else:
                raise ValueError(f"rates: step {key!r} must be 'from->to' (e.g. 'sql->customer') or a (from, to) pair")
            if isinstance(value, Mapping):
                value = (value.get("successes"), value.get("trials"))
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"rates: step {key!r} needs (successes, trials), got {value!r}")
            raw.append((str(frm), str(to), value[0], value[1]))
    else:
        raise ValueError("rates: expected a mapping {'from->to': (successes, trials)} or a DataFrame from conversion_counts")
    if not raw:
        raise ValueError("rates: no steps given")
    steps = []
    for frm, to, successes, trials in raw:
        name = f"{frm}->{to}"
        if frm == to or not frm or not to:
            raise ValueError(f"rates: step '{name}' must go from one stage to another")
        s, t = _whole(successes, f"rates['{name}'] successes"), _whole(trials, f"rates['{name}'] trials")
        if t <= 0:
            raise ValueError(f"rates: step '{name}' has {t} trials; a rate needs at least one")
        if not 0 <= s <= t:
            raise ValueError(f"rates: step '{name}' has {s} successes for {t} trials; need 0 <= successes <= trials")
        if s == 0:
            raise ValueError(
                f"rates: step '{name}' converted 0 of {t}: with a measured rate of 0 no volume is enough; "
                f"measure over a longer period or a broader group"
            )
        steps.append((frm, to, s, t))
    starts = [s[0] for s in steps]
    ends = [s[1] for s in steps]
    if len(set(starts)) != len(starts) or len(set(ends)) != len(ends):
        raise ValueError(f"rates: each stage may start and end one step only; got {[f'{a}->{b}' for a, b, *_ in steps]}")
    heads = [s for s in steps if s[0] not in ends]
    if len(heads) != 1:
        raise ValueError(f"rates: the steps must form one chain (a->b, b->c, ...); got {[f'{a}->{b}' for a, b, *_ in steps]}")
    by_start = {s[0]: s for s in steps}
    chain = [heads[0]]
    while chain[-1][1] in by_start:
        chain.append(by_start[chain[-1][1]])
    if len(chain) != len(steps):
        raise ValueError(f"rates: the steps must form one chain (a->b, b->c, ...); got {[f'{a}->{b}' for a, b, *_ in steps]}")
    return chain


def _target(customers: Any, revenue: Any, average_deal: Any) -> tuple[int, float | None, float | None]:
    """The customers to win, given as a number or as revenue / average_deal (rounded up: a part
    of a customer is a whole one to find); returns (customers, revenue, average_deal) checked.
    Exactly one way must be given, so a plan never silently prefers one of two targets."""
    if (customers is None) == (revenue is None):
        raise ValueError("give exactly one of customers or revenue (with average_deal)")
    if customers is not None:
        if average_deal is not None:
            raise ValueError("average_deal is only used with revenue; with customers leave it out")
        target = _whole(customers, "customers")
        if target <= 0:
            raise ValueError(f"customers must be a positive whole number, got {customers!r}")
        return target, revenue, average_deal
    if average_deal is None:
        raise ValueError("revenue needs average_deal (revenue / average_deal = customers to win)")
    revenue = _positive(revenue, "revenue")
    average_deal = _positive(average_deal, "average_deal")
    return _ceil(revenue / average_deal), revenue, average_deal


def plan_volume(
    rates: Any, customers: Any = None, revenue: Any = None, average_deal: Any = None,
    confidence: float = 0.95, simulations: int = 2000, seed: int = 0,
) -> dict[str, Any]:
    """How many of each stage it takes to win `customers` (or revenue / average_deal, rounded up).

    rates: measured counts per step, as {'lead->mql': (successes, trials), 'mql->sql': ...,
    'sql->customer': ...} (keys may also be (from, to) pairs) or the DataFrame of
    `conversion_counts` for one group. The steps must chain; the last step's target is the
    stage `customers` counts. Visitors are planned only if a 'visitor->lead' step is given.

    Point estimate: needed at stage j = customers / (product of the measured rates
    successes / trials from j down), rounded up. Interval: each step's rate is drawn
    `simulations` times from its Beta(successes + 1, trials - successes + 1) posterior
    (uniform prior; numpy Generator seeded with `seed`), the draws are propagated the same
    way, and the (1 - confidence) / 2 and 1 - (1 - confidence) / 2 quantiles of the needed
    volumes are reported, rounded up (2.5 % and 97.5 % at confidence 0.95).

    Returns {"target_stage", "customers", "revenue", "average_deal", "confidence",
             "simulations", "seed", "steps": [{from_stage, to_stage, successes, trials, rate}],
             "volumes": [{stage, needed, needed_exact, low, high}] from the top of the funnel
             down to the target stage}.
    """
    target, revenue, average_deal = _target(customers, revenue, average_deal)
    confidence = check_confidence(confidence)
    simulations = _whole(simulations, "simulations")
    if simulations < 100:
        raise ValueError(f"simulations must be at least 100 for stable quantiles, got {simulations}")
    seed = _whole(seed, "seed")
    steps = _plan_steps(rates)
    successes = np.array([s[2] for s in steps], dtype=float)
    trials = np.array([s[3] for s in steps], dtype=float)
    point_rates = successes / trials
    rng = np.random.default_rng(seed)
    draws = rng.beta(successes + 1, trials - successes + 1, size=(simulations, len(steps)))
    draws = np.maximum(draws, np.finfo(float).tiny)
    # needed at the start of step j = target / prod(rates j..end): products from the bottom up
    point_needed = target / np.cumprod(point_rates[::-1])[::-1]
    simulated = target / np.cumprod(draws[:, ::-1], axis=1)[:, ::-1]
    alpha = 1 - confidence
    low_q, high_q = np.quantile(simulated, [alpha / 2, 1 - alpha / 2], axis=0)
    volumes = [
        {"stage": frm, "needed": _ceil(float(p)), "needed_exact": float(p), "low": _ceil(float(lo)), "high": _ceil(float(hi))}
        for (frm, *_), p, lo, hi in zip(steps, point_needed, low_q, high_q)
    ]
    volumes.append({"stage": steps[-1][1], "needed": target, "needed_exact": float(target), "low": target, "high": target})
    return {
        "target_stage": steps[-1][1],
        "customers": target,
        "revenue": revenue,
        "average_deal": average_deal,
        "confidence": confidence,
        "simulations": simulations,
        "seed": seed,
        "steps": [{"from_stage": a, "to_stage": b, "successes": s, "trials": t, "rate": s / t} for a, b, s, t in steps],
        "volumes": volumes,
    }
