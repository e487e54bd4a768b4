"""Issue 17: a stage's outputs change together or not at all, one leadcal run per output folder,
and no traceback for a full disk, a read-only folder or a bug (pipeline/staging.py).

The kill -9 test of `leadcal extract` is in tests/test_faults.py.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import cli, io, staging
from pipeline.cli import main
from pipeline.data.generate import write_sample
from pipeline.stages.extract import extract
from pipeline.stages.features import write_features
from tests.conftest import REPO, params_in, parquet_export


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("staging_exports")
    return parquet_export(root / "one", 1), parquet_export(root / "two", 2)


def _use(export: Path, root: Path) -> None:
    shutil.rmtree(root / "raw", ignore_errors=True)
    shutil.copytree(export, root / "raw")


def _config(root: Path) -> Path:
    config = root / "params.yaml"
    config.write_text(yaml.safe_dump({"paths": {name: str(root / name) for name in
                                                ("sample", "raw", "extracted", "features", "models")}}))
    return config


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _dot_entries(folder: Path) -> list[str]:
    """Hidden entries beside the output folders: staging or old folders, temp files (lock files aside)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and not p.name.endswith("leadcal-lock"))


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- whole-folder outputs


def test_extract_failing_after_some_files_leaves_the_previous_folder_whole(exports, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _use(exports[0], tmp_path)
    params = params_in(tmp_path)
    extract(params)
    before = _snapshot(params.paths.extracted)
    _use(exports[1], tmp_path)  # a new export: every table would change

    def report_fails(path, payload) -> None:  # the report is written last, after the three tables
        raise RuntimeError("the process dies here")

    monkeypatch.setattr(io, "write_json", report_fails)
    with pytest.raises(RuntimeError):
        extract(params)
    assert _snapshot(params.paths.extracted) == before  # no new leads.parquet beside the old report
    assert _dot_entries(tmp_path) == []
    monkeypatch.undo()
    extract(params)
    after = _snapshot(params.paths.extracted)
    assert after.keys() == before.keys() and all(after[name] != before[name] for name in after)
    assert _dot_entries(tmp_path) == []


def test_features_failing_after_the_table_leaves_the_previous_folder_whole(exports, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _use(exports[0], tmp_path)
    params = params_in(tmp_path)
    extract(params)
    write_features(params)
    before = _snapshot(params.paths.features)
    other = params_in(tmp_path, outcome={"snapshot_days": [0, 7]})  # other rows: a different table

    def report_fails(path, payload) -> None:
        raise RuntimeError("the process dies here")

    monkeypatch.setattr(io, "write_json", report_fails)
    with pytest.raises(RuntimeError):
        write_features(other)
    assert _snapshot(params.paths.features) == before
    assert _dot_entries(tmp_path) == []


def test_leftovers_of_a_dead_run_are_removed_and_a_half_swap_is_rolled_back(tmp_path: Path) -> None:
    target = tmp_path / "extracted"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".extracted.leadcal-staging-{dead.pid}").mkdir()
    (tmp_path / f".extracted.leadcal-old-{dead.pid}").mkdir()
    (tmp_path / f".extracted.leadcal-old-{dead.pid}" / "leads.parquet").write_bytes(b"old")
    # the target is missing: a swap without an atomic exchange was cut between its two renames
    staging.clean_leftovers(target)
    assert (target / "leads.parquet").read_bytes() == b"old"
    assert _dot_entries(tmp_path) == []
    live = tmp_path / f".extracted.leadcal-staging-{os.getppid()}"  # a live process's: not touched
    live.mkdir()
    staging.clean_leftovers(target)
    assert live.exists()


# --------------------------------------------------------------------------- locks


def _hold(paths: dict[str, str], stages: list[str]) -> subprocess.Popen:
    """Another process holding the locks of `stages` until it is killed."""
    code = ("import sys, types; from pipeline import staging\n"
            f"paths = types.SimpleNamespace(**{paths!r})\n"
            f"with staging.locked_outputs({stages!r}, paths):\n"
            "    print('held', flush=True); sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_on_the_same_outputs_is_refused_in_one_line_and_a_dead_runs_lock_is_taken_over(
        exports, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _use(exports[0], tmp_path)
    config = _config(tmp_path)
    assert main(["-q", "--params", str(config), "extract"]) == 0
    before = _snapshot(tmp_path / "extracted")
    _use(exports[1], tmp_path)
    paths = {name: str(tmp_path / name) for name in ("sample", "raw", "extracted", "features", "models")}
    holder = _hold(paths, ["extract"])
    try:
        capsys.readouterr()
        assert main(["-q", "--params", str(config), "extract"]) == staging.EXIT_BUSY
        line = _one_line(capsys.readouterr().err)
        assert f"{tmp_path / 'extracted'}/ is being written by another leadcal run (pid {holder.pid})" in line
        assert str(tmp_path / ".extracted.leadcal-lock") in line
        # a stage reading what is being written waits for it too
        assert main(["-q", "--params", str(config), "features"]) == staging.EXIT_BUSY
        assert f"pid {holder.pid}" in _one_line(capsys.readouterr().err)
        assert _snapshot(tmp_path / "extracted") == before  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel frees it
        holder.wait()
    assert main(["-q", "--params", str(config), "extract"]) == 0
    assert _snapshot(tmp_path / "extracted") != before
    # one run after the other (as `dvc repro` runs its stages): no conflict
    assert main(["-q", "--params", str(config), "extract"]) == 0


def test_models_has_one_writer_and_is_not_rewritten_while_a_stage_reads_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = _stub(monkeypatch, "close-rates", lambda params: calls.append("close-rates"))
    config = _config(tmp_path)
    paths = {name: str(tmp_path / name) for name in ("sample", "raw", "extracted", "features", "models")}
    holder = _hold(paths, ["weights"])  # writes models/, reads features/ and extracted/
    try:
        assert main(["-q", "--params", str(config), "close-rates"]) == staging.EXIT_BUSY
        line = _one_line(capsys.readouterr().err)
        assert f"{tmp_path / 'models'}/ is being written by another leadcal run (pid {holder.pid})" in line
        assert calls == []
        # features/ is read by that run: rewriting it now would change its inputs under it
        with pytest.raises(staging.OutputsBusy, match="features/ is being read by another leadcal run; wait"):
            with staging.locked_outputs(["features"], types.SimpleNamespace(**paths)):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert main(["-q", "--params", str(config), "close-rates"]) == 0
    assert calls == ["close-rates"]


# --------------------------------------------------------------------------- full disk, read-only, bugs


def _stub(monkeypatch: pytest.MonkeyPatch, name: str, body) -> list[str]:  # noqa: ANN001
    calls: list[str] = []
    monkeypatch.setitem(cli.STAGES, name, (body, cli.STAGES[name][1]))
    return calls


def test_a_full_disk_is_one_line_naming_the_file_and_the_previous_outputs_stay(
        exports, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet

    _use(exports[0], tmp_path)
    config = _config(tmp_path)
    assert main(["-q", "--params", str(config), "extract"]) == 0
    before = _snapshot(tmp_path / "extracted")
    _use(exports[1], tmp_path)

    def full(table, where, *args, **kwargs) -> None:
        Path(where).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pyarrow.parquet, "write_table", full)
    capsys.readouterr()
    assert main(["-q", "--params", str(config), "extract"]) == staging.EXIT_USER_ERROR
    line = _one_line(capsys.readouterr().err)
    assert re.search(r"leadcal extract: error: no space left on device while writing \S+leads\.parquet \(\d+ MiB free",
                     line), line
    assert _snapshot(tmp_path / "extracted") == before
    assert _dot_entries(tmp_path) == []


def test_a_read_only_models_folder_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    _stub(monkeypatch, "close-rates", lambda params: io.write_csv(params.paths.models / "close_rates.csv",
                                                                   pd.DataFrame({"signal": ["x"]})))
    if os.geteuid() == 0:  # root writes anywhere: the file system's answer, simulated
        import tempfile

        real = tempfile.mkstemp

        def read_only(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if Path(kwargs.get("dir", "")) == models:
                raise OSError(errno.EROFS, "Read-only file system", str(models))
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", read_only)
        expected = f"cannot write {models / 'close_rates.csv'}: the file system is read-only"
    else:
        models.chmod(0o555)
        expected = f"cannot write {models}"
    try:
        assert main(["-q", "--params", str(config), "close-rates"]) == staging.EXIT_USER_ERROR
    finally:
        models.chmod(0o755)
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("leadcal close-rates: error: ") and expected in line, line


def test_an_unexpected_error_is_one_line_and_a_log_file_with_the_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def buggy(params) -> None:  # noqa: ANN001
        raise RuntimeError("an index went wrong")

    _stub(monkeypatch, "close-rates", buggy)
    assert main(["-q", "--params", str(_config(tmp_path)), "close-rates"]) == staging.EXIT_INTERNAL_ERROR
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("leadcal close-rates: internal error (a bug in leadcal, not a problem with your data): "
                           "RuntimeError: an index went wrong at test_staging.py:"), line
    log = Path(re.search(r"Full traceback in (\S+\.log);", line).group(1))
    try:
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "in buggy" in text
        assert "RuntimeError: an index went wrong" in text and "close-rates" in text
    finally:
        log.unlink()

    def interrupted(params) -> None:  # noqa: ANN001
        raise KeyboardInterrupt

    _stub(monkeypatch, "close-rates", interrupted)
    assert main(["-q", "--params", str(_config(tmp_path)), "close-rates"]) == staging.EXIT_INTERRUPTED
    assert "interrupted" in _one_line(capsys.readouterr().err)


def test_an_unexpected_os_error_in_a_real_stage_is_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """An OSError leadcal cannot explain (an I/O error of the disk) still leaves as one line and a log."""
    import pyarrow.parquet

    def broken(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(pyarrow.parquet, "write_table", broken)
    params = params_in(tmp_path, generate={"n_leads": 200, "months": 2})
    write_sample(params)
    assert main(["-q", "--params", str(_config(tmp_path)), "extract"]) == staging.EXIT_INTERNAL_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "OSError: [Errno 5] Input/output error" in line
    Path(re.search(r"Full traceback in (\S+\.log);", line).group(1)).unlink()


# --------------------------------------------------------------------------- models/: per-stage manifests


def test_a_stage_stopped_part_way_in_models_is_not_read_downstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    config = _config(tmp_path)
    version = {"n": 1, "die_after": None}

    def close_rates(params) -> None:  # noqa: ANN001 - writes two files, like the real stage
        io.write_text(params.paths.models / "close_rates.csv", f"signal,version\nx,{version['n']}\n")
        if version["die_after"] == 1:
            raise RuntimeError("killed between two files")
        io.write_json(params.paths.models / "signals.json", {"version": version["n"]})

    weights_calls = _stub(monkeypatch, "weights", lambda params: weights_calls.append("weights"))
    _stub(monkeypatch, "close-rates", close_rates)

    assert main(["-q", "--params", str(config), "close-rates"]) == 0
    manifest = staging.read_record(models / staging.MANIFESTS / "close-rates.json")
    assert manifest["state"] == "done"
    assert manifest["files"] == {name: staging.sha256(models / name) for name in ("close_rates.csv", "signals.json")}
    first = (models / "close_rates.csv").read_bytes()

    version.update(n=2, die_after=1)  # new inputs; the run dies after its first file
    assert main(["-q", "--params", str(config), "close-rates"]) == staging.EXIT_INTERNAL_ERROR
    Path(re.search(r"Full traceback in (\S+\.log);", capsys.readouterr().err).group(1)).unlink()
    assert main(["-q", "--params", str(config), "weights"]) == staging.EXIT_USER_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "`leadcal close-rates` stopped part-way (killed, or it failed) after rewriting close_rates.csv" in line
    assert "run `leadcal close-rates` (or `dvc repro`) again first" in line
    assert weights_calls == []
    # `leadcal run` goes through the same check, with or without --keep-going
    assert staging.interrupted("close-rates", models) == ["close_rates.csv"]

    (models / "close_rates.csv").write_bytes(first)  # the old file back (as `dvc checkout` would): consistent again
    assert main(["-q", "--params", str(config), "weights"]) == 0
    assert weights_calls == ["weights"]

    assert main(["-q", "--params", str(config), "close-rates"]) == staging.EXIT_INTERNAL_ERROR  # dies again
    Path(re.search(r"Full traceback in (\S+\.log);", capsys.readouterr().err).group(1)).unlink()
    version.update(die_after=None)
    assert main(["-q", "--params", str(config), "close-rates"]) == 0  # a complete rerun
    assert staging.read_record(models / staging.MANIFESTS / "close-rates.json")["state"] == "done"
    assert main(["-q", "--params", str(config), "weights"]) == 0
    assert weights_calls == ["weights", "weights"]


def test_orphan_temp_files_in_models_are_removed_by_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    (models / "charts").mkdir(parents=True)
    orphans = [models / ".close_rates.csv.k2j4_x9a.tmp", models / "charts" / ".lift.png.abcdefgh.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half")
    keep = models / ".notes.tmp"  # not pipeline.io's pattern: someone else's
    keep.write_bytes(b"mine")
    _stub(monkeypatch, "close-rates", lambda params: None)
    assert main(["-q", "--params", str(_config(tmp_path)), "close-rates"]) == 0
    assert not any(orphan.exists() for orphan in orphans)
    assert keep.exists()


def test_score_does_not_read_a_model_being_rewritten_or_left_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`leadcal score` reads models/: not while a stage writes there, and not after `train` stopped part-way."""
    import pipeline.commands.score

    scored: list[Path] = []
    monkeypatch.setattr(pipeline.commands.score, "score", lambda *args: scored.append(args[5]))  # args[5]: the models folder
    config = _config(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    paths = {name: str(tmp_path / name) for name in ("sample", "raw", "extracted", "features", "models")}
    score = ["-q", "--params", str(config), "score", str(tmp_path / "new"), "--out", str(tmp_path / "s.csv")]
    holder = _hold(paths, ["train"])
    try:
        assert main(score) == staging.EXIT_BUSY
        assert f"{models}/ is being written by another leadcal run (pid {holder.pid})" in _one_line(capsys.readouterr().err)
    finally:
        holder.kill()
        holder.wait()
    assert main(score) == 0
    assert scored == [models]

    def train(params) -> None:  # noqa: ANN001 - dies after rewriting the model, before its description
        io.write_text(params.paths.models / "model.skops", "new")
        raise RuntimeError("killed between two files")

    io.write_text(models / "model.skops", "old")
    _stub(monkeypatch, "train", train)
    assert main(["-q", "--params", str(config), "train"]) == staging.EXIT_INTERNAL_ERROR
    Path(re.search(r"Full traceback in (\S+\.log);", capsys.readouterr().err).group(1)).unlink()
    assert main(score) == staging.EXIT_USER_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "`leadcal train` stopped part-way (killed, or it failed) after rewriting model.skops" in line
    assert "`leadcal score` will not read them" in line
    assert scored == [models]
