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

from pipeline.params import Params
from pipeline.signals import SignalSet
from pipeline.weights import fit_points


def test_killing_train_mid_way_keeps_the_published_model_and_a_rerun_recovers(default_run: Params, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(default_run.paths.models, models)
    params = tmp_path / "params.yaml"
    paths = {**{k: str(v) for k, v in default_run.paths.model_dump().items()}, "models": str(models)}
    params.write_text(yaml.safe_dump({"paths": paths}))
    command = [sys.executable, "-m", "pipeline.cli", "--params", str(params), "train"]
    # the published state: an uninterrupted `leadcal train`, as `dvc repro` runs it
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    before = {p.relative_to(models): p.read_bytes() for p in models.rglob("*") if p.is_file()}

    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # wait until it is fitting, then kill it without warning
        if "fold 1" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL
    after = {p.relative_to(models): p.read_bytes() for p in models.rglob("*") if p.is_file()}
    assert after == before  # every artifact intact, no temporary file left behind

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    recovered = {p.relative_to(models): p.read_bytes() for p in models.rglob("*") if p.is_file()}
    assert recovered == before  # same inputs, same bytes


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
