"""Offline HTML building blocks (pipeline.report.page): sortable tables keep raw values, charts carry safe
JSON, scripts come only where used, and the network check finds what a page would load."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.report import page


def cells(markup: str) -> list[tuple[str | None, str]]:
    """(data-sort, text) of every body cell, in order."""
    return [(m.group(2), m.group(3)) for m in re.finditer(r'<td( data-sort="([^"]*)")?[^>]*>(.*?)</td>', markup)]


def test_sortable_table_shows_formatted_text_and_sorts_by_raw_values() -> None:
    frame = pd.DataFrame({"signal": ["demo <b>", "blog"], "leads": [1234, 5], "close rate": [0.0277, np.nan],
                          "lift": [1.5, 0.25], "scored": [True, False]})
    markup = page.sortable_table(frame, percent=["close rate"])
    assert markup.startswith('<table class="leadcal sortable"><thead><tr><th scope="col">signal</th>')
    assert cells(markup) == [
        (None, "demo &lt;b&gt;"), ("1234", "1,234"), ("0.0277", "2.8%"), ("1.5", "1.50"), ("1", "yes"),
        (None, "blog"), ("5", "5"), (None, ""), ("0.25", "0.25"), ("0", "no"),
    ]
    assert markup.count('class="number"') == 5  # counts, rates and floats right-aligned; yes/no and text not


def test_sortable_table_sorts_a_text_column_by_another_columns_values_and_hides_that_column() -> None:
    frame = pd.DataFrame({"signal": ["a", "b"], "range": ["-3 to +9", "+10 to +12"], "range_low": [-3.0, 10.0]})
    markup = page.sortable_table(frame, sort_by={"range": "range_low"})
    assert "range_low" not in markup
    assert cells(markup) == [(None, "a"), ("-3.0", "-3 to +9"), (None, "b"), ("10.0", "+10 to +12")]


def test_same_table_gives_the_same_bytes() -> None:
    frame = pd.DataFrame({"x": np.arange(5, dtype=float) / 3, "y": list("abcde")})
    assert page.sortable_table(frame) == page.sortable_table(frame.copy())


def test_network_references_find_what_a_page_would_load_and_ignore_mentions() -> None:
    loads = ['<script src="https://cdnjs.cloudflare.com/require.js"></script>',
             "<link rel=stylesheet href='//fonts.example.com/a.css'>",
             '<div style="background: url(https://img.example.com/x.png)">',
             '<style>@import "https://example.com/x.css";</style>',
             '<script type="module">import x from "https://esm.sh/vega";</script>',
             '<script>import("http://example.com/late.js")</script>',
             '<img src=https://example.com/pixel.gif>']
    for markup in loads:
        assert page.network_references(markup), markup
    mentions = ['<svg xmlns="http://www.w3.org/2000/svg"></svg>', "<p>see https://example.com for help</p>",
                '<a href="#points">points</a>', '<img src="data:image/png;base64,AAAA">',
                "<script>const editor = 'https://vega.github.io/editor/';</script>"]
    assert [page.network_references(m) for m in mentions] == [[]] * len(mentions)


def test_chart_json_cannot_close_its_script_element() -> None:
    spec = {"title": "</script><script>alert(1)</script>", "data": {"values": [{"a": 1}]}}
    markup = page.vega_chart(spec, 'a "quoted" chart')
    assert markup.count("</script>") == 1  # only the element's own end
    payload = re.search(r'<script type="application/json">(.*)</script>', markup).group(1)
    assert json.loads(payload.replace("<\\/", "</")) == spec
    assert 'aria-label="a &quot;quoted&quot; chart"' in markup


def test_scripts_only_where_the_page_uses_them() -> None:
    table = page.sortable_table(pd.DataFrame({"a": [1]}))
    chart = page.vega_chart({"mark": "bar"}, "c")
    assert page.scripts("<p>no table</p>") == ""
    assert page.scripts(f"<style>{page.CSS}</style>") == ""  # the CSS names the chart class: no runtime for it
    with_table = page.scripts(table)
    assert "table.sortable" in with_table and "leadcal-vega" not in with_table
    both = page.scripts(table + chart)  # the sorter, and the Vega bundle (about 900 KB) that draws .leadcal-vega
    assert both.count("<script") == 2 and 'querySelectorAll(".leadcal-vega")' in both and len(both) > 500_000
    assert page.network_references(both) == []


# --- review fixes: markup in chart data, URLs in specs, a parsed offline check, the sorter ------

def test_chart_json_writes_markup_characters_as_escapes_so_crm_values_cannot_change_the_page() -> None:
    """'<!--<script>' inside a script element would make the browser skip the element's real end."""
    spec = {"data": {"values": [{"industry": "<!--<script>", "size": "1 & 2 > 1"}]}, "title": "</script>"}
    markup = page.vega_chart(spec, "c")
    payload = re.search(r'<script type="application/json">(.*)</script>', markup, flags=re.DOTALL).group(1)
    assert not set("<>&") & set(payload)
    assert "\\u003c!--\\u003cscript\\u003e" in payload and "1 \\u0026 2 \\u003e 1" in payload
    assert json.loads(payload) == spec  # the same JSON, only written differently


