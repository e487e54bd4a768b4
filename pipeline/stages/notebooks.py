"""The notebooks stage: the calibration notebooks executed on this run, rendered to
models/report/<notebook>.html, and the summary page that links them (models/report/index.html).
How a notebook is executed and rendered is pipeline.report.notebooks."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import io
from pipeline.params import Params
from pipeline.report import summary
from pipeline.report.notebooks import NOTEBOOKS, html_title, notebook_paths, render_all

log = logging.getLogger(__name__)


def run(params: Params, folder: Path | None = None) -> dict[str, object]:
    """Render every notebook in `folder` (default: the package's notebooks/) to models/report/<stem>.html,
    and the summary page that links them to models/report/index.html (pipeline.report.summary).

    Nothing is written unless every page was built: a half-updated report would mix two runs.
    """
    models = params.paths.models
    pages = render_all(notebook_paths(folder or NOTEBOOKS), models)
    links = [(f"{path.stem}.html", html_title(page, path.stem)) for path, page in pages.items()]
    front = summary.summary_page(summary.read(models, links)).encode("utf-8")
    written = {}
    for path, page in pages.items():
        target = models / "report" / f"{path.stem}.html"
        io.write_bytes(target, page)
        log.info("notebooks: %s -> %s (%d KiB)", path.name, target, len(page) // 1024)
        written[path.stem] = str(target)
    target = models / "report" / summary.PAGE_NAME
    io.write_bytes(target, front)
    log.info("notebooks: summary page -> %s (%d KiB): open it in a browser, it works offline", target, len(front) // 1024)
    written["summary"] = str(target)
    return written
