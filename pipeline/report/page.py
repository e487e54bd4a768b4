"""Self-contained HTML for the marketers' pages: tables that sort, charts with hover details, nothing from the network.

Marketers open models/report/*.html from a shared drive, a mail attachment or a locked-down
laptop. A page that pulls a script from a CDN breaks there (or tells a third party who read
the report), so everything a page runs is inside it:

- tables sort by a click on their header (`sortable_table`, `SORT_SCRIPT`): each cell carries
  its raw value in `data-sort`, so "9.7%" sorts as 0.097 and "1,234" as 1234;
- charts are Vega-Lite specs (built with Altair in pipeline.report.interactive) drawn by the Vega,
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
from html.parser import HTMLParser

import pandas as pd

VEGA_CLASS = "leadcal-vega"

# The sorter: a click (or Enter) on a header sorts by that column, a second click reverses.
# Cells with data-sort sort as numbers, before text; a cell without it sorts by its text, never
# read as a number (text such as "0x1A" or "1e3" is text); empty cells go last; ties keep the page's order.
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
        if (cell === undefined) return [2, ""];
        const raw = cell.dataset.sort;
        const number = raw === undefined || raw.trim() === "" ? NaN : Number(raw);
        if (!Number.isNaN(number)) return [0, number];
        const text = cell.textContent.trim();
        return text === "" ? [2, ""] : [1, text.toLowerCase()];
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

# What every page needs for its tables and charts (pipeline.report.summary adds its own layout). The
# arrows have empty alternative text (`/ ""`): aria-sort says how a column is sorted, and the
# arrow is no part of the header's accessible name (the first `content` is for browsers without
# alternative text, which drop the second).
CSS = """
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: "\\00a0\\2195"; content: "\\00a0\\2195" / ""; color: #8a8a8a; font-size: 0.8em; }
table.sortable th[aria-sort="ascending"]::after { content: "\\00a0\\2191"; content: "\\00a0\\2191" / ""; color: #000; }
table.sortable th[aria-sort="descending"]::after { content: "\\00a0\\2193"; content: "\\00a0\\2193" / ""; color: #000; }
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


def _urls(node: object, path: str = "spec") -> list[str]:
    """Where `node` has a "url" key holding a string (data, an image, a projection's shapes): Vega fetches it."""
    if isinstance(node, Mapping):
        found = [f"{path}.url" for key, value in node.items() if key == "url" and isinstance(value, str)]
        return found + [where for key, value in node.items() for where in _urls(value, f"{path}.{key}")]
    if isinstance(node, (list, tuple)):
        return [where for index, value in enumerate(node) for where in _urls(value, f"{path}[{index}]")]
    return []


def vega_chart(spec: Mapping[str, object], description: str) -> str:
    """A chart element: the spec as JSON (keys sorted, so the bytes are stable) and its description
    as the accessible label; the page's Vega runtime draws it.

    "<", ">" and "&" are written as \\u003c, \\u003e, \\u0026 (the same JSON): a CRM value such as
    '<!--<script>' would otherwise change how the browser finds the end of the script element.
    A spec that names a URL is refused: Vega would fetch it, and the page must open offline.
    """
    if urls := _urls(spec):
        raise ValueError(f"a chart must carry its data inline, not load it: {', '.join(urls[:3])}")
    payload = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
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
    """The raw value a cell sorts by, or None to sort by its text. Infinities and NaN get none:
    the sorter reads data-sort with Number(), which does not read Python's 'inf' or 'nan'."""
    if _is_missing(value) or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)  # floats and numpy scalars
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return repr(number)


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

# Schemes a browser fetches over the network; "//host" (protocol-relative) does too.
_NETWORK_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})
# Attributes whose value the browser loads (or submits to, or navigates to): any element, any namespace prefix.
_LOADING_ATTRIBUTES = frozenset({"src", "href", "srcset", "action", "formaction", "data", "poster", "background"})
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|$)", re.DOTALL)
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})\s?|(.))", re.DOTALL)
_CSS_ADDRESSES = re.compile(
    r"""\burl\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]*))"""
    r"""|@import\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_CSS_IMAGE_SET = re.compile(r"image-set\(", re.IGNORECASE)
_QUOTED = re.compile(r""""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|`((?:[^`\\]|\\.)*)`""", re.DOTALL)
_STRING = r"""(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)'|`((?:[^`\\]|\\.)*)`)"""
_JS_LOADS = re.compile(
    r"\bimport\s*(?:[\w$*{}\s,]+?from\s*)?" + _STRING      # import x from "…", import "…"
    + r"|\bexport\s*[\w$*{}\s,]*?from\s*" + _STRING        # export … from "…"
    + r"|\bimport\s*\(\s*" + _STRING                       # import("…")
    + r"|\bfetch\s*\(\s*" + _STRING                        # fetch("…")
    + r"|\bnew\s+WebSocket\s*\(\s*" + _STRING, re.DOTALL)  # new WebSocket("…")
_JS_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u\{([0-9a-fA-F]+)\}|u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_REFRESH = re.compile(r"""\s*[\d.]*\s*(?:[;,]\s*)?(?:url\s*=\s*)?(.*)""", re.IGNORECASE | re.DOTALL)
_JS_TYPES = ("javascript", "ecmascript", "jscript", "livescript")


def _is_network(address: str) -> bool:
    """Whether a browser would fetch `address` from the network: an http(s)/ws(s)/ftp scheme, or
    '//host'. Browsers drop tabs and newlines, trim spaces and read a backslash as a slash."""
    cleaned = re.sub(r"[\t\n\r]", "", address).strip(_C0_AND_SPACE).replace("\\", "/")
    scheme = _SCHEME.match(cleaned)
    return cleaned.startswith("//") or (scheme is not None and scheme.group(1).lower() in _NETWORK_SCHEMES)


