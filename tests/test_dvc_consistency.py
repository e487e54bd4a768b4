"""dvc.yaml agrees with the code (issue 18): `dvc repro` must not skip a stage whose inputs changed.

DVC re-runs a stage only when one of its listed deps or params changed. Each stage declares its
params, data deps and outs once, in pipeline/stages/registry.py; dvc.yaml must list exactly
those, and they are checked here against what each stage really uses:
- **code**: every module of `pipeline/` in the stage's import closure (imports inside functions
  included) is a dep: a change to any of them can change the stage's outputs. The CLI itself
  (argument parsing, dispatch) is left out; the parts of it that shape a stage's params
  (`for_stage` -> pipeline.design) are followed.
- **params**: every setting a stage reads while it runs (recorded on a small sample) is listed,
  as the key or as its whole section.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline import cli
from pipeline import params as params_module
from pipeline.params import Params
from pipeline.stages import registry
from tests.conftest import REPO, params_in

PACKAGE = REPO / "pipeline"
NOT_STAGE_CODE = {"pipeline/cli.py", "pipeline/__init__.py"}  # dispatch only: it changes no output


def _dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stages keyed by their `leadcal` sub-command."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {spec["cmd"].split()[1]: spec for spec in stages.values()}


def _module_file(name: str) -> Path | None:
    """pipeline.x (or pipeline.x.y) -> its file, if it is a module of the package."""
    parts = name.split(".")
    if parts[0] != "pipeline":
        return None
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[Path]:
    """The package modules a file imports, at the top or inside functions."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(f for f in map(_module_file, names) if f is not None)
    return found


def import_closure(start: set[Path]) -> set[str]:
    """Every package module reachable from `start`, as repository-relative paths."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(imported_modules(path) - seen)
    return {p.relative_to(REPO).as_posix() for p in seen if not _docstring_only(p)} - NOT_STAGE_CODE


def _docstring_only(path: Path) -> bool:
    """A layer package's `__init__.py` that holds only its docstring: it changes no output, so
    it is not a dep (one with code in it is)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return path.name == "__init__.py" and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def stage_entry(stage: str) -> set[Path]:
    """The modules `leadcal <stage>` calls: the module of its declared entry, and pipeline.design
    (cli.for_stage adjusts every stage's params after extract)."""
    modules = {_module_file(registry.BY_NAME[stage].entry.split(":")[0])}
    if stage not in ("generate", "extract"):
        modules.add(PACKAGE / "design.py")
    return modules


def missing_code_deps(stage: str, spec: dict) -> list[str]:
    deps = {d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])}
    return sorted(import_closure(stage_entry(stage)) - deps)


@pytest.mark.parametrize("stage", list(cli.STAGES))
def test_every_module_a_stage_imports_is_one_of_its_dvc_deps(stage: str) -> None:
    spec = _dvc_stages()[stage]
    missing = missing_code_deps(stage, spec)
    assert not missing, f"dvc.yaml stage {stage!r} imports {missing} but does not list them as deps"


@pytest.mark.parametrize("stage", list(cli.STAGES))
def test_every_code_dep_of_a_stage_is_imported_by_it(stage: str) -> None:
    """The other way round: a module listed as a dep that the stage never imports (one moved or
    no longer used) makes `dvc repro` re-run the stage for nothing and hides what it really uses."""
    deps = {d if isinstance(d, str) else next(iter(d)) for d in _dvc_stages()[stage].get("deps", [])}
    extra = sorted(d for d in deps if d.startswith("pipeline/") and d not in import_closure(stage_entry(stage)))
    assert not extra, f"dvc.yaml stage {stage!r} lists {extra} as deps but never imports them"


def test_the_import_walk_follows_imports_inside_functions(tmp_path: Path) -> None:
    """The closure must see a lazy import (`from pipeline import x` inside a function) too."""
    closure = import_closure({PACKAGE / "stages" / "thresholds.py"})
    assert "pipeline/core/scorecard.py" in closure  # thresholds scores with the points table
    assert "pipeline/params.py" in closure and "pipeline/stages/thresholds.py" in closure
    assert not NOT_STAGE_CODE & closure


# --------------------------------------------------------------------------- params read while running


def _sections() -> dict[type, str]:
    """Each settings class -> its top-level section of params.yaml ('' for Params itself)."""
    owner: dict[type, str] = {Params: ""}

    def walk(model: type, section: str) -> None:
        for field in model.model_fields.values():
            for kind in _model_types(field.annotation):
                if kind not in owner:
                    owner[kind] = section
                    walk(kind, section)

    for name, field in Params.model_fields.items():
        for kind in _model_types(field.annotation):
            owner[kind] = name
            walk(kind, name)
    return owner


