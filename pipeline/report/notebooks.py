"""The marketers' report: the notebooks in notebooks/, executed on a run and rendered to HTML.

Marketers never run Python; they read the HTML pages this stage writes to
models/report/<notebook>.html. The notebooks hold no numbers of their own: every figure
in their text, tables and charts is read from the artifacts in the models folder, so the
pages cannot disagree with what the pipeline published, and they are rewritten on every run.

Two promises, as for every other artifact:

- the same inputs give byte-identical HTML (timings, kernel versions and PNG timestamps are
  stripped), so `dvc repro` with nothing changed changes nothing;
- a notebook that fails stops the stage with one line naming the notebook, the cell and the
  exception (a LeadcalError, which the CLI prints without a traceback).

The small helpers above `render` (percentages, tables, charts, the comparison of two
publications) are what the notebooks import, so every page formats numbers the same way.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pipeline import io
from pipeline.errors import LeadcalError
from pipeline.report.page import CSS, network_references, pct, scripts, sortable_table, vega_chart

if TYPE_CHECKING:  # imported lazily: the notebooks import this module inside their kernel
    from IPython.display import HTML, Markdown
    from matplotlib.figure import Figure
    from nbformat import NotebookNode

log = logging.getLogger(__name__)
# nbclient and nbconvert log every kernel start at INFO; only their warnings belong in the stage's log.
jupyter_log = logging.getLogger(f"{__name__}.jupyter")
jupyter_log.setLevel(logging.WARNING)

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"  # the repository's notebooks/
CELL_TIMEOUT_SECONDS = 300
KERNEL = "python3"
PARAMETERS_TAG = "parameters"
# The kernel's environment: Agg draws without a screen (the charts are embedded as PNG by
# `show`), a fixed hash seed keeps any set ordering stable, and the debugger's frozen-modules
# warning stays out of the output.
KERNEL_ENV = {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
# Altair 6 writes Vega-Lite 6 specs (altair.SCHEMA_VERSION "v6.x"); JupyterLab picks the renderer by this type.
VEGA_LITE_MIME = "application/vnd.vegalite.v6+json"


# --- helpers the notebooks import -------------------------------------------------------

def interval(low: float, high: float, digits: int = 1) -> str:
    """A 95 % interval of a rate: '7.8% to 12.1%'."""
    return f"{pct(low, digits)} to {pct(high, digits)}"


def table(frame: pd.DataFrame, percent: Iterable[str] = (), decimals: int = 2, digits: int = 1,
          sort_by: Mapping[str, str] | None = None) -> HTML:
    """A table the reader sorts with a click on a header: rates as '9.7%', counts as '1,234',
    yes/no, no index column (pipeline.report.page.sortable_table; `sort_by`: a text column's raw values)."""
    from IPython.display import HTML

    return HTML(sortable_table(frame, percent=percent, decimals=decimals, digits=digits, sort_by=sort_by))


def design_note(models: Path) -> Markdown | None:
    """A banner on every page of a run on a snapshot export: its numbers are cross-validated on random
    folds, and that must be read before any of them (pipeline.design). None for a dated history."""
    from IPython.display import Markdown

    from pipeline.design import SNAPSHOT_NOTE

    train = models / "metrics" / "train.json"
    if not train.exists() or io.read_json(train).get("validated_on") != SNAPSHOT_NOTE:
        return None
    return Markdown(f"> **Snapshot export (one row per lead, no dates)**: {SNAPSHOT_NOTE}. There is no cut-off "
                    "before the outcome, no decay and no month-by-month view; a column filled after the deal "
                    "would leak into every number here (`leadcal init` lists the suspects it left unmapped).")


def chart_title(fig: Figure) -> str:
    """The chart's titles in one line: the image's alternative text, for readers who cannot see it."""
    titles = [fig.get_suptitle(), *(ax.get_title(loc) for ax in fig.axes for loc in ("center", "left"))]
    return "; ".join(" ".join(t.split()) for t in titles if t.strip())


def show(fig: Figure) -> HTML:
    """A chart as an embedded PNG with its titles as alternative text.

    The PNG has no timestamp (pipeline.report.charts.figure_bytes), so pages stay identical. An <img>
    tag rather than IPython's Image, whose alt text nbconvert's HTML template drops.
    """
    from IPython.display import HTML

    from pipeline.report.charts import figure_bytes

    alt = html.escape(chart_title(fig) or "chart")
    png = base64.b64encode(figure_bytes(fig)).decode("ascii")
    return HTML(f'<img alt="{alt}" src="data:image/png;base64,{png}">')


class HoverChart:
    """An interactive chart (a Vega-Lite spec from pipeline.report.interactive) in a notebook.

    The rendered page gets it as HTML drawn by the page's own Vega runtime (pipeline.report.page: no CDN);
    JupyterLab, for an analyst running the notebook, draws the Vega-Lite spec itself, under the
    MIME type of the Vega-Lite major version Altair writes (v6 specs: a v5 renderer would misdraw them).
    """

    def __init__(self, spec: Mapping[str, object], description: str) -> None:
        self.spec, self.description = dict(spec), description

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, object]:
        return {"text/html": vega_chart(self.spec, self.description),
                VEGA_LITE_MIME: self.spec, "text/plain": self.description}


