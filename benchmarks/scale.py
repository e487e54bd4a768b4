"""Scale: extract -> features -> close_rates on 100k, 1M and 10M leads (about 30 events each).

Not a test: prints figures and writes benchmarks/results.json. For each size it
generates a synthetic export as Parquet (leads, a web-tracking event log, stages), then
measures in separate processes, so peak memory is each run's own:

- leadcal: `leadcal extract`, `leadcal features`, `leadcal close-rates` (the real stages);
- reference: one hand-written DuckDB query (benchmarks/reference.sql, run by
  benchmarks/reference.py) computing the activity and fit close rates from the same export:
  the practical limit. Its numbers must equal leadcal's close_rates.csv, or the run stops;
  leadcal's CPU and wall time are reported as ratios to it (`ratio_to_reference`: best run
  against best run, and pair by pair: the query runs right after each pass of the stages);
- baseline: the same work in plain pandas, every table whole in memory
  (benchmarks/pandas_baseline.py), measured in the same run. Its features table and
  close-rate table must equal leadcal's, or the run stops: the ratio compares two ways
  of doing one job.

Reported: wall seconds per stage, peak memory (max RSS), events per second, and the
baseline's time as a ratio to leadcal's. On a shared machine one run can be slowed by a
neighbour by a quarter, so each stage and the baseline are run --repeat times and the
fastest run of each is reported (as timeit does), every run listed. Every size is measured
the same way, so the time ratio between sizes compares like with like.

Targets (issue 8), on the 2-core machine: 30M events through the three stages in < 60 s
and < 4 GiB; 10x events at most 12x time; at least 5x faster than the baseline at 30M events.

    python benchmarks/scale.py                       # 100k, 1M, 10M leads
    python benchmarks/scale.py --sizes 100000 1000000 --keep /tmp/scale
    python benchmarks/scale.py --sizes 1000000 --train-without-limit   # + training with and without sampling

Training (weights + train, issue 8: 1M leads in under 5 minutes) is timed at --train-at.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results.json"
EVENTS_PER_LEAD = 30
STAGES = ("extract", "features", "close-rates")  # what is measured against the reference query
MAX_DUCKDB_GB = 16  # a stage that runs out of DuckDB memory is rerun with twice the cap, up to this
CHUNK_LEADS = 250_000  # leads generated (and events written) per row group: bounded memory at any size
START = np.datetime64("2024-01-01T00:00:00", "s")
SPAN_SECONDS = 730 * 86_400
ACTIVITIES = np.array(["page_view", "blog_read", "email_open", "email_click", "pricing_page_visit", "webinar_registration",
                       "webinar_attendance", "whitepaper_download", "case_study_download", "form_submission",
                       "demo_request", "contact_sales_form", "social_like", "social_comment", "newsletter_signup",
                       "careers_page_visit"])
# a web-tracking log is mostly page views
ACTIVITY_SHARE = np.array([0.55, 0.08, 0.12, 0.04, 0.05, 0.02, 0.015, 0.02, 0.01, 0.02, 0.005, 0.005, 0.02, 0.01,
                           0.01, 0.01])
ACTIVITY_SHARE = ACTIVITY_SHARE / ACTIVITY_SHARE.sum()
ACTIVITY_EFFECT = {"demo_request": 2.5, "pricing_page_visit": 0.8, "webinar_attendance": 1.0, "careers_page_visit": -1.0}
INDUSTRIES = np.array(["software", "financial_services", "healthcare", "manufacturing", "retail", "education", "other"])
SENIORITY = np.array(["c_level", "vp", "director", "manager", "individual_contributor"])
COUNTRIES = np.array(["us", "gb", "de", "fr", "nl", "in", "br", "au"])
SOURCES = np.array(["organic_search", "paid_search", "referral", "partner", "event", "direct", "email", "paid_social"])
EMAIL_TYPES = np.array(["business", "personal", "student"])


def generate(n_leads: int, folder: Path, seed: int = 7) -> int:
    """Write leads.parquet, activities.parquet (row groups of CHUNK_LEADS leads) and stages.parquet; return events."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    events_total = 0
    writers: dict[str, pq.ParquetWriter] = {}

    def write(name: str, table: pa.Table) -> None:
        if name not in writers:
            writers[name] = pq.ParquetWriter(folder / f"{name}.parquet", table.schema, compression="zstd")
        writers[name].write_table(table)

    for first in range(0, n_leads, CHUNK_LEADS):
        n = min(CHUNK_LEADS, n_leads - first)
        ids = np.char.add("L", np.char.zfill(np.arange(first, first + n).astype(str), 9))
        created = START + np.sort(rng.integers(0, SPAN_SECONDS, n)).astype("timedelta64[s]")
        write("leads", pa.table({
            "lead_id": ids, "created_at": created.astype("datetime64[us]"),
            "company_size": rng.lognormal(4.5, 1.5, n).round().clip(1, 200_000),
            "annual_revenue": rng.lognormal(15.5, 2.0, n).round(),
            "industry": rng.choice(INDUSTRIES, n), "seniority": rng.choice(SENIORITY, n),
            "country": rng.choice(COUNTRIES, n), "source": rng.choice(SOURCES, n), "email_type": rng.choice(EMAIL_TYPES, n),
        }))
        per_lead = rng.poisson(EVENTS_PER_LEAD, n)
        owner = np.repeat(np.arange(n), per_lead)
        activity = rng.choice(len(ACTIVITIES), owner.size, p=ACTIVITY_SHARE)
        # most events in the first weeks, a tail after the 30-day window
        offset = (rng.exponential(12 * 86_400, owner.size)).astype("int64").clip(0, 120 * 86_400)
        occurred = created[owner] + offset.astype("timedelta64[s]")
        order = np.lexsort((occurred, owner))
        write("activities", pa.table({"lead_id": ids[owner[order]], "activity": ACTIVITIES[activity[order]],
                                      "occurred_at": occurred[order].astype("datetime64[us]")}))
        events_total += owner.size
        logit = np.full(n, -4.0)
        for name, effect in ACTIVITY_EFFECT.items():
            code = int(np.flatnonzero(ACTIVITIES == name)[0])
            early = (activity == code) & (offset < 30 * 86_400)
            logit += effect * (np.bincount(owner[early], minlength=n) > 0)
        won = rng.random(n) < 1 / (1 + np.exp(-logit))
        lost = ~won & (rng.random(n) < 0.5)
        outcome_at = created + rng.integers(5 * 86_400, 80 * 86_400, n).astype("timedelta64[s]")
        stage_ids = np.concatenate([ids, ids[won], ids[lost]])
        stage = np.concatenate([np.full(n, "lead"), np.full(int(won.sum()), "customer"), np.full(int(lost.sum()), "lost")])
        entered = np.concatenate([created, outcome_at[won], outcome_at[lost]]).astype("datetime64[us]")
        amount = np.where(stage == "customer", 20_000.0, np.nan)
        write("stages", pa.table({"lead_id": stage_ids, "stage": stage, "entered_at": entered, "amount": amount}))
    for writer in writers.values():
        writer.close()
    return events_total