def test_chart_that_would_load_a_url_is_refused() -> None:
    for spec in ({"data": {"url": "https://example.com/leads.csv"}, "mark": "bar"},
                 {"layer": [{"mark": "bar"}, {"data": {"url": "data/local.json"}, "mark": "line"}]},
                 {"projection": {"type": "albers"}, "data": {"values": [{"u": 1}]}, "vconcat": [{"url": "x"}]}):
        with pytest.raises(ValueError, match="inline"):
            page.vega_chart(spec, "c")
    # a field named url, an encoding channel holding an object, a value that merely is an address: no load
    page.vega_chart({"data": {"values": [{"site": "https://example.com"}]},
                     "encoding": {"url": {"field": "site"}, "href": {"field": "site"}}}, "c")


def test_network_references_parse_the_page_and_never_read_what_a_reader_sees() -> None:
    # CRM values shown as text (or in a chart's JSON data block) are data, not loads
    text = ['<td>url(https://x.example)</td>', '<p>@import "https://x.example/a.css"; image-set("//x")</p>',
            '<li>import x from "https://esm.sh/x"; fetch("https://x.example")</li>',
            page.vega_chart({"data": {"values": [{"signal": "fetch('https://x.example')"}]}}, "c"),
            '<script>const s = "import x from \\"https://x\\"";</script>',  # a string, not an import
            '<!-- <img src="https://x.example/a.png"> -->', '<a href="#points">', '<img src="logo.png">']
    assert [page.network_references(m) for m in text] == [[]] * len(text)
    loads = ['<img srcset="small.png 1x, https://cdn.example/big.png 2x">',  # any candidate, not only the first
             '<img srcset="data:image/png;base64,AA,BB 1x, //cdn.example/b.png 2x">',
             '<meta http-equiv="Refresh" content="0; URL=\'https://x.example\'">',
             '<a href="\\\\cdn.example/x">', '<a href="/\\cdn.example/x">',  # browsers read \ as /
             '<img src="&#104;ttps://x.example/p.gif">', '<img src=" HTTPS://x.example/p.gif">',
             '<form action="ftp://x.example">', '<button formaction="//x.example">', '<object data="http://x.example">',
             '<video poster="https://x.example/p.jpg">', '<table background="https://x.example/b.png">',
             '<svg><image xlink:href="https://x.example/a.png"/></svg>',
             '<div style="background: image-set(\'https://x.example/a.png\' 1x)">',
             '<style>a { background: u\\72l(https://x.example/a.png) }</style>',
             '<style>@import/**/"//x.example/a.css";</style>',
             '<script>new WebSocket("wss://x.example")</script>', '<script>fetch(`https://x.example`)</script>',
             '<script>export { a } from "https://x.example/a.js";</script>',
             '<script type="module">import "https://x.example/side.js";</script>',
             '<script>fetch("\\x2f/x.example")</script>', '<script>fetch("https://x.example")']  # left open
    for markup in loads:
        assert page.network_references(markup), markup
    assert page.network_references('<meta http-equiv="refresh" content="30">') == []
    assert page.network_references(page.vega_runtime()) == []


def test_non_finite_floats_sort_by_their_text_not_by_a_data_sort_the_sorter_cannot_read() -> None:
    frame = pd.DataFrame({"lift": [1.5, np.inf, -np.inf, np.nan]})
    assert cells(page.sortable_table(frame)) == [("1.5", "1.50"), (None, "inf"), (None, "-inf"), (None, "")]
    assert [page._sort_key(v) for v in (np.float64("inf"), float("-inf"), np.float32("nan"), 3, np.int64(2))] == \
        [None, None, None, "3", "2.0"]


def test_sorter_reads_numbers_only_from_data_sort_and_arrows_have_no_accessible_name() -> None:
    """Text such as '0x1A' or '1e3' is text; the browser side is in test_notebooks (in Chromium)."""
    assert "cell.dataset.sort" in page.SORT_SCRIPT and "Number(raw)" in page.SORT_SCRIPT
    assert "Number(cell.textContent" not in page.SORT_SCRIPT and "?? cell.textContent" not in page.SORT_SCRIPT
    for arrow in ("2195", "2191", "2193"):
        assert f'content: "\\00a0\\{arrow}" / "";' in page.CSS
