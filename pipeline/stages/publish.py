"""Guard rails on publishing: the points table and threshold ops import are only replaced
by a run that is good enough, and a big move from the last published one is flagged.

models/published/ holds what ops should use (weights.csv, weights.json, thresholds.json)
and publication.json (status, drift, reasons). It is a persistent DVC output: DVC keeps
it between runs, so this stage can compare with the previous publication.

- A run whose held-out quality falls below the floors (params publish.min_points_auc,
  publish.min_model_auc), or that has no MQL threshold (thresholds.json `threshold: null`:
  no policy found one, pipeline.stages.thresholds), does not replace anything: its files go to
  published/rejected/ with the reasons, and the last good publication stays. A published
  thresholds.json always holds a threshold.
- A run that passes replaces the files. Its drift against the previous publication (the
  threshold's move, and every signal whose points moved more than the limits) is written
  to publication.json and flagged, so a surprising change is seen before ops import it.
  The publication it replaces moves to published/previous/, so the drift notebook can
  show what changed signal by signal (lift, close rate, points).
- A run identical to the publication changes nothing (re-runs stay byte-identical).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.artifacts import PUBLICATION, PUBLISHED, THRESHOLDS, WEIGHTS
from pipeline.params import Params, Publish

log = logging.getLogger(__name__)

FILES = ("weights.csv", WEIGHTS, THRESHOLDS)


def drift(previous: dict, candidate: dict, limits: Publish) -> dict[str, object]:
    """What moved between two publications (thresholds.json + weights.json payloads), and the flags."""
    before_t, after_t = previous["thresholds"].get("threshold"), candidate["thresholds"].get("threshold")
    flags = []
    threshold_move = None if before_t is None or after_t is None else after_t - before_t
    if threshold_move is not None and abs(threshold_move) > limits.max_threshold_change:
        flags.append(f"MQL threshold moved by {threshold_move:+d} points ({before_t} -> {after_t}), "
                     f"more than publish.max_threshold_change = {limits.max_threshold_change}")
    elif (before_t is None) != (after_t is None):
        flags.append(f"MQL threshold changed from {before_t} to {after_t}")
    old = pd.DataFrame(previous["weights"]["signals"]).set_index("signal")["points"]
    new = pd.DataFrame(candidate["weights"]["signals"]).set_index("signal")["points"]
    moved = (new.reindex(old.index.union(new.index), fill_value=0) - old.reindex(old.index.union(new.index), fill_value=0))
    big = moved[moved.abs() > limits.max_points_change].sort_values(key=abs, ascending=False)
    for signal, change in big.items():
        flags.append(f"{signal}: points moved by {int(change):+d} ({int(old.get(signal, 0))} -> {int(new.get(signal, 0))})")
    return {
        "threshold_move": threshold_move,
        "signals_moved_more_than_limit": {str(k): int(v) for k, v in big.items()},
        "added_signals": sorted(set(new.index) - set(old.index)),
        "removed_signals": sorted(set(old.index) - set(new.index)),
        "flags": flags,
    }


def below_floors(metrics: dict, limits: Publish) -> list[str]:
    """Why a run must not be published (empty: it may)."""
    reasons = []
    for name, floor in (("points_table", limits.min_points_auc), ("model", limits.min_model_auc)):
        auc = metrics.get(name, {}).get("mean", {}).get("auc")
        if auc is None or auc < floor:
            reasons.append(f"{name} held-out AUC {auc if auc is None else round(auc, 3)} is below the floor {floor} "
                           f"(params publish.min_{'points' if name == 'points_table' else 'model'}_auc)")
    return reasons


def no_threshold(thresholds: dict) -> list[str]:
    """Why a thresholds.json must not be published (empty: it may): ops cannot import a null threshold."""
    if thresholds.get("threshold") is not None:
        return []
    why = thresholds.get("warning") or "no policy found one"
    return [f"no MQL threshold (thresholds.json threshold: null): {why}"]


def _payload(folder: Path) -> dict | None:
    if not all((folder / name).exists() for name in FILES):
        return None
    return {"weights": io.read_json(folder / WEIGHTS), "thresholds": io.read_json(folder / THRESHOLDS)}


def run(params: Params) -> dict[str, object]:
    models = params.paths.models
    published = models / PUBLISHED
    published.mkdir(parents=True, exist_ok=True)
    candidate = _payload(models)
    previous = _payload(published)
    metrics = io.read_json(models / "metrics" / "train.json")
    reasons = below_floors(metrics, params.publish) + no_threshold(io.read_json(models / THRESHOLDS))
    if reasons:
        rejected = published / "rejected"
        for name in FILES:
            io.write_bytes(rejected / name, (models / name).read_bytes())
        record = {"status": "rejected: the previous publication stays" if previous else "rejected: nothing published yet",
                  "reasons": reasons}
        io.write_json(published / PUBLICATION, record)
        log.warning("publish: %s: %s", record["status"], "; ".join(reasons))
        return record
    if previous is not None and all((models / n).read_bytes() == (published / n).read_bytes() for n in FILES):
        last = io.read_json(published / PUBLICATION)
        if last.get("status") == "published":
            log.info("publish: unchanged since the last publication")
            return last
        last = {"status": "published", "reasons": [],
                "drift": {"flags": [], "note": "same as the last publication; the rejected run before it is discarded"}}
        shutil.rmtree(published / "rejected", ignore_errors=True)
        io.write_json(published / PUBLICATION, last)
        return last
    record: dict[str, object] = {"status": "published", "reasons": []}
    record["drift"] = drift(previous, candidate, params.publish) if previous else {"flags": [], "note": "first publication"}
    if previous is not None:
        for name in (*FILES, PUBLICATION):
            io.write_bytes(published / "previous" / name, (published / name).read_bytes())
    for name in FILES:
        io.write_bytes(published / name, (models / name).read_bytes())
    shutil.rmtree(published / "rejected", ignore_errors=True)
    io.write_json(published / PUBLICATION, record)
    for flag in record["drift"]["flags"]:
        log.warning("publish: drift: %s", flag)
    log.info("publish: %s (%d drift flag(s))", record["status"], len(record["drift"]["flags"]))
    return record