def peak_mib_of(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str, float]:
    """Run `command` under /usr/bin/time-like accounting: (wall seconds, peak RSS MiB of that process tree,
    stdout, CPU seconds: user + system of the whole tree, every thread of every core)."""
    wrapper = ("import resource, subprocess, sys, time, json; s = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(json.dumps({'seconds': time.perf_counter() - s, 'rc': r.returncode, 'out': r.stdout, 'err': r.stderr[-2000:], "
               "'peak_kib': u.ru_maxrss, 'cpu': u.ru_utime + u.ru_stime}))")
    result = subprocess.run([sys.executable, "-c", wrapper, *command], cwd=cwd, env=env, capture_output=True, text=True,
                            check=True)
    record = json.loads(result.stdout)
    if record["rc"] != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{record['err']}")
    return record["seconds"], record["peak_kib"] / 1024, record["out"], record["cpu"]


def stage_env() -> dict[str, str]:
    """This environment, with this Python's scripts (the `leadcal` command) first on the PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def same_output(features: Path, baseline_features: Path, close_rates: Path, baseline_close_rates: Path) -> None:
    """The baseline did the same work: its per-lead table and close-rate table equal leadcal's."""
    pd.testing.assert_frame_equal(pd.read_parquet(baseline_features), pd.read_parquet(features))
    if baseline_close_rates.read_bytes() != close_rates.read_bytes():
        raise AssertionError(f"{baseline_close_rates} differs from {close_rates}: the baseline did other work")


