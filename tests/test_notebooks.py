"""The marketers' notebooks (pipeline.report.notebooks): they run on a real run and print its numbers,
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

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.report import summary
from pipeline.report.notebooks import NOTEBOOKS, HoverChart, html_title, notebook_paths, render, render_all
from pipeline.report.page import CSS, network_references, scripts, sortable_table, vega_chart
from pipeline.stages import publish
from pipeline.stages.notebooks import run

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
    assert sorted(pages) == ["01_close_rates", "02_points_vs_model", "03_thresholds_funnel", "04_drift", "summary"]
    assert sorted(p.name for p in (models / "report").iterdir()) == \
        [f"{stem}.html" for stem in sorted(pages) if stem != "summary"] + ["index.html"]
    for stem, page in pages.items():
        # opens offline: no script, style or font from a CDN (nbconvert's template loads three)
        assert network_references(page.decode()) == [], stem
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
    cells = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", pages["02_points_vs_model"].decode())))
    top = max((s for s in weights["signals"] if s["status"] == "scored"), key=lambda s: s["points"])
    assert f"{top['signal']} {top['points']} {top['points_p025']:+.1f} to {top['points_p975']:+.1f}" in cells
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
    hubspot = thresholds["crm"]["hubspot"]  # each CRM's own rule, against leadcal's threshold pasted as is
    assert f"Pasted unchanged into HubSpot, leadcal's threshold of {thresholds['threshold']} points would make " \
           f"{hubspot['at_leadcal_threshold']['validation']['mql_share']:.1%} of the later leads MQLs" in page
    assert f"{hubspot['threshold']} points or more" in page
    matrix = thresholds["matrix"]  # :g, so a boundary of 12.5 does not read "12"
    assert f"a fit score of {matrix['fit_boundary']:g} points or more" in page
    assert f"engagement score of {matrix['engagement_boundary']:g} points or more" in page

    page = text(pages["04_drift"])  # the default run is a first publication
    assert "This is the first publication: there is no earlier one, so there is nothing to compare yet." in page
    assert "From the next publication on" in page and "how the MQL threshold moved" in page  # what it will show
    assert "Nothing to compare." not in page  # every empty section says what it will hold
    assert f"The MQL threshold published is {thresholds['threshold']} points." in page


def test_rendering_twice_gives_identical_html(report: tuple[Params, dict[str, bytes]]) -> None:
    params, pages = report
    again = render_all(notebook_paths(NOTEBOOKS), params.paths.models)
    assert {path.stem: page for path, page in again.items()} == {k: v for k, v in pages.items() if k != "summary"}
    links = [(f"{path.stem}.html", html_title(page, path.stem)) for path, page in again.items()]
    assert summary.summary_page(summary.read(params.paths.models, links)).encode() == pages["summary"]


def test_summary_page_states_the_runs_threshold_points_and_matrix(report: tuple[Params, dict[str, bytes]]) -> None:
    params, pages = report
    models = params.paths.models
    page = text(pages["summary"])
    thresholds = io.read_json(models / "thresholds.json")
    chosen = thresholds["policies"][thresholds["policy"]]
    training, later = thresholds["training"], thresholds["validation"]
    assert f"A lead becomes an MQL at {thresholds['threshold']} points: about {chosen['mql_per_week']:,.0f} MQLs a week" in page
    assert f"{training['mql_share']:.1%} of leads" in page and f"closing at {later['mql_close_rate']:.1%}" in page
    weights = io.read_json(models / "weights.json")
    scored = [s for s in weights["signals"] if s["status"] == "scored"]
    assert f"{len(scored)} signals carry points" in page
    top = max(scored, key=lambda s: s["points"])
    cells = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", pages["summary"].decode())))  # a space per cell
    assert f"{top['signal']} {top['kind']} {top['points']} {top['points_p025']:+.1f} to {top['points_p975']:+.1f}" in cells
    for action in ("hand to sales within 24 h", "nurture"):
        assert action in page
    assert "This is the first publication" in page  # the default run's
    hubspot = thresholds["crm"]["hubspot"]
    assert f"HubSpot {hubspot['threshold']} points or more {hubspot['validation']['mql_share']:.1%}" in cells
    # each notebook is linked by its own title
    for stem in ("01_close_rates", "02_points_vs_model", "03_thresholds_funnel", "04_drift"):
        title = re.search(r"<title>(.*?)</title>", pages[stem].decode()).group(1)
        assert f"<a href='{stem}.html'>{title}</a>" in pages["summary"].decode()


def test_hover_chart_offers_jupyterlab_the_vega_lite_version_altair_writes() -> None:
    """Altair 6 writes Vega-Lite 6 specs; a v5 MIME type would hand them to a v5 renderer."""
    import altair

    bundle = HoverChart({"mark": "bar"}, "a chart")._repr_mimebundle_()
    major = altair.SCHEMA_VERSION.lstrip("v").split(".")[0]
    assert f"application/vnd.vegalite.v{major}+json" in bundle
    assert set(bundle) == {"text/html", "application/vnd.vegalite.v6+json", "text/plain"}


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


# --- in a real browser -------------------------------------------------------------------------
# Debian's Chromium, driven by Playwright (its own browser builds cannot be downloaded here).
# .ci/run installs the browser and sets LEADCAL_REQUIRE_BROWSER, so CI fails rather than skips.

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("LEADCAL_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
PAGES = ("summary", "01_close_rates", "02_points_vs_model", "03_thresholds_funnel", "04_drift")
ALL_DRAWN = "Array.from(document.querySelectorAll('.leadcal-vega')).every((e) => e.dataset.rendered)"


@pytest.fixture(scope="module")
def chromium():  # -> playwright Browser
    if CHROMIUM is None:
        message = "Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it"
        if os.environ.get("LEADCAL_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def open_offline(chromium, path: Path):  # -> (page, requests, errors)
    """`path` opened with the network off: any request other than the file itself is recorded and aborted."""
    context = chromium.new_context(offline=True, viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    context.route(lambda url: not url.startswith(("file:", "data:", "blob:")), lambda route: route.abort())
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_function(ALL_DRAWN, timeout=60_000)
    return page, requests, errors


def column(table, name: str) -> list[str]:  # the cells of one column, top to bottom
    position = [h.strip() for h in table.locator("thead th").all_inner_texts()].index(name)
    return [row.locator("td").nth(position).get_attribute("data-sort") or row.locator("td").nth(position).inner_text()
            for row in table.locator("tbody tr").all()]


@pytest.mark.parametrize("stem", PAGES)
def test_each_page_renders_offline_in_chromium(report: tuple[Params, dict[str, bytes]], chromium, stem: str) -> None:
    """Every chart draws, every table sorts, nothing is fetched, no script fails; a screenshot is kept."""
    params, _ = report
    path = params.paths.models / "report" / ("index.html" if stem == "summary" else f"{stem}.html")
    page, requests, errors = open_offline(chromium, path)
    charts = page.eval_on_selector_all(
        ".leadcal-vega", "els => els.map((e) => [e.dataset.rendered, e.querySelectorAll('svg .mark-rect path, "
        "svg .mark-line path, svg .mark-rule line, svg .mark-text text').length])")
    assert all(state == "yes" and marks > 3 for state, marks in charts), charts
    assert len(charts) == {"summary": 3, "01_close_rates": 1, "02_points_vs_model": 1, "03_thresholds_funnel": 2}.get(stem, 0)
    tables = page.locator("table.sortable")
    assert tables.count() > 0
    for index in range(tables.count()):
        header = tables.nth(index).locator("thead th").first
        header.click()
        assert header.get_attribute("aria-sort") == "ascending"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True)
    assert (ARTIFACTS / f"{stem}.png").stat().st_size > 10_000
    assert [url for url in requests if not url.startswith("file:")] == [] and requests == [path.as_uri()]
    assert errors == []
    page.context.close()


def test_summary_page_sorts_the_points_table_and_shows_details_on_hover(
        report: tuple[Params, dict[str, bytes]], chromium) -> None:
    params, _ = report
    page, _, errors = open_offline(chromium, params.paths.models / "report" / "index.html")
    table = page.locator("table.sortable", has=page.locator("th", has_text="95 % range of refits"))
    points = table.locator("thead th", has_text=re.compile(r"^points$"))
    assert [float(v) for v in column(table, "points")] == sorted(map(float, column(table, "points")), reverse=True)
    points.click()
    ascending = [float(v) for v in column(table, "points")]
    assert ascending == sorted(ascending) and ascending[0] < ascending[-1]
    points.click()
    assert [float(v) for v in column(table, "points")] == sorted(ascending, reverse=True)
    table.locator("thead th", has_text="95 % range of refits").click()  # text shown, sorted by the lower end
    lower = [float(v) for v in column(table, "95 % range of refits")]
    assert lower == sorted(lower)
    signal = table.locator("thead th", has_text="signal")
    signal.click()
    names = column(table, "signal")
    assert names == sorted(names, key=str.lower)

    weights = io.read_json(params.paths.models / "weights.json")
    best = max((s for s in weights["signals"] if s["status"] == "scored"), key=lambda s: s["points"])
    chart = page.locator(".leadcal-vega").nth(1)  # the points chart: its first bar is the biggest engagement points
    chart.locator(".mark-rect path").first.hover()
    tooltip = page.locator("#vg-tooltip-element.visible")
    tooltip.wait_for(timeout=5_000)
    shown = re.sub(r"\s+", " ", tooltip.inner_text())
    if best["kind"] == "engagement":
        assert f"signal {best['signal']} points {best['points']}" in shown
    assert "95 % range" in shown and "close rate, 95 % Wilson" in shown and "leads" in shown
    assert errors == []
    page.context.close()


def offline_page(tmp_path: Path, body: str) -> Path:
    """`body` as a page with the report's CSS and scripts, written to a file to open in Chromium."""
    path = tmp_path / "page.html"
    path.write_text(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><style>{CSS}</style></head>"
                    f"<body>{body}\n{scripts(body)}</body></html>")
    return path