def _srcset_candidates(value: str) -> list[str]:
    """Every URL of a srcset (HTML's parsing: a URL runs to whitespace, descriptors to the next comma)."""
    urls, index = [], 0
    while index < len(value):
        while index < len(value) and (value[index].isspace() or value[index] == ","):
            index += 1
        start = index
        while index < len(value) and not value[index].isspace():
            index += 1
        url = value[start:index]
        if url.endswith(","):
            url = url.rstrip(",")
        else:  # skip the descriptors ("2x", "640w"), up to a comma outside parentheses
            depth = 0
            while index < len(value) and (value[index] != "," or depth):
                depth = depth + 1 if value[index] == "(" else max(depth - 1, 0) if value[index] == ")" else depth
                index += 1
        if url:
            urls.append(url)
    return urls


def _refresh_target(content: str) -> str:
    """The address of <meta http-equiv=refresh content="5; url=…">, quotes removed."""
    target = _REFRESH.match(content).group(1).strip()
    if target[:1] in ("'", '"'):
        target = target[1:].split(target[0], 1)[0]
    return target


def _css_references(css: str) -> list[str]:
    """The network addresses a style sheet or style="" loads: url(…), @import "…", image-set("…")."""
    text = _CSS_COMMENT.sub(" ", css)
    text = _CSS_ESCAPE.sub(lambda m: chr(min(int(m.group(1), 16), 0x10FFFF) or 0xFFFD) if m.group(1) else m.group(2),
                           text)
    addresses = [next(g for g in match.groups() if g is not None) for match in _CSS_ADDRESSES.finditer(text)]
    for start in (m.end() for m in _CSS_IMAGE_SET.finditer(text)):  # image-set takes bare strings too
        depth, end = 1, start
        while end < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        addresses += [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(text[start:end])]
    return [address for address in addresses if _is_network(address)]


def _js_unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2) or match.group(3)
        return chr(min(int(code, 16), 0x10FFFF)) if code else match.group(4)

    return _JS_ESCAPE.sub(one, text)


def _script_references(script: str) -> list[str]:
    """The network addresses a script loads with a string literal: static and dynamic imports,
    export … from, fetch and WebSocket. An address built at run time is beyond a static check."""
    found = []
    for match in _JS_LOADS.finditer(script):
        literal = next(g for g in match.groups() if g is not None)
        if _is_network(_js_unescape(literal)):
            found.append(match.group(0))
    return found


class _References(HTMLParser):
    """Collects what a page would load, element by element (text outside <script>/<style> is data)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: set[str] = set()
        self._raw: tuple[str, str] | None = None  # ("script" or "style", the script's type) being read
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name, value in attrs:
            local = name.rsplit(":", 1)[-1]  # xlink:href loads like href
            value = value or ""
            addresses = _srcset_candidates(value) if local == "srcset" else [value]
            if local in _LOADING_ATTRIBUTES and any(_is_network(a) for a in addresses):
                self.found.add(f"<{tag} {name}={value!r}>")
            elif name == "style":
                self.found.update(f"<{tag} style>: {a}" for a in _css_references(value))
            elif name.startswith("on"):  # an event handler is a script
                self.found.update(f"<{tag} {name}>: {a}" for a in _script_references(value))
            elif name == "srcdoc":  # an iframe's whole document
                self.found.update(network_references(value))
        if tag == "meta" and values.get("http-equiv", "").strip().lower() == "refresh" \
                and _is_network(_refresh_target(values.get("content", ""))):
            self.found.add(f"<meta http-equiv=refresh content={values['content']!r}>")
        if tag in ("script", "style"):
            self._raw, self._text = (tag, values.get("type", "").strip().lower()), []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # no end tag: in HTML "<script/>" opens a script all the same, whose text runs to </script>
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        if self._raw is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._raw is not None and tag == self._raw[0]:
            self.flush()

    def flush(self) -> None:
        """Scan the <script> or <style> just read (a JSON data block is data, not a script)."""
        if self._raw is None:
            return
        (tag, kind), text = self._raw, "".join(self._text)
        self._raw, self._text = None, []
        if tag == "style":
            self.found.update(f"<style>: {a}" for a in _css_references(text))
        elif kind in ("", "module") or any(word in kind for word in _JS_TYPES):
            self.found.update(f"<script>: {a}" for a in _script_references(text))
        elif kind in ("importmap", "speculationrules"):  # JSON whose addresses the browser may load
            self.found.update(f"<script type={kind}>: {a}" for m in _QUOTED.finditer(text)
                              for a in m.groups() if a is not None and _is_network(_js_unescape(a)))


def network_references(page: str) -> list[str]:
    """Every place `page` would load something from the network, sorted: loading attributes (src,
    href, srcset, action, formaction, data, poster, background), a meta refresh, CSS url()/@import/
    image-set in <style> and style="", and imports, fetch and WebSocket in scripts, of an http(s),
    ws(s), ftp or protocol-relative address.

    The page is parsed, not searched: text a reader sees (a CRM value such as 'url(https://x)'),
    a comment or a JSON data block mentioning an address is not a reference and is not reported.
    """
    parser = _References()
    parser.feed(page)
    parser.close()
    if parser.rawdata:  # a <script> or <style> left open runs to the end of the page (HTMLParser keeps it)
        parser.handle_data(parser.rawdata)
    parser.flush()
    return sorted(parser.found)
