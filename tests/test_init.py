"""`leadcal init EXPORT`: the profile of an export and the starter params file written from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.commands.init import init, nice, propose_edges
from pipeline.errors import LeadcalError
from pipeline.params import load_params


def leads_export(n: int = 600, seed: int = 7) -> pd.DataFrame:
    """A small export shaped like the online-course 'Leads' sheet, with two planted leaks:
    `Tags` (filled for 90 % of converted leads, 25 % of the others; 'Closed by Horizzon' only
    on converted ones) and `Lead Quality` (filled after contact, mostly for converted leads,
    its values spread evenly over both outcomes: only the fill rate gives it away)."""
    rng = np.random.default_rng(seed)
    won = rng.random(n) < 0.38

    def pick(values: list[str], p: list[float] | None = None) -> np.ndarray:
        return rng.choice(values, n, p=p)

    visits = rng.poisson(3, n).astype(object)
    visits[rng.random(n) < 0.05] = ""
    seconds = np.where(rng.random(n) < 0.25, 0, (rng.exponential(500, n) * (1 + won)).astype(int))
    tags = np.where(won, np.where(rng.random(n) < 0.5, "Closed by Horizzon", "Will revert after reading the email"),
                    pick(["Ringing", "Interested in other courses", "Already a student"]))
    tags = np.where(rng.random(n) < np.where(won, 0.9, 0.25), tags, "")
    quality = np.where(rng.random(n) < np.where(won, 0.8, 0.2), pick(["High in Relevance", "Might be", "Not Sure"]), "")
    return pd.DataFrame({
        "Prospect ID": [f"{i:04x}-a1b2-{i * 7919 % 10000:04d}" for i in range(n)],
        "Lead Number": 660000 + np.arange(n) * 3,
        "Lead Origin": pick(["Landing Page Submission", "API", "Lead Add Form"], [0.5, 0.4, 0.1]),
        "Lead Source": pick(["Google", "Direct Traffic", "Olark Chat", "Organic Search"]),
        "Do Not Email": np.where(rng.random(n) < 0.15, "Yes", "No"),
        "Converted": won.astype(int).astype(str),
        "TotalVisits": visits,
        "Total Time Spent on Website": seconds,
        "Page Views Per Visit": np.round(rng.gamma(2, 1.2, n), 2),
        "Last Activity": pick(["Email Opened", "SMS Sent", "Page Visited on Website", "Olark Chat Conversation"]),
        "Country": np.where(rng.random(n) < 0.2, "", pick(["India", "United States", "NA", "unknown"],
                                                             [0.75, 0.19, 0.05, 0.01])),
        "Specialization": pick(["Select", "Finance Management", "Marketing Management", "IT Projects Management"]),
        "City": pick(["Select", "Mumbai", "Thane & Outskirts", "Other Cities"]),
        "Tags": tags,
        "Lead Quality": quality,
        "Magazine": "No",
        "Notes": [f"called on day {i}, said {rng.integers(1000)}" for i in range(n)],
    })


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """The export in data/leads.csv, the params written to config/params.init.yaml, the result."""
    root = tmp_path_factory.mktemp("init")
    export = root / "data" / "leads.csv"
    export.parent.mkdir()
    leads_export().to_csv(export, index=False)
    out = root / "config" / "params.init.yaml"
    return export, out, init(export, out)


def _raw(out: Path) -> dict:
    return yaml.safe_load(out.read_text(encoding="utf-8"))


def _wide(out: Path) -> dict[str, dict]:
    return {a["column"]: a for a in _raw(out)["source"]["wide"]["activities"]}


def test_the_written_file_is_valid_params(written: tuple) -> None:
    _, out, _ = written
    params = load_params(out)
    assert params.source.leads is not None and params.source.leads.columns == {"lead_id": "prospect id"}


def test_paths_are_relative_to_the_params_file(written: tuple) -> None:
    export, out, _ = written
    raw = _raw(out)
    assert raw["paths"]["raw"] == "../data"
    assert (out.parent / raw["paths"]["raw"] / raw["source"]["leads"]["path"]).resolve() == export.resolve()
    assert raw["paths"]["extracted"] == "data/extracted" and raw["paths"]["models"] == "models"


def test_the_outcome_column_and_its_won_and_lost_values_are_found(written: tuple) -> None:
    _, out, result = written
    outcome = load_params(out).source.outcome
    assert outcome is not None and outcome.column == "converted"
    assert outcome.won == ["1"] and outcome.lost == ["0"]
    assert result.profile.won + result.profile.lost == 600


def test_each_column_gets_the_kind_its_values_show(written: tuple) -> None:
    _, out, _ = written
    wide = _wide(out)
    assert wide["totalvisits"]["kind"] == "count"  # whole numbers with blanks
    assert wide["do not email"]["kind"] == "flag"  # Yes/No
    assert wide["last activity"]["kind"] == "category" and "activity" not in wide["last activity"]
    assert wide["page views per visit"]["kind"] == "number"  # fractions
    assert wide["total time spent on website"]["kind"] == "number"  # whole, but up to thousands of seconds


def test_a_number_column_gets_valid_increasing_edges(written: tuple) -> None:
    export, out, _ = written
    params = load_params(out)
    name = "page_views_per_visit"
    assert name in params.signals.fit_attributes
    edges = params.signals.numeric_bins[name]
    assert len(edges) >= 2 and all(b > a for a, b in zip(edges, edges[1:]))
    values = pd.read_csv(export)["Page Views Per Visit"].dropna().to_numpy()
    assert edges[0] <= values.min()
    bands = np.searchsorted(edges, values, side="right")
    assert np.bincount(bands, minlength=len(edges) + 1)[1:].min() >= 30  # every band holds min_support leads
    assert all(e == nice(e) for e in edges[1:])  # two significant digits: edges a marketer reads


def test_select_is_proposed_as_missing_but_a_country_code_is_not(written: tuple) -> None:
    _, out, _ = written
    assert load_params(out).source.missing_values == ["Select"]
    text = out.read_text(encoding="utf-8")
    assert '"specialization"' in text.split('- "Select"')[1].splitlines()[0]  # where it was seen
    assert 'kept as a value: "unknown"' in text  # one column only: left to the user
    assert '"NA"' not in text.split("signals:")[0].split("missing_values")[1].split("wide:")[0]


def test_planted_leaks_are_suspects_and_not_mapped(written: tuple) -> None:
    _, out, result = written
    suspects = {c.name: c.leak for c in result.profile.suspects}
    assert set(suspects) == {"tags", "lead quality"}  # and no honest signal, e.g. time on website
    assert '"closed by horizzon" closes' in suspects["tags"] and "(100 %)" in suspects["tags"]
    assert "filled for" in suspects["lead quality"] and "closes" not in suspects["lead quality"]
    params = load_params(out)
    mapped = set(params.signals.fit_attributes) | {a.column for a in params.source.wide.activities}
    assert not mapped & {"tags", "lead quality"}
    text = out.read_text(encoding="utf-8")
    assert '# - "tags"' in text and "leakage suspect, not mapped" in text
    assert "tags" in result.summary and "leakage suspects" in result.summary


def test_id_like_and_useless_columns_are_not_mapped(written: tuple) -> None:
    _, out, _ = written
    params = load_params(out)
    mapped = set(params.signals.fit_attributes) | {a.column for a in params.source.wide.activities}
    assert not mapped & {"lead number", "prospect id", "magazine", "notes", "converted"}
    text = out.read_text(encoding="utf-8")
    assert '"lead number": id-like' in text and '"magazine": one value only' in text
    assert set(params.signals.fit_attributes) >= {"lead origin", "lead source", "country", "specialization", "city"}


def test_same_export_same_bytes(written: tuple) -> None:
    export, out, _ = written
    before = out.read_bytes()
    init(export, out, force=True)
    assert out.read_bytes() == before


def test_the_cli_refuses_to_overwrite_without_force(written: tuple, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    export, _, _ = written
    out = tmp_path / "params.init.yaml"
    out.write_text("mine\n")
    assert main(["init", str(export), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "mine\n"
    assert main(["init", str(export), "--out", str(out), "--force"]) == 0
    stdout = capsys.readouterr().out
    assert f"leadcal run --config {out}" in stdout and "tags" in stdout
    load_params(out)


def test_the_cli_default_output_is_params_init_yaml(written: tuple, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    export, _, _ = written
    monkeypatch.chdir(tmp_path)
    assert main(["init", str(export)]) == 0
    assert load_params(tmp_path / "params.init.yaml").source.outcome is not None


def test_a_missing_export_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert "leadcal init: error:" in err and "nope.csv" in err and "Traceback" not in err


def test_without_an_outcome_the_file_says_what_to_add(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "leads.csv"
    leads_export(300).drop(columns=["Converted"]).to_csv(export, index=False)
    out = tmp_path / "p.yaml"
    assert main(["init", str(export), "--out", str(out)]) == 0
    assert "no outcome column found" in capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert "# TODO outcome" in text
    with pytest.raises(LeadcalError, match="no outcomes"):  # fails at once, saying what is missing
        load_params(out)


def test_a_creation_date_is_mapped_and_other_dates_listed(tmp_path: Path) -> None:
    frame = leads_export(300)
    days = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(300) % 200, unit="D")
    frame.insert(1, "Created On", days.strftime("%d/%m/%Y"))  # day first: 13/01/2024 rules out month first
    frame["Last Login"] = (days + pd.Timedelta(days=3)).strftime("%Y-%m-%d")
    export = tmp_path / "leads.csv"
    frame.to_csv(export, index=False)
    out = tmp_path / "p.yaml"
    init(export, out)
    params = load_params(out)
    assert params.source.leads is not None
    assert params.source.leads.columns == {"lead_id": "prospect id", "created_at": "created on"}
    assert params.source.leads.date_format == "%d/%m/%Y"
    assert '"last login": dates, 2024-01-04 .. ' in out.read_text(encoding="utf-8")
    assert "last login" not in {a.column for a in params.source.wide.activities}


def test_a_folder_in_leadcals_own_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 400
    folder = tmp_path / "export"
    folder.mkdir()
    ids = [f"L{i:05d}" for i in range(n)]
    won = rng.random(n) < 0.2
    pd.DataFrame({
        "lead_id": ids,
        "created_at": (pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="h"))
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "industry": rng.choice(["software", "retail", "education"], n),
        "company_size": rng.integers(1, 5000, n),
        "email": [f"person{i}@example.com" for i in range(n)],
        "deal_owner": np.where(won, rng.choice(["Ann", "Bob"], n), ""),  # filled once sales won the lead
    }).to_csv(folder / "leads.csv", index=False)
    pd.DataFrame({"lead_id": ids, "activity": "page_view",
                  "occurred_at": "2024-06-01T00:00:00Z"}).to_csv(folder / "activities.csv", index=False)
    pd.DataFrame({"lead_id": np.array(ids)[won], "stage": "customer",
                  "entered_at": "2024-07-01T00:00:00Z"}).to_csv(folder / "stages.csv", index=False)
    out = tmp_path / "conf" / "params.init.yaml"
    result = init(folder, out)
    params = load_params(out)
    assert params.source.leads is None
    assert (out.parent / _raw(out)["paths"]["raw"]).resolve() == folder.resolve()
    assert params.signals.fit_attributes == ["industry", "company_size"]
    assert len(params.signals.numeric_bins["company_size"]) >= 2
    assert [c.name for c in result.profile.suspects] == ["deal_owner"]


def test_a_folder_of_export_files_is_read_as_one_table(tmp_path: Path) -> None:
    frame = leads_export(400)
    folder = tmp_path / "monthly"
    folder.mkdir()
    frame.iloc[:200].to_csv(folder / "2024-01.csv", index=False)
    frame.iloc[200:].to_csv(folder / "2024-02.csv", index=False)
    out = tmp_path / "p.yaml"
    result = init(folder, out)
    raw = _raw(out)
    assert raw["paths"]["raw"] == "." and raw["source"]["leads"]["path"] == "monthly"
    assert result.profile.rows == 400 and load_params(out).source.outcome is not None


def test_proposed_edges_hold_enough_leads_on_skewed_data() -> None:
    values = np.concatenate([np.zeros(500), np.random.default_rng(1).lognormal(5, 1.5, 1500)])
    edges = propose_edges(values, min_support=30)
    assert edges[0] == 0 and all(b > a for a, b in zip(edges, edges[1:]))
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)[1:]
    assert counts.min() >= 30
    few = propose_edges(np.array([1.0] * 20 + [2.0] * 5), min_support=30)  # too few leads for two bands
    assert len(few) >= 2 and all(b > a for a, b in zip(few, few[1:])) and few[0] <= 1


def test_a_status_column_with_open_leads_is_read_as_won_and_lost() -> None:
    frame = pd.DataFrame({"Deal Status": ["Won", "Lost", "Open", "lost", None] * 20,
                          "Stage Count": ["1", "2", "3", "4", "5"] * 20})
    from pipeline.commands.init import blank, find_outcome

    outcome = find_outcome(blank(frame.rename(columns=str.lower), []))
    assert outcome is not None and outcome.column == "deal status"
    assert outcome.won == ["won"] and outcome.lost == ["lost"]  # 'open' and blank: still open, in neither list
    assert '"open" (20) = still open' in outcome.note