def _model_types(annotation: object) -> list[type]:
    import typing

    args = typing.get_args(annotation)
    candidates = [annotation, *args, *(a for arg in args for a in typing.get_args(arg))]
    return [c for c in candidates if isinstance(c, type) and issubclass(c, params_module._Strict)]


@contextlib.contextmanager
def recording_reads() -> Iterator[set[str]]:
    """Record every setting read: 'section.key' on a section's own class, the section for deeper
    classes (source.leads.path -> 'source'), the name for top-level values (seed, engine)."""
    sections = _sections()
    reads: set[str] = set()
    original = params_module._Strict.__getattribute__

    def getattribute(self: object, name: str) -> object:
        value = original(self, name)
        kind = type(self)
        # leaves only (params.train is the way to a setting, not one); paths are deps and outs
        if name in kind.model_fields and kind in sections and not isinstance(value, params_module._Strict):
            section = sections[kind]
            if kind is Params:
                if name != "paths":
                    reads.add(name)
            elif section == "paths":
                pass
            elif kind in _model_types(Params.model_fields[section].annotation):
                reads.add(f"{section}.{name}")
            else:
                reads.add(section)
        return value

    params_module._Strict.__getattribute__ = getattribute  # type: ignore[method-assign]
    try:
        yield reads
    finally:
        params_module._Strict.__getattribute__ = original  # type: ignore[method-assign]


def _covered(read: str, listed: set[str]) -> bool:
    parts = read.split(".")
    return any(".".join(parts[:i]) in listed for i in range(1, len(parts) + 1))


IN_PROCESS = [s for s in cli.STAGES if s != "notebooks"]  # notebooks run in their own kernels


@pytest.fixture(scope="module")
def reads_per_stage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Every in-process stage run once on a small sample, recording the settings it reads."""
    params = params_in(tmp_path_factory.mktemp("reads"), generate={"n_leads": 3000},
                       train={"min_customers": 30}, weights={"bootstrap_samples": 3})
    found = {}
    for stage in IN_PROCESS:
        with recording_reads() as reads:
            cli.STAGES[stage][0](cli.for_stage(stage, params))
        found[stage] = reads
    return found


def test_recording_sees_keys_sections_and_top_level_values() -> None:
    params = Params()
    with recording_reads() as reads:
        _ = params.train.max_fit_leads, params.seed, params.source.wide.activities, params.paths.models
    assert reads == {"train.max_fit_leads", "seed", "source"}
    assert _covered("train.max_fit_leads", {"train"}) and not _covered("train.max_fit_leads", {"train.folds"})


@pytest.mark.parametrize("stage", IN_PROCESS)
def test_every_setting_a_stage_reads_is_one_it_declares(stage: str, reads_per_stage: dict[str, set[str]]) -> None:
    listed = set(registry.BY_NAME[stage].params)
    missing = sorted(r for r in reads_per_stage[stage] if not _covered(r, listed))
    assert not missing, f"stage {stage!r} reads {missing} but pipeline/stages/registry.py does not declare them"


# --------------------------------------------------------------------------- dvc.yaml against the declarations


def _entries(items: list | None) -> list[str]:
    return [next(iter(item)) if isinstance(item, dict) else item for item in items or []]


def test_dvc_yaml_has_the_declared_stages_in_order() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == [stage.dvc_name for stage in registry.STAGES]
    assert [spec["cmd"] for spec in stages.values()] == [f"leadcal {stage.name}" for stage in registry.STAGES]


@pytest.mark.parametrize("stage", list(cli.STAGES))
def test_dvc_yaml_lists_the_declared_params_reads_and_writes(stage: str) -> None:
    """dvc.yaml's params, data deps and outs (with metrics) are exactly the declared ones: DVC
    re-runs a stage on what its entry lists, so one missing is a stale output and one too many
    a needless re-run."""
    declared, spec = registry.BY_NAME[stage], _dvc_stages()[stage]
    assert sorted(spec.get("params", [])) == sorted(declared.params), "params"
    assert sorted(d for d in _entries(spec.get("deps")) if not d.startswith("pipeline/")) == sorted(declared.reads), "deps"
    assert sorted(_entries(spec.get("outs")) + _entries(spec.get("metrics"))) == sorted(declared.writes), "outs"
    persisted = sorted(next(iter(item)) for item in spec.get("outs", []) if isinstance(item, dict)
                       and next(iter(item.values())).get("persist"))
    assert persisted == sorted(declared.persist), "persist"
