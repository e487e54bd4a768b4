"""Offline HTML building blocks (pipeline.page): sortable tables keep raw values, charts carry safe
JSON, scripts come only where used, and the network check finds what a page would load."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from pipeline import page


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
