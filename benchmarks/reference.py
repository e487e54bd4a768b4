"""Run benchmarks/reference.sql, the hand-written DuckDB query leadcal is measured against, on one export.

    python benchmarks/reference.py EXPORT_DIR OUT.csv [--memory-gb N]

EXPORT_DIR holds leads.parquet, activities.parquet and stages.parquet (benchmarks/scale.py's
generator). The result is the activity and fit rows of models/close_rates.csv, computed by
one query; `agrees` checks that they equal leadcal's. DuckDB gets the same memory cap as
leadcal's stages (params duckdb_memory_gb) and every core, as leadcal's engine does.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

SQL = Path(__file__).with_name("reference.sql")
EXACT = ["leads", "customers"]
CLOSE = ["close_rate", "ci_low", "ci_high", "expected_close_rate", "lift"]


def run(export_dir: Path, out: Path, memory_gb: float) -> pd.DataFrame:
    connection = duckdb.connect(config={"memory_limit": f"{memory_gb}GB"})
    connection.execute(f"SET VARIABLE export_dir = '{export_dir.as_posix()}'")
    text = re.sub(r"--[^\n]*", "", SQL.read_text())  # comments may hold semicolons; the query's strings hold no "--"
    statements = [s for s in text.split(";") if s.strip()]
    for statement in statements[:-1]:
        connection.execute(statement)
    result = connection.execute(statements[-1]).df()
    connection.close()
    result.to_csv(out, index=False)
    return result


def agrees(reference: pd.DataFrame, close_rates: pd.DataFrame) -> None:
    """Every activity and fit row of leadcal's close_rates.csv equals the reference's (CSV: 6 significant digits)."""
    ours = close_rates[close_rates["type"].isin(["activity", "fit"])].set_index("signal").sort_index()
    theirs = reference.set_index("signal").sort_index()
    if list(ours.index) != list(theirs.index):
        missing = sorted(set(ours.index) ^ set(theirs.index))[:5]
        raise AssertionError(f"the reference and leadcal found different signals: {missing}")
    for column in EXACT:
        if not (ours[column].to_numpy() == theirs[column].to_numpy()).all():
            raise AssertionError(f"{column} differs from the reference")
    for column in CLOSE:
        if not np.allclose(ours[column].to_numpy(float), theirs[column].to_numpy(float), rtol=1e-5, atol=1e-9):
            worst = (ours[column] - theirs[column]).abs().idxmax()
            raise AssertionError(f"{column} differs from the reference (e.g. {worst}: {ours.loc[worst, column]} "
                                 f"vs {theirs.loc[worst, column]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--memory-gb", type=float, default=4.0)
    args = parser.parse_args()
    run(args.export_dir, args.out, args.memory_gb)


if __name__ == "__main__":
    main()
