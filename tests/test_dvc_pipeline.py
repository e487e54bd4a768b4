"""The DVC project itself: re-runs only what changed, and reproduces byte for byte.

Runs real `dvc repro` in a throwaway copy of the repository (a smaller sample, to keep
it to tens of seconds).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
STAGES = {"generate", "extract", "features", "close_rates", "weights", "train", "thresholds", "funnel", "publish", "exports", "report",
          "notebooks"}


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _run(args: list[str], cwd: Path, threads: str | None = None) -> str:
    """Run a command; `threads`: what the shell's thread variables say (leadcal must not care)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    if threads is not None:
        env.update(dict.fromkeys(THREAD_VARIABLES, threads))
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _repro(cwd: Path, *flags: str, threads: str | None = None) -> set[str]:
    """Run `dvc repro`; return the stages that actually ran."""
    return set(re.findall(r"Running stage '([^']+)'", _run([str(BIN / "dvc"), "repro", *flags], cwd, threads)))


def _outs(cwd: Path) -> dict[str, str]:
    lock = yaml.safe_load((cwd / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def _set_param(cwd: Path, section: str, key: str, value: object) -> None:
    params = yaml.safe_load((cwd / "params.yaml").read_text())
    params[section][key] = value
    (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _wait_for_command(group: int, stage: str, timeout: float = 120.0) -> None:
    """Until a process of the process group `group` runs `leadcal <stage>` (read from /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit() or os.getpgid(int(entry.name)) != group:
                    continue
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:  # the process ended meanwhile
                continue
            if stage.encode() in words and any(word.endswith(b"leadcal") for word in words):
                return
        time.sleep(0.02)
    raise AssertionError(f"no `leadcal {stage}` started in {timeout:g} s")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC copy of the tracked files, on a 3,000-lead sample."""
    root = tmp_path_factory.mktemp("project")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    _set_param(root, "generate", "n_leads", 3000)
    _set_param(root, "train", "min_customers", 30)  # a small sample: the defaults (100) would refuse it
    _set_param(root, "weights", "bootstrap_samples", 5)
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=root, check=True)
    return root


def test_first_run_runs_every_stage_and_second_run_nothing(project: Path) -> None:
    assert _repro(project, threads="1") == STAGES
    assert _repro(project) == set()
    assert "didn't change" in _run([str(BIN / "dvc"), "repro"], project)


def test_changing_a_threshold_param_reruns_only_what_depends_on_it(project: Path) -> None:
    _repro(project)
    before = _outs(project)
    _set_param(project, "thresholds", "mql_lift", 2.5)
    # exports too: each CRM sheet carries the MQL rule chosen for its own tool (thresholds.json "crm")
    assert _repro(project) == {"thresholds", "publish", "exports", "report", "notebooks"}
    after = _outs(project)
    changed = {path for path in before if before[path] != after[path]}
    assert "models/thresholds.json" in changed
    assert not any(path.startswith(("data/", "models/weights", "models/model")) for path in changed)


def test_same_params_give_byte_identical_artifacts_whatever_the_shells_thread_variables(project: Path) -> None:
    """Rerun the fitting stages with two threads in the shell's OMP/OpenBLAS/MKL variables (the first
    run had one): `threads` in params, not the shell, sets the threads (pipeline.cli.limit_threads),
    since a thread count changes floating-point sums and so the model's bytes. The stages that fit
    (weights, train) are where a thread count shows; with their outputs unchanged nothing downstream reruns."""
    _repro(project, threads="1")
    before = _outs(project)
    assert _repro(project, "--force", "--single-item", "weights", "train", threads="2") == {"weights", "train"}
    assert _outs(project) == before
    assert _repro(project, threads="2") == set()  # nothing downstream sees a change


def test_dvc_metrics_and_plots_work_on_the_outputs(project: Path) -> None:
    """`dvc metrics show` is one readable row (under 200 characters); `dvc plots show` draws the
    declared plots, each against its named x (none against DVC's row index `step`), and the charts."""
    _repro(project)
    metrics = _run([str(BIN / "dvc"), "metrics", "show", "--json"], project)
    assert '"auc"' in metrics and '"close_rate"' in metrics
    table = _run([str(BIN / "dvc"), "metrics", "show"], project).splitlines()
    assert table and max(len(line) for line in table) <= 200, table
    _run([str(BIN / "dvc"), "plots", "show", "-o", "plots_html"], project)
    html = (project / "plots_html" / "index.html").read_text()
    declared = yaml.safe_load((project / "dvc.yaml").read_text())["plots"]
    titles = [next(iter(plot)) for plot in declared if isinstance(plot, dict)]
    shown = re.findall(r'"title": \{"text": "([^"]+)"', html)
    assert sorted(shown) == sorted(titles)  # the declared plots, and no other
    assert '"field": "step"' not in html  # nothing drawn against DVC's row index
    charts = sorted(p.name for p in (project / "models" / "charts").glob("*.png"))
    assert charts and all(f"models_charts_{name}" in html for name in charts)


def test_dvc_repro_recovers_after_train_is_killed(project: Path) -> None:
    import signal

    _repro(project)
    expected = _outs(project)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    running = subprocess.Popen([str(BIN / "dvc"), "repro", "--force", "--single-item", "train"], cwd=project, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # inside the train stage: as soon as DVC has started `leadcal train` (a fixed 3 s wait outlived a
    # fast train and killed DVC while it wrote dvc.lock, which DVC itself then refused to read)
    _wait_for_command(running.pid, "train")
    os.killpg(running.pid, signal.SIGKILL)
    running.wait(timeout=60)
    ran = _repro(project)
    assert "train" in ran or not ran  # whatever the kill interrupted is redone
    assert _outs(project) == expected  # and the outputs are exactly the ones before
    assert "Data and pipelines are up to date" in _run([str(BIN / "dvc"), "status"], project)  # files match the lock
