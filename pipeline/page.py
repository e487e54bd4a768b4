"""Self-contained HTML for the marketers' pages: tables that sort, charts with hover details, nothing from the network.

Marketers open models/report/*.html from a shared drive, a mail attachment or a locked-down
laptop. A page that pulls a script from a CDN breaks there (or tells a third party who read
the report), so everything a page runs is inside it:

- tables sort by a click on their header (`sortable_table`, `SORT_SCRIPT`): each cell carries
  its raw value in `data-sort`, so "9.7%" sorts as 0.097 and "1,234" as 1234;
- charts are Vega-Lite specs (built with Altair in pipeline.interactive) drawn by the Vega,
  Vega-Lite and Vega-Embed bundle that vl-convert ships (`vega_runtime`), embedded once per
  page; hovering a mark shows its numbers;
- `network_references` finds anything a page would load from elsewhere: the tests assert
  there is none.

Everything here is a pure function of its arguments, and the same arguments give the same
bytes (no random element ids, sorted JSON), so `dvc repro` with nothing changed changes nothing.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping

import pandas as pd

VEGA_CLASS = "leadcal-vega"

# The sorter: a click (or Enter) on a header sorts by that column, a second click reverses.
# Numbers (data-sort) sort as numbers, before text; empty cells go last; ties keep the page's order.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach((table) => {
  const headers = Array.from(table.tHead ? table.tHead.rows[0].cells : []);
  headers.forEach((header, column) => {
    header.tabIndex = 0;
    header.setAttribute("aria-sort", "none");
    header.title = "Sort by this column";
    const sort = () => {
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      const key = (row) => {
        const cell = row.cells[column];
        const raw = cell === undefined ? "" : (cell.dataset.sort ?? cell.textContent.trim());
        const number = raw === "" ? NaN : Number(raw);
        return raw === "" ? [2, ""] : Number.isNaN(number) ? [1, raw.toLowerCase()] : [0, number];
      };
      const body = table.tBodies[0];
      const rows = Array.from(body.rows).map((row, index) => [key(row), index, row]);
      rows.sort((a, b) => {
        if (a[0][0] !== b[0][0]) return a[0][0] - b[0][0];  // numbers, then text, then empty cells
        if (a[0][0] === 2) return a[1] - b[1];
        const order = a[0][1] < b[0][1] ? -1 : a[0][1] > b[0][1] ? 1 : 0;
        return (ascending ? order : -order) || a[1] - b[1];
      });
      rows.forEach((entry) => body.appendChild(entry[2]));
      headers.forEach((other) => other.setAttribute("aria-sort", "none"));
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    };
    header.addEventListener("click", sort);
    header.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
    });
  });
});
"""

# What every page needs for its tables and charts (pipeline.summary adds its own layout).
CSS = """
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: "\\00a0\\2195"; color: #8a8a8a; font-size: 0.8em; }
table.sortable th[aria-sort="ascending"]::after { content: "\\00a0\\2191"; color: #000; }
table.sortable th[aria-sort="descending"]::after { content: "\\00a0\\2193"; color: #000; }
table.sortable td.number { text-align: right; font-variant-numeric: tabular-nums; }
.leadcal-vega { width: 100%; max-width: 960px; margin: 0.5em 0 1.5em 0; position: relative; }
.leadcal-vega figcaption { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
"""

# Draw every chart on the page: each .leadcal-vega holds its spec in a JSON script element.
# The SVG renderer keeps text selectable and crisp when printed; no action menu (it links to
# the online Vega editor).
_EMBED_SNIPPET = """
const charts = document.querySelectorAll(".%s");
window.leadcalCharts = Promise.all(Array.from(charts).map((element) => {
  const spec = JSON.parse(element.querySelector("script[type='application/json']").textContent);
  return vegaEmbed(element.querySelector(".chart"), spec, {actions: false, renderer: "svg"})
    .then(() => element.setAttribute("data-rendered", "yes"))
    .catch((error) => { element.setAttribute("data-rendered", "failed"); element.querySelector(".chart").textContent = "This chart could not be drawn: " + error; });
}));
""" % VEGA_CLASS


