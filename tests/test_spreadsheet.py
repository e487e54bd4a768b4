"""CSV files for people: no cell runs as a spreadsheet formula, and the escape is undone on reading."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline import spreadsheet
from pipeline.spreadsheet import escape_formula, unescape_formula

REPO = Path(__file__).resolve().parents[1]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
NASTY = ["=1+2", '=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "-cmd|' /C calc'!A0",
         "'=1", "''=1", "'-", "'", "", "ok", "a=b", "-", "=", "-3x", "- 3", "+-1"]


@pytest.mark.parametrize("value", NASTY)
def test_text_that_a_spreadsheet_would_run_gets_a_quote_and_comes_back(value):
    escaped = escape_formula(value)
    assert not escaped.startswith(TRIGGERS)  # nothing a spreadsheet would evaluate
    assert escaped == value or escaped == "'" + value
    assert unescape_formula(escaped) == value


@pytest.mark.parametrize("value", ["-3", "+3", "-0.5", "-1e-05", "-.5", "3", "-12345678901"])
def test_a_number_written_as_text_stays_a_number(value):
    assert escape_formula(value) == value and unescape_formula(value) == value


@pytest.mark.parametrize("value", [-3, -0.5, None, float("nan"), True])
def test_non_text_is_untouched(value):
    assert escape_formula(value) is value


def test_a_frame_round_trips_through_a_csv_with_numbers_untouched(tmp_path):
    frame = pd.DataFrame({
        "signal": ["=1+2", '=HYPERLINK("http://x","y")', "@me", "\tx", "a\rb", "-3", "'=1", None, "demo_request"],
        "points": [-3, 12, -40, 0, 1, 2, 3, 4, 5],
        "lift": [-0.5, 1.25, 3.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        "low_support": [True, False, True, False, True, False, True, False, True],
    })
    path = tmp_path / "table.csv"
    spreadsheet.write_csv(path, frame)
    cells = list(csv.reader(path.open(newline="", encoding="utf-8")))
    for row in cells:
        for cell in row:  # no cell starts a formula; negative numbers are still plain numbers
            assert not cell.startswith(TRIGGERS) or re.fullmatch(r"-[\d.]+", cell), cell
    assert [row[1] for row in cells[1:4]] == ["-3", "12", "-40"] and cells[1][2] == "-0.5"
    assert cells[1][0] == "'=1+2" and cells[2][0] == "'=HYPERLINK(\"http://x\",\"y\")"
    back = spreadsheet.read_csv(path)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back["points"].dtype.kind == "i" and back["lift"].dtype.kind == "f"


def test_a_plain_frame_is_written_exactly_as_before(tmp_path):
    """Nothing to escape: the same bytes as io.write_csv, so existing artifacts do not change."""
    from pipeline import io

    frame = pd.DataFrame({"signal": ["demo_request", "company_size = <1", "x >= 4 in 30 days"], "points": [-3, 4, 5]})
    io.write_csv(tmp_path / "a.csv", frame)
    spreadsheet.write_csv(tmp_path / "b.csv", frame)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_every_csv_for_people_goes_through_the_escaping_writer():
    """io.write_csv / io.read_csv (raw) only for plot data (read by `dvc plots`) and generated sample inputs;
    every other CSV of pipeline/ and the notebooks is written and read with pipeline.spreadsheet."""
    raw_ok = {"generate.py", "sample_export.py"}  # the synthetic sample: input data in the contract's format
    plot_files = {"gain_file"}  # a variable holding a models/plots/ path
    offenders = []
    for path in [*(REPO / "pipeline").glob("*.py"), *(REPO / "notebooks").glob("*.py")]:
        if path.name in ("io.py", "spreadsheet.py") or path.name in raw_ok:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bio\.(write|read)_csv\(", line) and "plots" not in line \
                    and not any(name in line for name in plot_files):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, offenders
