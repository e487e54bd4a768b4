"""`leadcal score INPUT --out OUTPUT`: score new leads with the published model and points table.

INPUT is a folder with `leads` and `activities` (and optionally `stages`) as CSV or
Parquet, in the data contract's format. Each open lead is scored as it is now (the latest
timestamp in the input, or `--as-of`): its activity of the last `snapshot_days[-1]` days
before that moment, decayed to that moment, in the snapshot of its age, with the
definitions the model was trained with. Leads already won or lost (a `stages` table says
so), or created after that moment, are not scored.
Per lead: probability, fit / engagement / total points, grade (A-D: quartiles of the
training leads' probabilities, as HubSpot's contact priority), MQL flag (total points at
or above the published threshold) and its top reasons.

The model file is loaded with an allow-list of types (pipeline.stages.model.load_model), and a
model whose feature schema does not match the current params is refused: its signals
would silently mean something else.

`--keep email,hs_object_id` copies those columns of the input leads into the output, after
`lead_id`, so the scores can be written back to the CRM's contacts (matched on its own id or
e-mail, not on leadcal's). Names match ignoring case and surrounding spaces; values are kept as
text, so a long numeric CRM id is never rounded.

Options are checked before anything is read: --batch-size a positive whole number, --out a
file path ending in .csv or .parquet. The CSV output is for people: a lead id or reason that a
spreadsheet would run as a formula gets a single quote in front (pipeline.spreadsheet).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import io, spreadsheet
from pipeline.artifacts import THRESHOLDS
from pipeline.artifacts.readers import read_scorecard
from pipeline.core.explain import top_reasons
from pipeline.core.lead_model import model_matrix
from pipeline.core.signals import SignalSet, build_signals
from pipeline.errors import LeadcalError
from pipeline.params import FrequencySignal, Params
from pipeline.schema import AGE_PREFIX, NEVER_DAYS, peak_column
from pipeline.stages.extract import read_export
from pipeline.stages.features import build_features
from pipeline.stages.model import SCHEMA_VERSION, read_model

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["lead_id", "probability", "fit_points", "engagement_points", "total_points", "grade", "mql",
                  "top_reasons", "scored_as_of"]
OUTPUT_SUFFIXES = (".csv", ".parquet")


def check_options(out: Path, batch_size: object) -> None:
    """Refuse options that would fail late (a traceback after the scoring) or do something else than asked."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise LeadcalError(f"--batch-size must be a positive whole number of leads per batch, got {batch_size!r}")
    accepted = " or ".join(OUTPUT_SUFFIXES)
    if out.is_dir():
        raise LeadcalError(f"--out {out}: is a folder; give a file path ending in {accepted}, e.g. {out / 'scored.csv'}")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise LeadcalError(f"--out {out}: the output must be a file ending in {accepted}"
                           + (f", not {out.suffix}" if out.suffix else ""))
    if out.exists() and not out.is_file():
        raise LeadcalError(f"--out {out}: exists and is not a regular file; give a file path ending in {accepted}")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise LeadcalError(f"--out {out}: {parent} is a file, not a folder")


def check_schema(schema: dict, params: Params, model_path: Path) -> None:
    """Refuse a model built for other signals than the ones params would build now."""
    if schema.get("version") != SCHEMA_VERSION:
        raise LeadcalError(
            f"{model_path}: the model was saved with feature schema version {schema.get('version')}, this leadcal "
            f"reads version {SCHEMA_VERSION}; retrain it with `dvc repro`"
        )
    current = {
        "fit_attributes": list(params.signals.fit_attributes),
        "numeric_bins": {k: list(v) for k, v in params.signals.numeric_bins.items()},
        "snapshot_days": list(params.outcome.snapshot_days),
        "recency_days": list(params.signals.recency_days),
    }
    different = [key for key, value in current.items() if schema.get(key) != value]
    if different:
        details = "; ".join(f"{key}: model {schema.get(key)!r}, params {current[key]!r}" for key in different)
        raise LeadcalError(
            f"{model_path}: the model was trained with a different feature schema than params.yaml describes "
            f"({details}); retrain with `dvc repro` or use the params it was trained with"
        )


def _read_input(folder: Path, params: Params) -> tuple[dict[str, pd.DataFrame], dict[str, Path | None]]:
    tables, reports, paths = read_export(folder, params, policy="drop", now=None, stages_required=False)
    for reason, count in reports["activities"].dropped.items():
        log.warning("score: %s: %d event(s) dropped: %s", paths["activities"], count, reason)
    return tables, paths


def kept_columns(leads: pd.DataFrame, keep: list[str], origin: object) -> pd.DataFrame:
    """lead_id and the `keep` columns of the input leads (named as asked), to match scores to CRM
    contacts. A name the leads do not hold, or one that would shadow an output column, is refused."""
    by_name = {str(column).strip().lower(): column for column in leads.columns}
    asked = [name.strip() for name in keep if name.strip()]
    clashing = [name for name in asked if name.lower() in OUTPUT_COLUMNS]
    if clashing:
        raise LeadcalError(f"--keep {','.join(clashing)}: already an output column of leadcal score "
                           f"({', '.join(OUTPUT_COLUMNS)}); keep other columns")
    missing = [name for name in asked if name.lower() not in by_name]
    if missing:
        raise LeadcalError(f"{origin}: --keep {','.join(missing)}: no such column in the leads (it has: "
                           f"{', '.join(map(str, leads.columns))})")
    unique = list(dict.fromkeys(asked))
    return pd.DataFrame({"lead_id": leads["lead_id"].to_numpy(),
                         **{name: leads[by_name[name.lower()]].to_numpy() for name in unique}})


