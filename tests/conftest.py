"""Shared fixtures: a whole pipeline run on the default sample, and a params factory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from threadpoolctl import threadpool_limits

from pipeline.cli import STAGES
from pipeline.params import Params, Paths, load_params

REPO = Path(__file__).resolve().parents[1]


def params_in(root: Path, base: Params | None = None, **sections: dict) -> Params:
    """`base` (default: the repo's params.yaml) with every path under `root` and some sections replaced."""
    base = base or load_params(REPO / "params.yaml")
    paths = Paths(sample=root / "raw", raw=root / "raw", extracted=root / "extracted", features=root / "features", models=root / "models")
    data = base.model_dump()
    data["paths"] = paths.model_dump()
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values} if isinstance(values, dict) else values
    return Params.model_validate(data)


def run_stages(params: Params, names: list[str] | None = None) -> None:
    """Run stages in process exactly as `leadcal <stage>` does, thread limit included
    (fits with another thread count round differently in the last bits)."""
    with threadpool_limits(params.threads):
        for name in names or list(STAGES):
            STAGES[name][0](params)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Params:
    """The default `dvc repro` (params.yaml, 20,000 leads) run once, in process, in a temp folder.

    Under pytest-xdist the run is built once for all workers (about 100 s of the suite's CPU):
    the first worker to ask builds it in the session's shared temp folder under a file lock, the
    others wait for it and read the same files. Tests treat it as read-only and copy what they
    change."""
    if worker_id == "master":
        params = params_in(tmp_path_factory.mktemp("default_run"))
        run_stages(params)
        return params
    shared = tmp_path_factory.getbasetemp().parent / "default_run"
    params = params_in(shared)
    with FileLock(str(shared) + ".lock"):
        done = shared / ".complete"
        if not done.exists():  # a build that failed part-way is started again from nothing
            shutil.rmtree(shared, ignore_errors=True)
            run_stages(params)
            done.touch()
    return params


def parquet_export(root: Path, seed: int) -> Path:
    """A generated export of 1,500 leads over six months (about 9,000 events), its event log as
    Parquet (streamed by DuckDB, as a large export would be): for the staging and kill tests."""
    import pandas as pd

    from pipeline.data.generate import write_sample

    params = params_in(root, generate={"n_leads": 1500, "months": 6}, seed=seed)
    write_sample(params)
    events = pd.read_csv(params.paths.raw / "activities.csv", dtype=str, keep_default_na=False)
    events.to_parquet(params.paths.raw / "activities.parquet", index=False)
    (params.paths.raw / "activities.csv").unlink()
    return params.paths.raw


# The longest modules first: `make test` runs modules on two workers (pytest-xdist, --dist
# loadscope) in collection order, so a long module collected last would run alone at the end.
SLOW_FIRST = ("test_dvc_pipeline.py", "test_faults.py", "test_engines.py", "test_sources.py", "test_snapshot_example.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: order inside a module kept
