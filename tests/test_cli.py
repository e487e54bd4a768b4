"""The command line: clear one-line errors, exit codes, every stage reachable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import STAGES, build_parser, main


def test_every_dvc_stage_has_a_command() -> None:
    import yaml

    from .conftest import REPO

    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    commands = {stage["cmd"].split()[1] for stage in dvc["stages"].values()}
    assert commands == set(STAGES)
    assert all(stage["cmd"].startswith("leadcal ") for stage in dvc["stages"].values())


def test_missing_params_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--params", str(tmp_path / "nope.yaml"), "features"])
    err = capsys.readouterr().err
    assert code == 2
    assert "leadcal features: error:" in err and "nope.yaml" in err and "Traceback" not in err


def test_invalid_param_value_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("outcome:\n  horizon_days: 10\n  snapshot_days: [0, 7, 30]\n")
    assert main(["--params", str(path), "features"]) == 2
    err = capsys.readouterr().err
    assert "snapshot_days (30) must be below horizon_days (10)" in err


def test_the_replaced_observation_window_says_what_replaces_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("outcome:\n  observation_days: 14\n")
    assert main(["--params", str(path), "features"]) == 2
    err = capsys.readouterr().err
    assert "observation_days was replaced by snapshot_days" in err and "[0, 7, 14]" in err and "Traceback" not in err


def test_stage_before_its_inputs_exist_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(f"paths:\n  features: {tmp_path / 'f'}\n  models: {tmp_path / 'm'}\n")
    assert main(["--params", str(path), "close-rates"]) == 2
    err = capsys.readouterr().err
    assert "features.parquet: not found" in err and "dvc repro" in err


def test_help_lists_the_stages() -> None:
    text = build_parser().format_help()
    for name in STAGES:
        assert name in text


def test_a_params_file_cannot_run_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "params.yaml"
    path.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["--params", str(path), "features"]) == 2
    assert not marker.exists()
    assert "not valid YAML" in capsys.readouterr().err


def test_artifacts_do_not_depend_on_the_shells_thread_variables(default_run, tmp_path: Path) -> None:
    """`threads` in params holds whatever OMP_NUM_THREADS / OPENBLAS_NUM_THREADS the shell has:
    SciPy's OpenBLAS and scikit-learn's OpenMP load after the CLI starts and read them then."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    shutil.copytree(default_run.paths.features, tmp_path / "features")
    shutil.copytree(default_run.paths.models, tmp_path / "models")
    params = default_run.model_dump(mode="json")
    params["paths"] = {**params["paths"], "features": str(tmp_path / "features"), "models": str(tmp_path / "models")}
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump(params))
    outputs = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "-q", "--params", str(config), "train"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append({name: (tmp_path / "models" / name).read_bytes() for name in ("model.skops", "model.json")})
    assert outputs[0] == outputs[1]
