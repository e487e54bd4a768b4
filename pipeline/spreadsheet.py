"""CSV files meant for people: no cell may run as a spreadsheet formula (CSV injection).

Activity names, fit values and lead ids come from the user's export and end up in CSV files
that marketers open in Excel, LibreOffice or Google Sheets. A cell such as `=1+2` or
`=HYPERLINK("http://x","y")` would run there as a formula. Following OWASP's rule
(https://owasp.org/www-community/attacks/CSV_Injection), every text cell that starts with
`=`, `+`, `-`, `@`, a tab or a carriage return is written with a single quote in front
(`'=1+2`), which spreadsheets show as text; the CSV writer quotes the field where CSV requires.

- Only text cells are escaped. Numeric columns are never touched, and a text cell that is
  exactly a decimal number (`-3`, `+0.5`, `-1e-05`: the generic export writes its numbers as
  text to keep them exact) stays as it is: a spreadsheet reads it as that number, it cannot
  call a function.
- The escape is reversible: a text cell that already starts with quotes followed by one of
  those characters (`'=x`) gets one more quote, so `unescape_formula` (one quote off any cell
  that starts with quotes followed by one of them) always gives back the original text.
  `read_csv` here reads such a file back with the original names.

`write_csv` / `read_csv` are for files people open: models/close_rates.csv, weights.csv,
factors.csv, models/exports/*.csv and `leadcal score`'s output. The plot data under
models/plots/ (read by `dvc plots show`, not opened as sheets) and the sample input data stay
raw.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import io

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_QUOTED = re.compile(r"'+[=+\-@\t\r]")  # what `escape_formula` makes of a cell it escapes


def escape_formula(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, with a single quote in front; anything else unchanged."""
    if not isinstance(value, str):
        return value
    if _QUOTED.match(value) or (value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value)):
        return "'" + value
    return value


def unescape_formula(value: Any) -> Any:
    """The inverse of `escape_formula`: unescape_formula(escape_formula(x)) == x for every x."""
    if isinstance(value, str) and _QUOTED.match(value):
        return value[1:]
    return value


def _text_columns(frame: pd.DataFrame) -> list[Any]:
    api = pd.api.types
    return [column for column in frame.columns
            if not (api.is_numeric_dtype(frame[column]) or api.is_bool_dtype(frame[column])
                    or api.is_datetime64_any_dtype(frame[column]) or api.is_timedelta64_dtype(frame[column]))]


def _map_text(frame: pd.DataFrame, function: Any) -> pd.DataFrame:
    out = frame.copy()
    for column in _text_columns(frame):
        values = out[column].astype(object) if isinstance(out[column].dtype, pd.CategoricalDtype) else out[column]
        out[column] = values.map(function)
    out.columns = [function(column) for column in out.columns]
    return out


def escape_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with `escape_formula` applied to every text cell and header; numbers untouched."""
    return _map_text(frame, escape_formula)


def unescape_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with `unescape_formula` applied to every text cell and header."""
    return _map_text(frame, unescape_formula)


def _has_carriage_return(frame: pd.DataFrame) -> bool:
    cells = [frame[column] for column in _text_columns(frame)]
    return any("\r" in str(c) for c in frame.columns) or any(
        values.map(lambda v: isinstance(v, str) and "\r" in v).any() for values in cells)


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """A CSV for people: `io.write_csv` (atomic, fixed float format) of the escaped frame.

    Python's csv writer quotes a field holding a line feed but not one holding a lone carriage
    return, which readers then take for the end of the row; a frame with one has every field
    quoted (the rare case: other files keep their usual bytes).
    """
    escaped = escape_cells(frame)
    if not _has_carriage_return(escaped):
        io.write_csv(path, escaped)
        return
    with io.atomic_path(path) as tmp:
        escaped.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n", quoting=csv.QUOTE_ALL)


def read_csv(path: str | Path) -> pd.DataFrame:
    """A CSV written by `write_csv`, with its text cells as they were before escaping."""
    return unescape_cells(io.read_csv(path))