def crm_rule(entry: Mapping[str, object]) -> str:
    """A CRM's own MQL rule in words (thresholds.json "crm", pipeline.core.crm_scoring)."""
    if entry.get("threshold") is None:
        return "none"
    if entry.get("grade_at_least"):
        return f"grade {entry['grade_at_least']} or better and score {entry['threshold']}+"
    return f"{entry['threshold']} points or more"


CRM_PERCENT = ("later leads: MQL share", "MQL close rate", "customers captured",
               "leadcal's threshold pasted as is: MQL share", "its close rate")


def crm_comparison(thresholds: Mapping[str, object]) -> pd.DataFrame:
    """One row per tool, in pipeline.core.crm_scoring.TARGETS order: its own MQL rule and what it does on the
    later leads, beside what leadcal's threshold pasted unchanged would do there (CRM_PERCENT: rates).
    Empty for a run from before per-CRM thresholds."""
    from pipeline.core.crm_scoring import TARGETS

    crm = thresholds.get("crm") or {}
    rows = []
    for target in TARGETS:
        entry = crm.get(target)
        if not entry:
            continue
        later = entry.get("validation") or {}
        naive = (entry.get("at_leadcal_threshold") or {}).get("validation") or {}
        rows.append({"tool": entry["label"], "MQL rule in the tool": crm_rule(entry),
                     "later leads: MQL share": later.get("mql_share"), "MQL close rate": later.get("mql_close_rate"),
                     "customers captured": later.get("customers_captured"), "AUC": later.get("auc"),
                     "leadcal's threshold pasted as is: MQL share": naive.get("mql_share"),
                     "its close rate": naive.get("mql_close_rate")})
    return pd.DataFrame(rows)


def quadrant_rows(cells: Mapping[str, Mapping[str, object]],
                  later: Mapping[str, Mapping[str, object]] | None = None) -> pd.DataFrame:
    """The fit x interest groups (thresholds.json matrix quadrants), best first, with their action;
    with `later`, the close rate of each group on the later leads beside it."""
    rows = [{"group": name.replace("_", " "), "action": cell["action"], "share of leads": cell["share_of_leads"],
             "close rate": cell["close_rate"], "share of customers": cell["share_of_customers"],
             **({"later leads: close rate": later.get(name, {}).get("close_rate")} if later is not None else {})}
            for name, cell in cells.items()]
    return pd.DataFrame(rows).sort_values("close rate", ascending=False, kind="stable")