@functools.lru_cache(maxsize=1)
def vega_runtime() -> str:
    """One <script type="module"> that holds Vega, Vega-Lite and Vega-Embed and draws every chart on the page.

    vl-convert builds the bundle from the library versions it ships (Altair uses the same
    function for its offline HTML), so there is no JavaScript to vendor in this repository.
    """
    import altair
    import vl_convert

    # the Vega-Lite release whose schema Altair writes (v6.4.1 -> "6.4"), not vl-convert's newest
    version = ".".join(altair.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    bundle = vl_convert.javascript_bundle(_EMBED_SNIPPET, vl_version=version)
    return f'<script type="module">\n{_safe_script(bundle)}\n</script>'


def scripts(page: str) -> str:
    """The scripts `page` needs, to be placed before </body>: the sorter if it has a sortable
    table, the Vega runtime if it has a chart (about 900 KiB, so only where used)."""
    parts = []
    if any("sortable" in classes.split() for classes in re.findall(r'<table[^>]*\bclass="([^"]*)"', page)):
        parts.append(f"<script>{SORT_SCRIPT}</script>")
    if f'class="{VEGA_CLASS}"' in page:
        parts.append(vega_runtime())
    return "\n".join(parts)


def _safe_script(text: str) -> str:
    """Text that cannot end the <script> element it sits in early."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


def vega_chart(spec: Mapping[str, object], description: str) -> str:
    """A chart element: the spec as JSON (keys sorted, so the bytes are stable) and its description
    as the accessible label; the page's Vega runtime draws it."""
    payload = _safe_script(json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False))
    label = html.escape(description, quote=True)
    return (f'<figure class="{VEGA_CLASS}" role="img" aria-label="{label}"><div class="chart"></div>'
            f'<script type="application/json">{payload}</script>'
            f'<figcaption>{html.escape(description)}</figcaption></figure>')


# --- tables ----------------------------------------------------------------------------------

Formatter = Callable[[object], str]


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


def pct(value: object, digits: int = 1) -> str:
    """A rate as a marketer reads it: 0.0277 -> '2.8%'."""
    return "n/a" if _is_missing(value) else f"{float(value):.{digits}%}"


def formatters(frame: pd.DataFrame, percent: Iterable[str] = (), decimals: int = 2,
               digits: int = 1) -> dict[str, Formatter]:
    """How each column is shown: rates as '9.7%', counts as '1,234', floats with `decimals`, yes/no."""
    percent = set(percent)
    chosen: dict[str, Formatter] = {}
    for column in frame.columns:
        values = frame[column]
        if column in percent:
            chosen[column] = lambda v: "" if _is_missing(v) else pct(v, digits)
        elif pd.api.types.is_bool_dtype(values):
            chosen[column] = lambda v: "yes" if v else "no"
        elif pd.api.types.is_integer_dtype(values):
            chosen[column] = lambda v: "" if _is_missing(v) else f"{int(v):,}"
        elif pd.api.types.is_float_dtype(values):
            chosen[column] = lambda v: "" if _is_missing(v) else f"{float(v):,.{decimals}f}"
    return chosen


def _sort_key(value: object) -> str | None:
    """The raw value a cell sorts by, or None to sort by its text."""
    if _is_missing(value) or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(int(value))
    try:
        return repr(float(value))  # numpy scalars
    except (TypeError, ValueError):
        return None


def sortable_table(frame: pd.DataFrame, percent: Iterable[str] = (), decimals: int = 2, digits: int = 1,
                   sort_by: Mapping[str, str] | None = None, caption: str | None = None) -> str:
    """An HTML table whose columns sort on a click: formatted text shown, raw value in data-sort.

    `sort_by` names, for a column shown as text (e.g. '+3 to +9'), the column whose values it
    sorts by (which is not shown). No index, no element ids: the same frame gives the same bytes.
    """
    sort_by = dict(sort_by or {})
    shown = [c for c in frame.columns if c not in set(sort_by.values())]
    formats = formatters(frame, percent, decimals, digits)
    head = "".join(f'<th scope="col">{html.escape(str(c))}</th>' for c in shown)
    rows = []
    for record in frame.itertuples(index=False, name=None):
        values = dict(zip(frame.columns, record))
        cells = []
        for column in shown:
            value = values[column]
            text = formats[column](value) if column in formats else ("" if _is_missing(value) else str(value))
            key = _sort_key(values[sort_by[column]]) if column in sort_by else _sort_key(value)
            numeric = key is not None and not pd.api.types.is_bool_dtype(frame[column])
            attributes = (f' data-sort="{key}"' if key is not None else "") + (' class="number"' if numeric else "")
            cells.append(f"<td{attributes}>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<table class="leadcal sortable">{title}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


# --- the offline check -----------------------------------------------------------------------

_NETWORK = re.compile(
    r"""(?:\b(?:src|href|action|data|poster|srcset)\s*=\s*["']?\s*(?:https?:)?//[^\s"'>]+)"""
    r"""|(?:url\(\s*["']?(?:https?:)?//[^)"']+)"""
    r"""|(?:@import\s+["'](?:https?:)?//[^"']+)"""
    r"""|(?:\bimport\s*(?:[\w{}*\s,]+from\s*)?["'](?:https?:)?//[^"']+)"""
    r"""|(?:\bimport\(\s*["'](?:https?:)?//[^"']+)""",
    re.IGNORECASE,
)


def network_references(page: str) -> list[str]:
    """Every place `page` would load something from the network: src/href attributes, CSS url()
    and @import, and JavaScript imports of an http(s) or protocol-relative address.

    Plain text that merely mentions an address (a licence comment, an XML namespace) is not a
    reference and is not reported.
    """
    return sorted(set(match.group(0) for match in _NETWORK.finditer(page)))
