"""models/model_card.md: what the model is, what it was trained and judged on, and its limits.

Written at every run from the same numbers as models/metrics/train.json, so it cannot drift
from the metrics. Plain Markdown: it reads on GitHub, in a notebook, or pasted in a wiki.
"""

from __future__ import annotations

import pandas as pd

from pipeline.design import SNAPSHOT_NOTE
from pipeline.params import Params

FOLD_COLUMNS = [("auc", "AUC"), ("pr_auc", "PR-AUC"), ("log_loss", "log loss"), ("brier", "Brier"), ("ece", "ECE"),
                ("top_decile_lift", "top-10 % lift"), ("top_decile_capture", "top-10 % capture")]


def _fold_table(folds: list[dict], summary: dict) -> str:
    header = "| fold | held out | leads | customers | " + " | ".join(name for _, name in FOLD_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (4 + len(FOLD_COLUMNS))]
    for fold in folds:
        values = " | ".join(f"{fold[key]:.3f}" for key, _ in FOLD_COLUMNS)
        held = fold["from"] if fold["from"] == fold["to"] else f"{fold['from']} to {fold['to']}"
        lines.append(f"| {fold['fold']} | {held} | {fold['leads']:,} | {fold['customers']} | {values} |")
    mean = " | ".join(f"{summary['mean'][k]:.3f} ± {summary['sd'][k]:.3f}" for k, _ in FOLD_COLUMNS)
    lines.append(f"| mean ± sd | | | | {mean} |")
    return "\n".join(lines)


def _ages(params: Params) -> str:
    ages = [str(a) for a in params.outcome.snapshot_days]
    return ages[0] if len(ages) == 1 else ", ".join(ages[:-1]) + " and " + ages[-1]


def _what_dated(params: Params) -> str:
    return f"""The probability that a lead becomes a customer within {params.outcome.horizon_days} days of its creation,
from what was known at a moment of its life while it was still open: its activity before that moment and its
fit attributes ({", ".join(params.signals.fit_attributes)}). Trained on every lead as it was {_ages(params)}
days after creation, at each of those ages it reached before being won or lost."""


def _what_snapshot(params: Params) -> str:
    return f"""The probability that a lead converts, from one row per lead of a snapshot export: its activity counts
as the export recorded them and its attributes ({", ".join(params.signals.fit_attributes)}). The export has no
dates, so nothing shows what was known before the outcome: a column filled after the deal would leak into the
score (`leadcal init` lists the suspects it left unmapped). **{SNAPSHOT_NOTE}.**"""


def _validation_heading(snapshot: bool) -> str:
    if snapshot:
        return ("## Validation on random folds (cross-validation)\n"
                f"{SNAPSHOT_NOTE[0].upper() + SNAPSHOT_NOTE[1:]}. Each fold holds out a random, stratified share of "
                "the leads and trains on the rest; how well the score holds on future leads is not measured.")
    return "## Validation over time (rolling origin)\nEach fold is trained only on the months before its held-out block."


def model_card(params: Params, metrics: dict, description: dict, factors: pd.DataFrame) -> str:
    model, points = metrics["model"], metrics["points_table"]
    training, validation = metrics["training"], metrics["validation"]
    losses = description["calibration"]["cross_validated_log_loss"]
    loss_text = ", ".join(f"{k} {v:.4f}" for k, v in sorted(losses.items())) or "not compared"
    snapshot = metrics.get("validated_on") == SNAPSHOT_NOTE
    kind = "gradient-boosted trees (scikit-learn HistGradientBoosting)" if params.train.model == "hgb" \
        else "L2-penalised logistic regression"
    return f"""# Model card: leadcal predictive lead score

## What it predicts
{_what_snapshot(params) if snapshot else _what_dated(params)}

## Model
- Type: {kind}.
- Probabilities calibrated with **{model["calibration"]}**, fitted on cross-fitted scores of the training leads
  (each scored by a model trained without it; cross-validated log loss: {loss_text}).
- Features: {len(description["features"])} (signals, activity counts and recency, creation month, the snapshot age);
  signals seen in fewer than {params.signals.min_support} training leads are left out; schema version
  {description["schema"]["version"]}. The file is `models/model.skops` (no pickle; loaded with an allow-list of types).

## Data
- Trained on {f"leads of {training['from']}" if snapshot else f"leads created {training['from']} to {training['to']}"}:
  {training["leads"]:,} matured leads ({training["rows"]:,} point-in-time rows), {training["customers"]} customers.
- Published model validated on {validation["from"] if snapshot else f"{validation['from']} to {validation['to']}"}:
  {validation["leads"]:,} leads ({validation["rows"]:,} rows), {validation["customers"]} customers, never seen in training.

{_validation_heading(snapshot)}

**Predictive model**

{_fold_table(model["folds"], model)}

**Points table** (refitted on each fold's training leads)

{_fold_table(points["folds"], points)}

AUC, PR-AUC and the top decile compare leads seen at the same age (snapshot); ECE, Brier and log loss pool
every row. ECE is the average gap between predicted and observed close rates (0.01 = one percentage point).

## Strongest factors (held-out leads of the last fold)

| signal | leads with it | typical effect on the odds | share of those leads it raised |
|---|---|---|---|
{_factor_lines(factors)}

Effects are measured by occlusion: the change in the model's odds when the signal is taken away.

{_known_limits(params)}"""


def _factor_lines(factors: pd.DataFrame) -> str:
    """The table rows of the eight strongest factors (factors.csv is sorted strongest first)."""
    top = factors.head(8)
    return "\n".join(
        f"| {row.signal} | {row.leads:,} | x{row.typical_odds_ratio:.2f} | {row.share_of_leads_raised:.0%} |"
        for row in top.itertuples(index=False)
    )


def _known_limits(params: Params) -> str:
    """The card's last section: what the validation above cannot show, said where the score is read."""
    return f"""## Known limits
- Trained on history: if campaigns, channels or the product change, rates drift; the folds above show how
  much the quality moves from period to period. Retrain regularly (`dvc repro`).
- Leads younger than {params.outcome.horizon_days} days at the export date have no known outcome and are not used.
- A lead is scored as it is when scored, in the snapshot of its age; between the snapshot ages
  ({_ages(params)} days) the model has not seen leads, so a 12-day-old lead is scored like a 7-day-old one with
  its activity up to day 12.
- Small held-out periods make AUC uncertain by a few hundredths; compare the spread across folds before
  reading much into one difference.
- The frequency thresholds were found on the latest training cohorts, which overlap the earlier folds'
  held-out months: earlier folds are slightly optimistic.
"""