def signal_changes(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Signal by signal, two points tables (weights.json "signals") side by side.

    One row per signal in either table: points, close rate and lift before and after, the
    change in points, and whether the signal was added or removed. Sorted by the size of the
    points move, biggest first, so the surprising lines come first.
    """
    columns = ["signal", "kind", "points", "close_rate", "lift"]
    old = before.reindex(columns=columns).set_index("signal")
    new = after.reindex(columns=columns).set_index("signal")
    both = old.merge(new, how="outer", left_index=True, right_index=True, suffixes=("_before", "_after"))
    both["kind"] = both["kind_after"].fillna(both["kind_before"])
    both["change"] = both["points_after"].fillna(0) - both["points_before"].fillna(0)
    both["status"] = "kept"
    both.loc[both["points_before"].isna(), "status"] = "added"
    both.loc[both["points_after"].isna(), "status"] = "removed"
    both = both.reset_index()
    both = both.assign(size=both["change"].abs()).sort_values(["size", "signal"], ascending=[False, True], kind="stable")
    return both[["signal", "kind", "status", "points_before", "points_after", "change", "close_rate_before",
                 "close_rate_after", "lift_before", "lift_after"]].reset_index(drop=True)


# --- executing and rendering -------------------------------------------------------------

def parameters_source(models: Path) -> str:
    """What replaces the notebook's `parameters` cell: the models folder of this run."""
    return f"# set by leadcal notebooks\nfrom pathlib import Path\n\nMODELS = Path({str(models)!r})\n"


def with_parameters(notebook: NotebookNode, models: Path, name: str) -> NotebookNode:
    """The notebook with its parameters cell pointing at `models` (a notebook without one is an error)."""
    for cell in notebook.cells:
        if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            cell.source = parameters_source(models)
            return notebook
    raise LeadcalError(f"notebook {name}: no cell tagged '{PARAMETERS_TAG}' (jupytext: # %% tags=[\"parameters\"])")


def without_volatile_metadata(notebook: NotebookNode) -> NotebookNode:
    """Drop what changes from one execution to the next: cell timings, kernel and tool versions,
    and the random cell ids jupytext gives on reading (the HTML uses them as element ids)."""
    language = {k: v for k, v in notebook.metadata.get("language_info", {}).items() if k != "version"}
    notebook.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": KERNEL},
                         "language_info": language}
    for number, cell in enumerate(notebook.cells, start=1):
        cell.id = f"cell-{number}"
        cell.metadata = {k: v for k, v in cell.get("metadata", {}).items() if k in ("tags",)}
        for output in cell.get("outputs", []):
            output.get("metadata", {}).pop("execution", None)
    return notebook


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _failure(name: str, notebook: NotebookNode, index: int | None, exc: BaseException) -> LeadcalError:
    """One line: which notebook, which cell (counted from 1, like the `# %%` markers), what went wrong."""
    what = f"{type(exc).__name__}: {_first_line(str(exc))}"
    for position, cell in enumerate(notebook.cells):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            index, what = position, f"{errors[0]['ename']}: {_first_line(errors[0]['evalue'])}"
            break
    where = "before any cell ran" if index is None else \
        f"cell {index + 1} ({_first_line(notebook.cells[index].source)[:60]})"
    return LeadcalError(f"notebook {name}, {where}: {what}")


def _encryption() -> str:
    """CurveZMQ between this process and the kernel when pyzmq has it (no plain-text TCP, no warning)."""
    import zmq

    return "auto" if zmq.has("curve") else "disabled"


