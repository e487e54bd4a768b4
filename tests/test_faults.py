"""Faults: a stage killed mid-way loses nothing, and the statistics behave for any data."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.scorecard import fit_points
from pipeline.core.signals import SignalSet
from pipeline.params import Params


def _files(folder: Path) -> dict[Path, bytes]:
    """Every file under `folder` (the lock file holds the pid of its last holder: left out)."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".leadcal-lock"}


def test_killing_train_mid_way_keeps_the_published_model_and_a_rerun_recovers(default_run: Params, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(default_run.paths.models, models)
    params = tmp_path / "params.yaml"
    paths = {**{k: str(v) for k, v in default_run.paths.model_dump().items()}, "models": str(models)}
    # the session run's folders lie outside this test's folder: on purpose
    params.write_text(yaml.safe_dump({"paths": paths, "allow_outside_project": True}))
    command = [sys.executable, "-m", "pipeline.cli", "--params", str(params), "train"]
    # the published state: an uninterrupted `leadcal train`, as `dvc repro` runs it
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    before = _files(models)

    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # wait until it is fitting, then kill it without warning
        if "fold 1" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert _files(models) == before  # every artifact intact, no temporary file left behind

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert _files(models) == before  # same inputs, same bytes


@given(st.integers(30, 200), st.integers(0, 29), st.integers(400, 1500), st.integers(5, 60))
@settings(max_examples=40, deadline=None)
def test_points_never_fall_when_a_signal_closes_more(n_with: int, k_with: int, n_without: int, k_without: int) -> None:
    def points(customers_with: int) -> int:
        with_signal = np.r_[np.ones(customers_with), np.zeros(n_with - customers_with)]
        without = np.r_[np.ones(k_without), np.zeros(n_without - k_without)]
        matrix = pd.DataFrame({"demo_request": np.r_[np.ones(n_with), np.zeros(n_without)].astype(np.uint8)})
        catalog = pd.DataFrame({"signal": ["demo_request"], "kind": ["engagement"], "type": ["activity"],
                                "attribute": ["demo_request"], "value": ["yes"]})
        evidence = pd.DataFrame({"signal": ["demo_request"], "leads": [n_with], "customers": [customers_with],
                                 "close_rate": [0.0], "ci_low": [0.0], "ci_high": [0.0], "lift": [0.0], "shrunk_lift": [0.0]})
        table, _ = fit_points(SignalSet(matrix, catalog), np.r_[with_signal, without].astype(int), evidence, 20.0, 1.0, 0)
        return int(table["points"].iloc[0])

    assert points(k_with) <= points(k_with + 1)


# --- issue 17: a stage's outputs change together or not at all ---


def _hashes(folder: Path) -> dict[str, str]:
    import hashlib

    if not folder.exists():
        return {}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_killing_extract_anywhere_leaves_the_old_or_the_new_folder_whole(tmp_path: Path) -> None:
    """`leadcal extract` killed with SIGKILL at 20 seeded moments: each time data/extracted is exactly the
    previous run's or exactly a complete new one, never a mix; the next run removes what the kills left."""
    import os
    import random
    import time

    from tests.conftest import REPO, parquet_export

    old_raw, new_raw = parquet_export(tmp_path / "old", 1), parquet_export(tmp_path / "new", 2)
    raw, extracted = tmp_path / "raw", tmp_path / "extracted"
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump({"paths": {name: str(tmp_path / name) for name in
                                                ("sample", "raw", "extracted", "features", "models")}}))
    command = [sys.executable, "-m", "pipeline.cli", "--params", str(config), "extract"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run() -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr

    shutil.copytree(old_raw, raw)
    run()
    old = _hashes(extracted)
    saved = tmp_path / "old_extracted"
    shutil.copytree(extracted, saved)
    shutil.rmtree(raw)
    shutil.copytree(new_raw, raw)  # every later run extracts the new export

    # the run's timeline, measured: when the event log has been streamed (then the tables and the
    # report are written and swapped in) and when the stage is done
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    marks = {}
    for line in process.stderr:
        for key, text in (("streamed", "event log validated"), ("done", "extract done")):
            if text in line:
                marks[key] = time.perf_counter() - started
    assert process.wait(timeout=120) == 0
    new = _hashes(extracted)
    assert set(new) == set(old) == {"activities.parquet", "extract_report.json", "leads.parquet", "stages.parquet"}
    assert all(new[name] != old[name] for name in new)

    rng = random.Random(17)
    outcomes = []
    for attempt in range(20):
        shutil.rmtree(extracted, ignore_errors=True)
        shutil.copytree(saved, extracted)
        before = set(os.listdir(tmp_path))
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        started = time.perf_counter()
        if attempt % 2 == 0:  # anywhere from the imports to the end of the streaming (validation, DuckDB's sort)
            time.sleep(rng.uniform(0.25, 1.0) * marks["streamed"])
        else:  # while the tables and the report are written and the folder swapped in
            for line in process.stderr:
                if "event log validated" in line:
                    break
            time.sleep(rng.uniform(0, marks["done"] - marks["streamed"] + 0.05))
        process.kill()
        process.wait(timeout=60)
        process.stderr.close()
        state = _hashes(extracted)
        outcomes.append("old" if state == old else "new" if state == new else "MIXED")
        assert state in (old, new), (f"kill {attempt} after {time.perf_counter() - started:.2f} s left a mix: " + str(
            {name: "old" if digest == old.get(name) else "new" if digest == new.get(name) else "neither"
             for name, digest in state.items()}))
        left = set(os.listdir(tmp_path)) - before  # only the killed run's staging folder
        assert all(name.startswith(".extracted.leadcal-staging-") for name in left), left

    run()  # the next run: complete, and nothing of the killed runs is left
    assert _hashes(extracted) == new
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".extracted.leadcal-lock"]
    assert leftovers == []
    assert not [p.name for p in extracted.iterdir() if p.name.startswith(".")]  # no temp file, partial log or spill
    print("kill outcomes:", " ".join(outcomes))