def test_sorter_sorts_text_as_text_and_arrows_are_not_part_of_the_header_names(chromium, tmp_path: Path) -> None:
    """Only data-sort is read as a number ("0x1A" is text, not 26); non-finite floats have no data-sort;
    the arrow after each header is decoration (CSS alternative text ""), not the header's name."""
    frame = pd.DataFrame({"n": [-3.0, 10.0, np.nan, -20.0, np.inf], "t": ["10", "9", "b", "A", "0x1A"]})
    page, _, errors = open_offline(chromium, offline_page(tmp_path, sortable_table(frame)))

    def shown(column: int) -> list[str]:
        return page.eval_on_selector_all("tbody tr", f"rows => rows.map((r) => r.cells[{column}].textContent)")

    page.locator("th").nth(1).click()
    assert shown(1) == ["0x1A", "10", "9", "A", "b"]  # as text, whatever Number() would make of it
    page.locator("th").nth(0).click()
    assert shown(0) == ["-20.00", "-3.00", "10.00", "inf", ""]  # numbers, then text, then empty cells
    page.locator("th").nth(0).click()
    assert shown(0) == ["10.00", "-3.00", "-20.00", "inf", ""]
    assert page.get_by_role("columnheader", name="n", exact=True).count() == 1
    assert page.get_by_role("columnheader", name="t", exact=True).count() == 1
    assert errors == []
    page.context.close()


def test_a_chart_whose_data_holds_markup_draws_and_leaves_the_page_whole(chromium, tmp_path: Path) -> None:
    """'<!--<script>' in a CRM value inside the chart's JSON made the browser read past the script's end."""
    spec = {"data": {"values": [{"industry": "<!--<script>", "n": 1}, {"industry": "a & b </script>", "n": 2}]},
            "mark": "bar", "encoding": {"x": {"field": "industry", "type": "nominal"},
                                        "y": {"field": "n", "type": "quantitative"}}}
    body = vega_chart(spec, "a chart") + sortable_table(pd.DataFrame({"after the chart": [2, 1]}))
    page, requests, errors = open_offline(chromium, offline_page(tmp_path, body))
    assert page.eval_on_selector_all(".leadcal-vega", "els => els.map((e) => e.dataset.rendered)") == ["yes"]
    assert "<!--<script>" in page.locator(".leadcal-vega svg").inner_html().replace("&lt;", "<").replace("&gt;", ">")
    page.locator("th").first.click()  # the sorter after the chart still runs
    assert page.locator("th").first.get_attribute("aria-sort") == "ascending"
    assert errors == [] and all(url.startswith("file:") for url in requests)
    page.context.close()
