"""`leadcal score`: bad options are one clear line before anything is read; the CSV output is formula-safe."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from pipeline import spreadsheet
from pipeline.cli import main
from pipeline.commands.score import check_options, score
from pipeline.errors import LeadcalError
from pipeline.params import Params

REPO = Path(__file__).resolve().parents[1]


def _score(tmp_path: Path, *options: str) -> int:
    """`leadcal score` on an empty folder with no model: options must be refused before either is looked at."""
    (tmp_path / "input").mkdir(exist_ok=True)
    argv = ["--params", str(REPO / "params.yaml"), "score", str(tmp_path / "input"), "--models", str(tmp_path / "none"),
            *options]
    return main(argv)


@pytest.mark.parametrize("size", ["-5", "0"])
def test_batch_size_must_be_positive(tmp_path: Path, size: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = _score(tmp_path, "--out", str(tmp_path / "scored.csv"), "--batch-size", size)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("leadcal score: error: --batch-size must be a positive whole number") and size in err
    assert not (tmp_path / "scored.csv").exists()


def test_a_usage_error_is_one_line_not_the_whole_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """argparse prints the usage block before its error; leadcal's errors are one line, and a usage
    error exits 64 (EX_USAGE), not 2 as a data error does."""
    with pytest.raises(SystemExit) as stopped:
        _score(tmp_path, "--out", str(tmp_path / "scored.csv"), "--batch-size", "abc")
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 64 and len(err.splitlines()) == 1, err
    assert err == "leadcal score: error: argument --batch-size: invalid int value: 'abc' (see `leadcal score --help`)"


@pytest.mark.parametrize("name, expected", [
    ("folder", "is a folder"),
    ("scored.xlsx", "must be a file ending in .csv or .parquet, not .xlsx"),
    ("scored", "must be a file ending in .csv or .parquet"),
])
def test_out_must_be_a_csv_or_parquet_file(tmp_path: Path, name: str, expected: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "folder").mkdir()
    code = _score(tmp_path, "--out", str(tmp_path / name))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"leadcal score: error: --out {tmp_path / name}: ") and expected in err
    assert not (tmp_path / "scored.xlsx").exists()


def test_out_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(LeadcalError, match="file.txt is a file, not a folder"):
        check_options(tmp_path / "file.txt" / "scored.csv", 10)


@pytest.mark.parametrize("size", [1.5, "10", True, None])
def test_batch_size_must_be_a_whole_number(tmp_path: Path, size: object) -> None:
    with pytest.raises(LeadcalError, match="--batch-size"):
        check_options(tmp_path / "scored.csv", size)


def test_good_options_pass(tmp_path: Path) -> None:
    for name in ("scored.csv", "scored.parquet", "SCORED.CSV", "new/sub/scored.csv"):
        check_options(tmp_path / name, 1)


def test_lead_ids_that_look_like_formulas_are_escaped_in_the_csv(default_run: Params, tmp_path: Path) -> None:
    leads = pd.read_csv(default_run.paths.raw / "leads.csv").iloc[2000:2012].copy()
    activities = pd.read_csv(default_run.paths.raw / "activities.csv")
    activities = activities[activities["lead_id"].isin(leads["lead_id"])].copy()
    renamed = dict(zip(leads["lead_id"].iloc[:3], ["=1+2", '=HYPERLINK("http://x","y")', "@cmd"]))
    leads["lead_id"] = leads["lead_id"].replace(renamed)
    activities["lead_id"] = activities["lead_id"].replace(renamed)
    folder = tmp_path / "input"
    folder.mkdir()
    leads.to_csv(folder / "leads.csv", index=False)
    activities.to_csv(folder / "activities.csv", index=False)
    result = score(folder, tmp_path / "scored.csv", default_run)
    assert set(renamed.values()) <= set(result["lead_id"])
    rows = list(csv.reader((tmp_path / "scored.csv").open(newline="", encoding="utf-8")))
    header = rows[0]
    text = [header.index(c) for c in ("lead_id", "grade", "top_reasons", "scored_as_of")]
    assert all(not row[i].startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows[1:] for i in text)
    assert "'=1+2" in [row[0] for row in rows]
    back = spreadsheet.read_csv(tmp_path / "scored.csv")
    assert list(back["lead_id"]) == list(result["lead_id"])
    assert (back["total_points"] == result["total_points"]).all()  # numbers (negative ones too) untouched


def test_keep_copies_the_crms_ids_beside_each_score(default_run: Params, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`--keep "E-mail,hs_object_id"`: the input's own columns, matched per lead, as text (a long id
    with leading zeros is not rounded), so the scores can be written back to the CRM's contacts."""
    leads = pd.read_csv(default_run.paths.raw / "leads.csv").iloc[2000:2012].copy()
    activities = pd.read_csv(default_run.paths.raw / "activities.csv")
    leads["E-mail "] = [f"person{k}@example.com" for k in range(len(leads))]
    leads["hs_object_id"] = [f"000{9007199254740993 + k}" for k in range(len(leads))]  # above 2**53
    folder = tmp_path / "input"
    folder.mkdir()
    leads.to_csv(folder / "leads.csv", index=False)
    activities[activities["lead_id"].isin(leads["lead_id"])].to_csv(folder / "activities.csv", index=False)
    out = tmp_path / "scored.csv"
    argv = ["-q", "--params", str(REPO / "params.yaml"), "score", str(folder), "--out", str(out),
            "--models", str(default_run.paths.models), "--keep", "e-mail, HS_OBJECT_ID"]
    assert main(argv) == 0
    scored = pd.read_csv(out, dtype=str)
    assert list(scored.columns[:3]) == ["lead_id", "e-mail", "HS_OBJECT_ID"]
    expected = leads.set_index("lead_id")
    for row in scored.itertuples(index=False):
        assert row[1] == expected.loc[row.lead_id, "E-mail "]
        assert row[2] == expected.loc[row.lead_id, "hs_object_id"]
    capsys.readouterr()

    assert main([*argv[:-1], "email"]) == 2  # a column the export does not have: one line naming what it has
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--keep email: no such column in the leads" in err and "e-mail" in err
    assert main([*argv[:-1], "grade"]) == 2  # would shadow an output column
    assert "already an output column" in capsys.readouterr().err