def execute(notebook: NotebookNode, name: str, cwd: Path, timeout: int = CELL_TIMEOUT_SECONDS) -> NotebookNode:
    """Run every cell in a fresh kernel started in `cwd`; a failing cell raises LeadcalError."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, CellExecutionError, DeadKernelError

    running: dict[str, int] = {}

    def remember(cell: NotebookNode, cell_index: int, **_: object) -> None:
        running["index"] = cell_index

    client = NotebookClient(notebook, timeout=timeout, kernel_name=KERNEL, record_timing=False, log=jupyter_log,
                            resources={"metadata": {"path": str(cwd)}}, on_cell_execute=remember)
    try:
        client.execute(env={**os.environ, **KERNEL_ENV}, transport_encryption=_encryption())
    except (CellExecutionError, CellControlSignal, DeadKernelError, TimeoutError, RuntimeError, NoSuchKernel) as exc:
        raise _failure(name, notebook, running.get("index"), exc) from None
    return notebook


def page_title(notebook: NotebookNode, fallback: str) -> str:
    """The page's first heading (what the browser tab shows), or `fallback` without one."""
    for cell in notebook.cells:
        for line in cell.source.splitlines() if cell.cell_type == "markdown" else ():
            if line.startswith("# "):
                return line[2:].strip()
    return fallback


# JupyterLab's page template without what it loads from a CDN (require.js, MathJax, Mermaid,
# the widget manager): the pages must open offline (pipeline.report.page). Nothing on them needs those.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">{{ resources.leadcal_css }}</style>{%- endblock extra_css -%}
"""


def to_html(notebook: NotebookNode, title: str) -> bytes:
    """The executed notebook as one self-contained HTML page (no code, no prompts, nothing from the network).

    The sorter and, on pages with interactive charts, the Vega runtime go before </body>.
    A page that would still load something from elsewhere is an error, not a silent leak.
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    # marketers read the text, tables and charts; the code stays in notebooks/*.py for analysts
    exporter = HTMLExporter(template_name="lab", template_file="leadcal.html.j2",
                            extra_loaders=[DictLoader({"leadcal.html.j2": OFFLINE_TEMPLATE})],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            log=jupyter_log)
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}, "leadcal_css": CSS})
    end = body.rindex("</body>")
    body = f"{body[:end]}{scripts(body)}\n{body[end:]}"
    if leaks := network_references(body):
        raise LeadcalError(f"page {title!r} would load from the network: {', '.join(leaks[:3])}")
    return body.encode("utf-8")


def render(path: Path, models: Path, cwd: Path | None = None) -> bytes:
    """One notebook (jupytext .py) executed against `models` and rendered to HTML bytes."""
    import jupytext

    notebook = with_parameters(jupytext.read(path), models, path.name)
    executed = execute(notebook, path.name, cwd or Path.cwd())
    return to_html(without_volatile_metadata(executed), page_title(executed, path.stem))


def notebook_paths(folder: Path) -> list[Path]:
    """The notebooks to render, in file-name order (their numbers are the reading order)."""
    paths = sorted(folder.glob("*.py"))
    if not paths:
        raise LeadcalError(f"{folder}: no notebooks (*.py, jupytext percent format) to render")
    return paths


def _cpus() -> int:
    """CPUs this process may use (the affinity mask on Linux, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def render_all(paths: list[Path], models: Path, workers: int | None = None) -> dict[Path, bytes]:
    """Every notebook rendered, several at a time (each runs in its own kernel process).

    If some fail, the error of the first failing one in `paths` order is raised, so the
    message does not depend on which kernel happened to finish first.
    """
    workers = workers or max(1, min(len(paths), _cpus()))
    started = time.perf_counter()
    log.info("notebooks: executing %d notebooks, %d at a time", len(paths), workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(render, path, models): path for path in paths}
        for done, future in enumerate(as_completed(futures), start=1):  # progress, as each kernel ends
            outcome = "failed" if future.exception() is not None else "executed"
            log.info("notebooks: %s %s (%d of %d, %.0f s)", futures[future].name, outcome, done, len(paths),
                     time.perf_counter() - started)
    by_path = {path: future for future, path in futures.items()}
    return {path: by_path[path].result() for path in paths}


def html_title(page: bytes, fallback: str) -> str:
    """A rendered page's <title> (its first heading), to link it by."""
    found = re.search(rb"<title>(.*?)</title>", page, flags=re.DOTALL)
    return html.unescape(found.group(1).decode("utf-8").strip()) if found else fallback
