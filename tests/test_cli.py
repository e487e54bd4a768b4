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


# --- issue 16: paths relative to the params file, `leadcal run --keep-going` ---


def _dvc_upstream() -> dict[str, set[str]]:
    """Each dvc.yaml stage (by its `leadcal` command) and the stages whose outs, plots or metrics its
    deps are, or lie in; paths resolved with the repository's params.yaml (so paths.raw is paths.sample)."""
    import re

    import yaml

    from .conftest import REPO

    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    values = yaml.safe_load((REPO / "params.yaml").read_text())

    def resolve(path: str) -> str:
        return re.sub(r"\$\{paths\.(\w+)\}", lambda m: str(values["paths"][m.group(1)]), path).rstrip("/")

    def entries(items: list) -> list[str]:
        return [resolve(next(iter(item)) if isinstance(item, dict) else item) for item in items or []]

    command = {name: stage["cmd"].split()[1] for name, stage in dvc["stages"].items()}
    outs = {name: entries(stage.get("outs")) + entries(stage.get("plots")) + entries(stage.get("metrics"))
            for name, stage in dvc["stages"].items()}
    upstream = {}
    for name, stage in dvc["stages"].items():
        deps = entries(stage.get("deps"))
        upstream[command[name]] = {
            command[other] for other, produced in outs.items() if other != name
            for dep in deps for out in produced if dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")}
    return upstream


def test_the_stage_dependencies_of_run_keep_going_match_dvc_yaml() -> None:
    from pipeline.params import load_params
    from pipeline.stages.registry import upstream

    from .conftest import REPO

    paths = load_params(REPO / "params.yaml").paths
    needed = {name: upstream(name, paths) for name in STAGES}
    assert {name: set(needs) for name, needs in needed.items()} == _dvc_upstream()
    assert needed["extract"] == ("generate",)  # the sample is the raw export by default
    order = list(STAGES)  # every stage comes after what it needs
    assert all(order.index(up) < order.index(name) for name, needs in needed.items() for up in needs)


def test_a_real_export_needs_no_generated_sample() -> None:
    """Pointed at a real export (paths.raw not the sample folder), extract needs nothing: a failed
    generate would not stop it."""
    from pipeline.params import Paths
    from pipeline.stages.registry import upstream

    assert upstream("extract", Paths(raw="exports/crm")) == ()
    assert upstream("features", Paths(raw="exports/crm")) == ("extract",)


def _fake_stages(monkeypatch: pytest.MonkeyPatch, failing: set[str]) -> list[str]:
    """Every stage replaced by a stub that records its call; those in `failing` raise a LeadcalError."""
    from pipeline import cli
    from pipeline.errors import LeadcalError

    calls: list[str] = []

    def stub(name: str):
        def stage(params) -> None:
            calls.append(name)
            if name in failing:
                raise LeadcalError(f"{name} cannot run on this export\nsecond line of detail")
        return stage

    for name, (_, help_text) in list(cli.STAGES.items()):
        monkeypatch.setitem(cli.STAGES, name, (stub(name), help_text))
    return calls


def _needing(failed: set[str], upstream: dict[str, set[str]]) -> set[str]:
    """By hand: every stage that needs a failed one, directly or through another stage."""
    out: set[str] = set()
    for name in STAGES:  # in pipeline order, so what a stage needs is settled before it
        if upstream[name] & (failed | out):
            out.add(name)
    return out


@pytest.mark.parametrize("failing", [{"train"}, {"close-rates"}, {"funnel", "weights"}])
def test_run_keep_going_runs_what_does_not_need_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str], failing: set[str]) -> None:
    calls = _fake_stages(monkeypatch, failing)
    config = tmp_path / "params.yaml"
    config.write_text("paths: {raw: export, sample: sample}\n")  # a real export: generate does not run
    assert main(["-q", "--config", str(config), "run", "--keep-going"]) == 2
    err = capsys.readouterr().err
    skipped = _needing(failing, _dvc_upstream())
    expected = [name for name in STAGES if name != "generate" and name not in skipped]
    assert calls == expected
    lines = err.splitlines()
    for name in failing:  # one line each, the whole message on it
        assert lines.count(f"leadcal run: error: {name}: {name} cannot run on this export second line of detail") == 1
    failed_line = next(line for line in lines if line.startswith("leadcal run: failed:"))
    assert failed_line == f"leadcal run: failed: {', '.join(n for n in STAGES if n in failing)}"
    skipped_line = next(line for line in lines if line.startswith("leadcal run: skipped"))
    for name in skipped:
        assert f" {name} (needs " in skipped_line
    assert not any(f" {name} (needs " in skipped_line for name in expected)
    assert "Traceback" not in err