def measure(n_leads: int, root: Path, baseline: bool, repeat: int) -> dict[str, object]:
    """leadcal's three stages and the reference query on one generated export, `repeat` times each,
    alternating (leadcal, the query, leadcal again...): a neighbour slowing the machine for a
    while slows both, so their ratio compares like with like."""
    data = root / f"leads_{n_leads}"
    started = time.perf_counter()
    events = generate(n_leads, data / "raw")
    generated = time.perf_counter() - started
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["paths"] = {"sample": str(data / "sample"), "raw": str(data / "raw"), "extracted": str(data / "extracted"),
                       "features": str(data / "features"), "models": str(data / "models")}
    params_path = data / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    env = stage_env()
    runs: dict[str, list[float]] = {stage: [] for stage in STAGES}
    cpu_runs: dict[str, list[float]] = {stage: [] for stage in STAGES}
    reference_runs: list[tuple[float, float, float]] = []
    peak, refused = 0.0, []
    for _ in range(repeat):
        for stage, (seconds, mib, cpu) in leadcal_pass(n_leads, data, params, params_path, env, refused).items():
            runs[stage].append(round(seconds, 2))
            cpu_runs[stage].append(round(cpu, 2))
            peak = max(peak, mib)
        reference_runs.append(reference_run(n_leads, data, params["duckdb_memory_gb"], env))
    stages = {stage: min(seconds) for stage, seconds in runs.items()}
    total = sum(stages.values())
    cpu_total = sum(min(seconds) for seconds in cpu_runs.values())
    record: dict[str, object] = {
        "leads": n_leads, "events": events, "generate_seconds": round(generated, 1),
        "leadcal": {"stages_seconds": stages, "seconds": round(total, 2), "cpu_seconds": round(cpu_total, 2),
                    "peak_mib": round(peak), "events_per_second": round(events / total),
                    "duckdb_memory_gb": params["duckdb_memory_gb"], "out_of_memory_at": refused, "runs_seconds": runs,
                    "runs_cpu_seconds": cpu_runs},
    }
    record["reference"] = reference_record(reference_runs, data)
    record["ratio_to_reference"] = {
        "cpu": round(cpu_total / record["reference"]["cpu_seconds"], 2),
        "wall": round(total / record["reference"]["seconds"], 2),
        # each pass of the three stages against the query's run right after it
        "cpu_by_pair": [round(sum(cpu_runs[stage][i] for stage in STAGES) / reference_runs[i][2], 2)
                        for i in range(repeat)],
    }
    print(f"  {n_leads:>10,} leads  leadcal / hand-written query: {record['ratio_to_reference']['cpu']}x its CPU time, "
          f"{record['ratio_to_reference']['wall']}x its wall time (same numbers; pair by pair "
          f"{record['ratio_to_reference']['cpu_by_pair']})", flush=True)
    if baseline:
        baseline_params = {**params, "paths": {**params["paths"], **{
            name: str(data / f"baseline_{name}") for name in ("extracted", "features", "models")}}}
        baseline_path = data / "params_baseline.yaml"
        baseline_path.write_text(yaml.safe_dump(baseline_params))
        baseline_runs, mib = [], 0.0
        for _ in range(repeat):
            seconds, run_mib, _, _ = peak_mib_of([sys.executable, str(REPO / "benchmarks" / "pandas_baseline.py"),
                                               str(baseline_path)], data, env)
            same_output(data / "features" / "features.parquet", data / "baseline_features" / "features.parquet",
                        data / "models" / "close_rates.csv", data / "baseline_models" / "close_rates.csv")
            baseline_runs.append(round(seconds, 2))
            mib = max(mib, run_mib)
            print(f"  {n_leads:>10,} leads  pandas       {seconds:7.1f} s  peak {run_mib:7.0f} MiB", flush=True)
        seconds = min(baseline_runs)
        record["pandas_baseline"] = {"seconds": seconds, "peak_mib": round(mib), "events_per_second": round(events / seconds),
                                     "same_output": True, "runs_seconds": baseline_runs}
        record["speedup_vs_pandas"] = round(seconds / total, 2)
        print(f"  {n_leads:>10,} leads  best of {repeat}: leadcal {total:.1f} s, pandas {seconds:.1f} s: "
              f"leadcal {record['speedup_vs_pandas']}x faster (same features and close rates)", flush=True)
    else:
        record["pandas_baseline"] = "skipped: the whole event log in pandas does not fit this machine's memory"
    return record