def _grade(probability: np.ndarray, cutoffs: dict[str, float]) -> np.ndarray:
    return np.select([probability >= cutoffs["A"], probability >= cutoffs["B"], probability >= cutoffs["C"]],
                     ["A", "B", "C"], "D")


def _model_inputs(features: pd.DataFrame, activities: pd.DataFrame, description: dict,
                  params: Params) -> tuple[SignalSet, pd.DataFrame]:
    """The signals and the model's matrix of the leads to score, built as in training (the model's
    schema: its frequency signals, half-life, snapshots, columns). An activity the model never saw
    is ignored (with a warning); a column this input cannot have (an activity absent from it) is
    "never done"."""
    schema = description["schema"]
    unknown = sorted(set(activities["activity"]) - set(schema["activities"]))
    if unknown:
        log.warning("score: activities the model has never seen are ignored: %s", unknown)
    frequency = [FrequencySignal(**{k: spec[k] for k in ("activity", "min_count", "window_days")}) for spec in schema["frequency"]]
    for spec in frequency:  # a frequency signal on an activity absent from this input: never met
        column = peak_column(spec.activity, spec.window_days)
        if column not in features.columns:
            features[column] = 0
    signals = build_signals(features, params.signals, frequency)
    X = model_matrix(features, signals, schema["model_type"], schema.get("half_life_days"), schema["snapshot_days"])
    missing = [c for c in description["features"] if c not in X.columns]
    X = X.reindex(columns=description["features"])
    for column in missing:
        X[column] = NEVER_DAYS if column.startswith(AGE_PREFIX) else 0.0
    return signals, X


def score(
    input_dir: Path, out: Path, params: Params, as_of: datetime | date | None = None, batch_size: int = 50_000,
    models: Path | None = None, keep: list[str] | None = None,
) -> pd.DataFrame:
    """Score every lead in `input_dir` and write the result to `out` (.csv or .parquet); `keep`:
    input lead columns copied beside lead_id (see the module's docstring)."""
    out = Path(out)
    check_options(out, batch_size)
    models = Path(models or params.paths.models)
    model, description = read_model(models)
    schema = description["schema"]
    check_schema(schema, params, models / "model.skops")
    card = read_scorecard(models)
    threshold = io.read_json(models / THRESHOLDS).get("threshold")
    tables, paths = _read_input(Path(input_dir), params)
    kept = kept_columns(tables["leads"], keep, paths["leads"]) if keep else None

    features, _ = build_features(params, require_outcomes=False, moments="now", tables=tables, as_of=as_of)
    skipped = len(tables["leads"]) - len(features)
    if skipped:
        log.warning("score: %d lead(s) not scored: already won or lost by %s, or created after it (only open "
                    "leads are scored)", skipped, "--as-of" if as_of else "the latest timestamp in the input")

    signals, X = _model_inputs(features, tables["activities"], description, params)
    reference = description["reference_fit_values"]

    parts = []
    batches = range(0, len(features), batch_size)
    for start in tqdm(batches, desc="scoring", unit="batch", disable=len(batches) < 2):
        rows = slice(start, start + batch_size)
        batch_signals = signals.take(np.arange(len(features))[rows])
        probability = model.probability(X.iloc[rows])
        points = card.score(batch_signals, features.iloc[rows])
        lead_effects = model.explain(X.iloc[rows], signals.catalog, reference)
        parts.append(pd.DataFrame({
            "lead_id": features["lead_id"].iloc[rows].to_numpy(),
            "probability": probability,
            **{column: points[column].to_numpy() for column in ("fit_points", "engagement_points", "total_points")},
            "grade": _grade(probability, description["grade_cutoffs"]),
            "mql": (points["total_points"].to_numpy() >= threshold) if threshold is not None else False,
            "top_reasons": top_reasons(lead_effects),
            "scored_as_of": features["cutoff_at"].iloc[rows].dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy(),
        }))
    result = pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS] if parts else pd.DataFrame(columns=OUTPUT_COLUMNS)
    if kept is not None:  # the CRM's own ids beside leadcal's lead_id, in the scored leads' order
        extra = kept.drop_duplicates("lead_id").set_index("lead_id").reindex(result["lead_id"]).reset_index(drop=True)
        result = pd.concat([result[["lead_id"]], extra, result.drop(columns="lead_id")], axis=1)
    if out.suffix.lower() == ".parquet":
        io.write_parquet(out, result)
    else:  # for people: a lead id or reason a spreadsheet would run as a formula is escaped (pipeline.spreadsheet)
        spreadsheet.write_csv(out, result)
    log.info("score: %d leads scored, %d MQLs, written to %s", len(result), int(result["mql"].sum()), out)
    return result
