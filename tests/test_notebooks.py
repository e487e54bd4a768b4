"""The marketers' notebooks (pipeline.notebooks): they run on a real run and print its numbers,
render byte-identically twice, stop with one clear line when a cell fails, and say what drifted
between two publications.

The default run's folders are never written to: every test works on a copy of its models.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path

import pytest

from pipeline import io, publish
from pipeline.errors import LeadcalError
from pipeline.notebooks import NOTEBOOKS, notebook_paths, render, render_all, run
from pipeline.params import Params

STDERR_OUTPUT = 'data-mime-type="application/vnd.jupyter.stderr"'  # a warning or an error printed in a page


def copy_of(params: Params, root: Path, skip: tuple[str, ...] = ("report",)) -> Params:
    """`params` with its models folder copied under `root` (without `skip`)."""
    models = root / "models"
    shutil.copytree(params.paths.models, models, ignore=shutil.ignore_patterns(*skip))
    return params.model_copy(update={"paths": params.paths.model_copy(update={"models": models})})


def text(page: bytes) -> str:
    """What a reader sees: tags removed, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page.decode("utf-8"))))


@pytest.fixture(scope="module")
def report(default_run: Params, tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, dict[str, bytes]]:
    """Every notebook rendered once on a copy of the default run, as the stage does it."""
    params = copy_of(default_run, tmp_path_factory.mktemp("notebooks"))
    # from a folder with no models/ beside it: the pages can only read the injected path
    elsewhere, back = tmp_path_factory.mktemp("elsewhere"), os.getcwd()
    os.chdir(elsewhere)
    try:
        written = run(params)
    finally:
        os.chdir(back)
    return params, {stem: Path(path).read_bytes() for stem, path in written.items()}


def test_every_notebook_runs_and_prints_the_artifacts_numbers(report: tuple[Params, dict[str, bytes]]) -> None:
    params, pages = report
    models = params.paths.models
    assert sorted(pages) == ["01_close_rates", "02_points_vs_model", "03_thresholds_funnel", "04_drift"]
    assert sorted(p.name for p in (models / "report").iterdir()) == [f"{stem}.html" for stem in sorted(pages)]
    for stem, page in pages.items():
        assert STDERR_OUTPUT not in page.decode(), f"{stem}: a cell printed a warning or an error"
        # marketers read prose, tables and charts: no code reaches the page
        assert "MODELS = Path(" not in text(page) and "import pandas" not in text(page), f"{stem}: code shown"

    rates = io.read_json(models / "metrics" / "close_rates.json")
    page = text(pages["01_close_rates"])
    assert f"So the average close rate is {rates['average_close_rate']:.1%}." in page
    assert f"We looked at {rates['matured_leads']:,} leads" in page
    demo = io.read_csv(models / "close_rates.csv").set_index("signal").loc["demo_request"]
    assert f"{demo['ci_low']:.1%} to {demo['ci_high']:.1%}" in page

    train = io.read_json(models / "metrics" / "train.json")
    weights = io.read_json(models / "weights.json")
    page = text(pages["02_points_vs_model"])
    assert f"the points table reaches an AUC of {train['points_table']['mean']['auc']:.3f}" in page
    assert f"the predictive model {train['model']['mean']['auc']:.3f}" in page
    assert f"halve every {weights['half_life_days']:.1f} days" in page
    assert f"{weights['points_to_double_odds']:.0f} more points double a lead's odds of closing" in page

    thresholds = io.read_json(models / "thresholds.json")
    page = text(pages["03_thresholds_funnel"])
    assert f"Leads with {thresholds['threshold']} points or more become MQLs" in page
    assert f"close at {thresholds['validation']['mql_close_rate']:.1%} against an average of " \
           f"{thresholds['validation']['average_close_rate']:.1%}" in page
    assert f"{thresholds['policy'].replace('_', ' ')} (chosen)" in page

    page = text(pages["04_drift"])  # the default run is a first publication
    assert "This is the first publication: there is no earlier one, so there is nothing to compare yet." in page
    assert "From the next publication on" in page and "how the MQL threshold moved" in page  # what it will show
    assert "Nothing to compare." not in page  # every empty section says what it will hold
    assert f"The MQL threshold published is {thresholds['threshold']} points." in page


def test_rendering_twice_gives_identical_html(report: tuple[Params, dict[str, bytes]]) -> None:
    params, pages = report
    again = render_all(notebook_paths(NOTEBOOKS), params.paths.models)
    assert {path.stem: page for path, page in again.items()} == pages


def test_a_failing_cell_stops_with_one_line_naming_notebook_and_cell(default_run: Params, tmp_path: Path) -> None:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "broken.py").write_text(
        '# %% tags=["parameters"]\nfrom pathlib import Path\n\nMODELS = Path("models")\n\n'
        "# %% [markdown]\n# A page whose third cell fails.\n\n"
        '# %%\ntotal = {"threshold": 1}["points"]\n'
    )
    params = default_run.model_copy(update={"paths": default_run.paths.model_copy(update={"models": tmp_path / "models"})})
    with pytest.raises(LeadcalError) as caught:
        run(params, folder)
    message = str(caught.value)
    assert message.startswith("notebook broken.py, cell 3 (") and message.endswith("KeyError: 'points'")
    assert "\n" not in message and "Traceback" not in message
    assert not (tmp_path / "models" / "report").exists()  # nothing half-written

    (folder / "broken.py").write_text("# %%\nprint('no parameters cell')\n")
    with pytest.raises(LeadcalError, match="notebook broken.py: no cell tagged 'parameters'"):
        run(params, folder)


def test_drift_names_the_moved_signal_and_the_threshold_move(default_run: Params, tmp_path: Path) -> None:
    params = copy_of(default_run, tmp_path, skip=("report", "published"))
    models = params.paths.models
    assert publish.run(params)["drift"]["note"] == "first publication"
    # a new run whose threshold jumps and whose first signal loses 40 points (as in test_publish)
    thresholds = io.read_json(models / "thresholds.json")
    io.write_json(models / "thresholds.json", {**thresholds, "threshold": thresholds["threshold"] + 30})
    weights = io.read_json(models / "weights.json")
    signal, points = weights["signals"][0]["signal"], weights["signals"][0]["points"]
    weights["signals"][0]["points"] -= 40
    io.write_json(models / "weights.json", weights)
    record = publish.run(params)
    assert record["status"] == "published"

    page = text(render(NOTEBOOKS / "04_drift.py", models))
    before, after = thresholds["threshold"], thresholds["threshold"] + 30
    assert "The last run was published." in page
    assert f"The MQL threshold moved from {before} to {after} points (+30)." in page
    assert f"The biggest move: {signal}, from {points} to {points - 40} points (-40)." in page
    assert "1 of " in page and "signals changed points" in page
    for flag in record["drift"]["flags"]:
        assert flag in page