def leadcal_pass(n_leads: int, data: Path, params: dict, params_path: Path, env: dict[str, str],
                 refused: list[dict[str, object]]) -> dict[str, tuple[float, float, float]]:
    """extract, features and close-rates once, each in its own process: (seconds, peak MiB, CPU
    seconds) per stage. A stage out of DuckDB memory is rerun with twice the cap (noted in `refused`)."""
    measured = {}
    for stage in STAGES:
        while True:
            try:
                seconds, mib, _, cpu = peak_mib_of(["leadcal", "-q", "--params", str(params_path), stage], data, env)
                break
            except RuntimeError as exc:  # the DuckDB cap was too small for this size: record it, double it
                if "duckdb_memory_gb" not in str(exc) or params["duckdb_memory_gb"] >= MAX_DUCKDB_GB:
                    raise
                refused.append({"stage": stage, "duckdb_memory_gb": params["duckdb_memory_gb"]})
                params["duckdb_memory_gb"] *= 2
                params_path.write_text(yaml.safe_dump(params))
                print(f"  {n_leads:>10,} leads  {stage:<12} out of memory; duckdb_memory_gb raised to "
                      f"{params['duckdb_memory_gb']:g}", flush=True)
        measured[stage] = (seconds, mib, cpu)
        print(f"  {n_leads:>10,} leads  {stage:<12} {seconds:7.1f} s  cpu {cpu:7.1f} s  peak {mib:7.0f} MiB", flush=True)
    return measured


def reference_run(n_leads: int, data: Path, memory_gb: float, env: dict[str, str]) -> tuple[float, float, float]:
    """The hand-written DuckDB query (benchmarks/reference.sql) once on the export: (seconds, peak
    MiB, CPU seconds). DuckDB gets leadcal's memory cap."""
    seconds, mib, _, cpu = peak_mib_of([sys.executable, str(REPO / "benchmarks" / "reference.py"), str(data / "raw"),
                                        str(data / "reference.csv"), "--memory-gb", str(memory_gb)], data, env)
    print(f"  {n_leads:>10,} leads  reference    {seconds:7.1f} s  cpu {cpu:7.1f} s  peak {mib:7.0f} MiB", flush=True)
    return seconds, mib, cpu