def test_run_without_keep_going_still_stops_at_the_first_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    calls = _fake_stages(monkeypatch, {"train"})
    config = tmp_path / "params.yaml"
    config.write_text("paths: {raw: export, sample: sample}\n")
    assert main(["-q", "--config", str(config), "run"]) == 2
    assert calls == ["extract", "features", "close-rates", "weights", "train"]
    assert "leadcal run: error: train cannot run" in capsys.readouterr().err
    calls.clear()
    _fake_stages(monkeypatch, set())
    assert main(["-q", "--config", str(config), "run", "--keep-going"]) == 0


def test_relative_paths_are_relative_to_the_params_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.params import load_params

    folder = tmp_path / "project" / "conf"
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(  # models outside the project: allowed on purpose
        f"allow_outside_project: true\npaths:\n  raw: ../export\n  extracted: out/extracted\n  models: {tmp_path / 'absolute'}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    paths = load_params("../project/conf/params.yaml").paths
    assert (Path.cwd() / paths.raw).resolve() == (tmp_path / "project" / "export").resolve()
    assert (Path.cwd() / paths.extracted).resolve() == (folder / "out" / "extracted").resolve()
    assert paths.models == tmp_path / "absolute"  # absolute: as written
    assert (Path.cwd() / paths.features).resolve() == (folder / "data" / "features").resolve()  # a default too
    assert not paths.extracted.is_absolute()  # a relative config gives relative paths (same bytes on any machine)
    # from the params file's own folder (the repository's params.yaml, where DVC runs): as written
    monkeypatch.chdir(folder)
    paths = load_params("params.yaml").paths
    assert (paths.raw, paths.extracted, paths.features) == (Path("../export"), Path("out/extracted"), Path("data/features"))


def test_the_repository_params_keep_their_paths_where_dvc_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from pipeline.params import load_params

    from .conftest import REPO

    monkeypatch.chdir(REPO)
    written = yaml.safe_load((REPO / "params.yaml").read_text())["paths"]
    assert {k: str(v) for k, v in load_params("params.yaml").paths.model_dump().items()} == written
    assert load_params(REPO / "params.yaml").paths.models == REPO / written["models"]


def test_a_stage_run_with_config_from_another_folder_writes_beside_the_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "example"
    folder.mkdir()
    (folder / "params.yaml").write_text("generate: {n_leads: 200, months: 2}\npaths: {sample: sample}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["-q", "--config", "../example/params.yaml", "generate"]) == 0
    assert (folder / "sample" / "leads.csv").exists()
    assert not any(elsewhere.iterdir())


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`leadcal --version`: the package version from pyproject.toml, for bug reports (exit 0)."""
    import tomllib

    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    expected = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["version"]
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"leadcal {expected}"


def test_arrow_buffers_come_from_jemalloc_unless_the_environment_names_a_pool(monkeypatch):
    import pyarrow as pa

    from pipeline.cli import use_jemalloc_for_arrow

    before = pa.default_memory_pool()
    try:
        pa.set_memory_pool(pa.system_memory_pool())
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
        use_jemalloc_for_arrow()
        assert pa.default_memory_pool().backend_name == "system"  # the user's choice stands
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        use_jemalloc_for_arrow()
        assert pa.default_memory_pool().backend_name == "jemalloc"
    finally:
        pa.set_memory_pool(before)


@pytest.mark.parametrize(("shell", "expected"), [(None, False), ("1", True)])
def test_the_cli_keeps_numpy_off_transparent_huge_pages_unless_the_shell_asks(shell: str | None,
                                                                              expected: bool) -> None:
    """On a kernel that compacts memory for huge pages on the fault, NumPy's request for them took
    half of a stage's time in the kernel. The CLI turns it off before NumPy loads; a value the
    user set in the shell wins. (NumPy honours the request only on Linux.)"""
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("NumPy asks for huge pages on Linux only")
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if shell is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = shell
    probe = "import pipeline.cli, numpy; print(numpy._core.multiarray._get_madvise_hugepage())"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == str(expected)
