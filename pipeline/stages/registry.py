"""Every DVC stage, declared once: the function `leadcal <stage>` calls, the params it reads
and the artifacts it reads and writes.

dvc.yaml repeats these lists because DVC needs them there. tests/test_dvc_consistency.py holds
it to them (each stage's params, data deps, outs and metrics must be exactly the declared ones,
and its code deps exactly the modules the stage imports), and `leadcal run` takes from here the
order of the stages and which stage needs which (a stage needs those that write what it reads),
so `leadcal run --keep-going` and `dvc repro` agree on what a failure stops.

Paths are written as dvc.yaml writes them, `${paths.<folder>}` standing for params `paths`.
This module imports nothing heavy: the CLI reads it to list the commands, and a stage's own
module is imported only when the stage runs.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from pipeline.params import Params

MODELS = "${paths.models}"


@dataclass(frozen=True)
class Stage:
    name: str  # `leadcal <name>`; dvc.yaml names the stage with '_' for '-'
    entry: str  # "module:function", called with the params
    summary: str  # the CLI's help line
    params: tuple[str, ...]  # settings read: a section ('signals') or one key ('train.folds')
    reads: tuple[str, ...] = ()  # data deps
    writes: tuple[str, ...] = ()  # outs and metrics
    persist: tuple[str, ...] = ()  # outs DVC must not empty before the run (the stage checks them itself)

    @property
    def dvc_name(self) -> str:
        return self.name.replace("-", "_")

    def run(self, params: Params) -> object:
        module, function = self.entry.split(":")
        return getattr(importlib.import_module(module), function)(params)


def _models(*names: str) -> tuple[str, ...]:
    return tuple(f"{MODELS}/{name}" for name in names)


TRAIN_PLOTS = _models("plots/calibration_model.csv", "plots/calibration_points.csv", "plots/cumulative_gain.csv")
THRESHOLD_PLOTS = _models("plots/threshold_curve.csv", "plots/score_distribution.csv", "plots/matrix.csv")

STAGES: tuple[Stage, ...] = (
    Stage("generate", "pipeline.data.generate:write_sample",
          "write the sample B2B history with planted effects to paths.sample",
          params=("seed", "generate", "outcome.horizon_days"), writes=("${paths.sample}",),
          persist=("${paths.sample}",)),  # generate refuses to overwrite a folder that holds someone's export
    Stage("extract", "pipeline.stages.extract:extract",
          "validate the raw export and write the canonical tables as Parquet",
          params=("extract", "source", "engine", "duckdb_memory_gb", "spark", "signals.fit_attributes",
                  "signals.numeric_bins"),
          reads=("${paths.raw}",), writes=("${paths.extracted}",)),
    Stage("features", "pipeline.stages.features:write_features",
          "each lead as it was at fixed ages while still open (point-in-time rows), and its outcome",
          params=("engine", "duckdb_memory_gb", "spark", "outcome", "signals", "seed", "train.folds"),
          reads=("${paths.extracted}",), writes=("${paths.features}",)),
    Stage("close-rates", "pipeline.stages.close_rates:run", "close rate, interval and lift of every signal",
          params=("engine", "spark", "signals", "close_rates", "train.validation_months", "outcome.horizon_days",
                  "outcome.snapshot_days"),
          reads=("${paths.features}",),
          writes=_models("signals.json", "close_rates.csv", "metrics/close_rates.json")),
    Stage("weights", "pipeline.stages.weights:run", "the points table (fit and engagement points)",
          params=("seed", "signals", "weights", "train.validation_months", "train.max_fit_leads", "outcome.horizon_days"),
          reads=("${paths.features}", *_models("close_rates.csv", "signals.json")),
          writes=_models("weights.csv", "weights.json", "metrics/weights.json")),
    Stage("train", "pipeline.stages.model:run", "predictive model, validated on the latest cohorts",
          params=("seed", "signals", "train", "weights", "outcome.horizon_days", "outcome.snapshot_days"),
          reads=("${paths.features}", *_models("weights.json", "signals.json", "close_rates.csv")),
          writes=(*_models("model.skops", "model.json", "model_card.md", "factors.csv", "metrics/train.json"),
                  *TRAIN_PLOTS)),
    Stage("thresholds", "pipeline.stages.thresholds:run", "the MQL threshold and what it does",
          params=("seed", "signals", "thresholds", "train.validation_months", "outcome.horizon_days",
                  "outcome.snapshot_days"),
          reads=("${paths.features}", "${paths.extracted}", *_models("weights.json", "signals.json")),
          writes=(*_models("thresholds.json"), *THRESHOLD_PLOTS)),
    Stage("funnel", "pipeline.stages.funnel:run", "funnel conversion, SLA follow-up, stage durations, rejected MQLs",
          params=("funnel", "signals", "close_rates.confidence", "outcome.horizon_days"),
          reads=("${paths.extracted}", "${paths.features}", *_models("signals.json")),
          writes=_models("funnel.json", "plots/funnel.csv", "plots/funnel_by_month.csv")),
    Stage("publish", "pipeline.stages.publish:run", "replace models/published/ if the run passes the floors; flag drift",
          params=("publish",),
          reads=_models("weights.csv", "weights.json", "thresholds.json", "metrics/train.json"),
          writes=_models("published"), persist=_models("published")),  # it keeps the previous publication
    Stage("exports", "pipeline.stages.exports:run",
          "the points table as CRM import sheets (generic, HubSpot, Salesforce, Mautic)",
          params=("exports", "signals.numeric_bins"),
          reads=_models("published/weights.json", "published/thresholds.json"), writes=_models("exports")),
    Stage("report", "pipeline.stages.report:run", "charts and the metrics file",
          params=("outcome.horizon_days",),
          reads=(*_models("close_rates.csv", "metrics/close_rates.json", "metrics/weights.json", "metrics/train.json",
                          "thresholds.json"), *TRAIN_PLOTS,
                 *_models("weights.json", "plots/score_distribution.csv", "plots/matrix.csv", "funnel.json",
                          "plots/funnel_by_month.csv", "published")),
          writes=_models("charts", "metrics/report.json", "metrics.json")),
    Stage("notebooks", "pipeline.stages.notebooks:run",
          "the calibration notebooks, executed on this run and rendered to models/report/*.html",
          params=(),
          reads=("notebooks", *_models("close_rates.csv", "metrics/close_rates.json", "metrics/train.json",
                                       "weights.csv", "weights.json", "thresholds.json", "funnel.json"),
                 *TRAIN_PLOTS, *_models("plots/score_distribution.csv", "plots/matrix.csv",
                                        "plots/funnel_by_month.csv", "published")),
          writes=_models("report")),
)
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def resolved(path: str, paths: object) -> str:
    """A declared path with `${paths.<folder>}` replaced by that setting of params `paths`."""
    return re.sub(r"\$\{paths\.(\w+)\}", lambda m: str(getattr(paths, m.group(1))), path).rstrip("/")


def upstream(name: str, paths: object) -> tuple[str, ...]:
    """The earlier stages that write something stage `name` reads (a file, or a folder holding it
    or held by it), with the folders of params `paths` (by default the sample is the raw export,
    so extract needs generate; pointed at a real export, it does not), in pipeline order."""
    stage = BY_NAME[name]
    reads = [resolved(read, paths) for read in stage.reads]
    return tuple(other.name for other in STAGES[:STAGES.index(stage)]
                 if any(_within(read, out) or _within(out, read)
                        for read in reads for out in (resolved(w, paths) for w in other.writes)))