def reference_record(runs: list[tuple[float, float, float]], data: Path) -> dict[str, object]:
    """The query's runs, the best of each measure; its result must equal leadcal's close_rates.csv
    (activity and fit rows), or the run stops."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import reference  # noqa: PLC0415 - a sibling script, not a package

    reference.agrees(pd.read_csv(data / "reference.csv"), pd.read_csv(data / "models" / "close_rates.csv"))
    walls, cpus = [round(run[0], 2) for run in runs], [round(run[2], 2) for run in runs]
    return {"seconds": min(walls), "cpu_seconds": min(cpus), "peak_mib": round(max(run[1] for run in runs)),
            "same_numbers": True, "runs_seconds": walls, "runs_cpu_seconds": cpus,
            "query": "benchmarks/reference.sql (activity and fit close rates, Wilson intervals, lifts)"}


def measure_training(n_leads: int, root: Path, max_fit_leads: int | None) -> dict[str, object]:
    """weights + train on the features of a measured size, with or without train.max_fit_leads."""
    data = root / f"leads_{n_leads}"
    params = yaml.safe_load((data / "params.yaml").read_text())
    params.setdefault("train", {})["max_fit_leads"] = max_fit_leads
    models = data / f"models_fit_{max_fit_leads or 'all'}"
    params["paths"]["models"] = str(models)
    params_path = data / f"params_fit_{max_fit_leads or 'all'}.yaml"
    params_path.write_text(yaml.safe_dump(params))
    (models / "metrics").mkdir(parents=True, exist_ok=True)
    for name in ("close_rates.csv", "signals.json"):  # the close-rates stage's outputs, measured above
        (models / name).write_bytes((data / "models" / name).read_bytes())
    env = stage_env()
    stages, cpu, peak = {}, {}, 0.0
    for stage in ("weights", "train"):
        seconds, mib, _, cpu_seconds = peak_mib_of(["leadcal", "-q", "--params", str(params_path), stage], data, env)
        stages[stage] = round(seconds, 1)
        cpu[stage] = round(cpu_seconds, 1)
        peak = max(peak, mib)
        print(f"  {n_leads:>10,} leads  {stage:<12} {seconds:7.1f} s  peak {mib:7.0f} MiB  "
              f"(max_fit_leads {max_fit_leads})", flush=True)
    metrics = json.loads((models / "metrics" / "train.json").read_text())
    return {"leads": n_leads, "max_fit_leads": max_fit_leads, "stages_seconds": stages,
            "seconds": round(sum(stages.values()), 1), "cpu_stages_seconds": cpu,
            "cpu_seconds": round(sum(cpu.values()), 1), "peak_mib": round(peak),
            "model_auc": round(metrics["model"]["mean"]["auc"], 4),
            "points_auc": round(metrics["points_table"]["mean"]["auc"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--baseline-up-to", type=int, default=1_000_000,
                        help="run the pandas baseline up to this many leads (default 1M: 10M needs > 24 GiB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each stage and of the baseline (default 3)")
    parser.add_argument("--repeat-up-to", type=int, default=10_000_000,
                        help="repeat only up to this many leads (default 10M: every size; lower it for a quicker run)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the generated data in this folder")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    parser.add_argument("--train-at", type=int, default=1_000_000,
                        help="also time weights + train at this size (one of --sizes; 0: skip)")
    parser.add_argument("--train-without-limit", action="store_true",
                        help="also train on every lead (train.max_fit_leads: null), for the AUC comparison")
    args = parser.parse_args()
    runs, training = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for n_leads in args.sizes:
            print(f"{n_leads:,} leads ...", flush=True)
            runs.append(measure(n_leads, root, baseline=n_leads <= args.baseline_up_to,
                                repeat=args.repeat if n_leads <= args.repeat_up_to else 1))
        if args.train_at in args.sizes:
            default_limit = yaml.safe_load((REPO / "params.yaml").read_text()).get("train", {}).get("max_fit_leads",
                                                                                                      200_000)
            training.append(measure_training(args.train_at, root, default_limit))
            if args.train_without_limit:
                training.append(measure_training(args.train_at, root, None))
    for smaller, larger in zip(runs, runs[1:]):
        larger["time_ratio_vs_previous_size"] = round(larger["leadcal"]["seconds"] / smaller["leadcal"]["seconds"], 2)
        larger["events_ratio_vs_previous_size"] = round(larger["events"] / smaller["events"], 2)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "targets": {"30M_events_seconds": 60, "30M_events_peak_mib": 4096, "max_time_ratio_for_10x_events": 12,
                    "min_speedup_vs_pandas_at_30M": 5, "max_cpu_ratio_to_reference_at_30M": 1.5,
                    "300M_events_seconds": 180, "300M_events_peak_mib": 4096},
        "runs": runs,
        "training": training,
        "training_target_seconds": 60,  # weights + train at 1M leads (issue 21), the AUC unchanged
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
