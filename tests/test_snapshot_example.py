"""The snapshot example end to end, as a new user runs it: the generator's one-row-per-lead
export, `leadcal init` on it, `leadcal run --config` on what init wrote, no edit in between.

Judged against independent computations on the sheet itself: close rates counted with pandas,
the planted leaky column flagged and left out, and the model's AUC against a one-hot logistic
regression fitted on the same random folds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder

from pipeline import io
from pipeline.cli import main
from pipeline.params import load_params, snake_name

LEADS = 10_000


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's folder after `generate --one-row-per-lead`, `init` and `run --config`."""
    root = tmp_path_factory.mktemp("snapshot_example")
    assert main(["--config", str(Path(__file__).parents[1] / "params.yaml"), "generate", "--one-row-per-lead",
                 str(root / "raw" / "leads.csv"), "--leads", str(LEADS)]) == 0
    assert main(["init", str(root / "raw" / "leads.csv"), "--out", str(root / "params.yaml")]) == 0
    assert main(["-q", "run", "--config", str(root / "params.yaml")]) == 0
    return root


def _sheet(root: Path) -> pd.DataFrame:
    sheet = pd.read_csv(root / "raw" / "leads.csv", dtype=str, keep_default_na=False)
    sheet.columns = [c.strip().lower() for c in sheet.columns]
    return sheet


def test_init_leaves_the_leaky_column_out(example: Path) -> None:
    text = (example / "params.yaml").read_text()
    params = load_params(example / "params.yaml")
    assert "tags" not in params.signals.fit_attributes
    assert all(spec.column != "tags" for spec in params.source.wide.activities)
    assert "leakage suspect" in text and '"tags"' in text


def test_close_rates_match_a_pandas_count_of_the_sheet(example: Path) -> None:
    params = load_params(example / "params.yaml")
    sheet = _sheet(example)
    won = sheet["converted"] == "1"
    rates = io.read_csv(example / "models" / "close_rates.csv").set_index("signal")
    checked = 0
    for attribute in params.signals.fit_attributes:
        if attribute in params.signals.numeric_bins:
            continue
        values = sheet[attribute].str.strip().str.lower()
        for value in values[(values != "") & (values != "select")].unique():
            signal = f"{attribute} = {value}"
            if signal in rates.index:
                assert rates.loc[signal, "leads"] == (values == value).sum(), signal
                assert rates.loc[signal, "customers"] == (won & (values == value)).sum(), signal
                checked += 1
    for spec in params.source.wide.activities:
        if spec.kind == "count":
            did = pd.to_numeric(sheet[spec.column].replace("", "0")) > 0
            signal = snake_name(spec.activity)
            assert rates.loc[signal, "leads"] == did.sum() and rates.loc[signal, "customers"] == (won & did).sum()
            checked += 1
    assert checked >= 20
    assert io.read_json(example / "models" / "metrics" / "close_rates.json")["average_close_rate"] == \
        pytest.approx(won.mean())


def test_every_output_says_random_folds(example: Path) -> None:
    assert "random folds" in io.read_json(example / "models" / "metrics" / "report.json")["validated_on"]
    assert "random folds" in (example / "models" / "model_card.md").read_text()
    assert "not on the future" in (example / "models" / "report" / "02_points_vs_model.html").read_text()
    assert io.read_json(example / "data" / "features" / "features_report.json")["mode"] == "snapshot"


def test_model_auc_matches_a_one_hot_logistic_regression(example: Path) -> None:
    """The same mapped columns, one-hot encoded (counts and bands as categories), one plain
    logistic regression per fold: leadcal's model should rank leads at least as well."""
    params = load_params(example / "params.yaml")
    features = io.read_parquet(example / "data" / "features" / "features.parquet").set_index("lead_id")
    sheet = _sheet(example).set_index("prospect id").loc[features.index]
    blank = sheet.replace({"select": "", "Select": ""})
    columns = [a for a in params.signals.fit_attributes if a not in params.signals.numeric_bins]
    columns += [spec.column for spec in params.source.wide.activities if spec.kind != "number"]
    table = blank[columns].copy()
    for spec in params.source.wide.activities:
        if spec.kind == "number":
            edges = params.signals.numeric_bins[snake_name(spec.activity)]
            numbers = pd.to_numeric(blank[spec.column].replace("", np.nan))
            table[spec.column] = np.where(numbers.isna(), -1, np.searchsorted(edges, numbers, side="right"))
    y = (sheet["converted"] == "1").to_numpy(dtype=int)
    fold = features["validation_fold"].to_numpy()
    aucs = []
    for k in np.unique(fold):
        encoder = OneHotEncoder(handle_unknown="ignore", min_frequency=params.signals.min_support)
        train = encoder.fit_transform(table[fold != k].astype(str))
        model = LogisticRegression(C=1.0, max_iter=2000).fit(train, y[fold != k])
        aucs.append(roc_auc_score(y[fold == k], model.predict_proba(encoder.transform(table[fold == k].astype(str)))[:, 1]))
    leadcal = io.read_json(example / "models" / "metrics" / "train.json")["model"]["mean"]["auc"]
    assert leadcal >= np.mean(aucs) - 0.01, (leadcal, aucs)
    assert leadcal > 0.7


def test_committed_example_is_what_init_writes(tmp_path: Path) -> None:
    """examples/snapshot/params.yaml is init's output on the example's export, only a header added:
    a change to init or to the generator that would change it shows here."""
    repo = Path(__file__).parents[1]
    export = tmp_path / "examples" / "snapshot" / "raw" / "leads.csv"
    assert main(["-q", "--config", str(repo / "params.yaml"), "generate", "--one-row-per-lead", str(export),
                 "--leads", "20000"]) == 0
    written = tmp_path / "examples" / "snapshot" / "params.yaml"
    assert main(["init", str(export), "--out", str(written)]) == 0
    committed = (repo / "examples" / "snapshot" / "params.yaml").read_text()
    body = written.read_text()
    assert committed[committed.index("\npaths:"):] == body[body.index("\npaths:"):]


def test_close_rates_on_spark_are_the_default_engines(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot export's training rows are a random fold, not months: Spark's executors, each
    seeing parts of one partition, hold out the fold the whole table holds out
    (pipeline.core.signals.SplitRule), even in parts of a few leads that lack that fold."""
    import shutil

    import yaml

    from pipeline.stages import close_rates

    pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install 'leadcal[spark]')")
    if shutil.which("java") is None:
        pytest.skip("no Java on this machine: Spark cannot start")
    settings = yaml.safe_load((example / "params.yaml").read_text())
    settings.update(engine="spark", spark={"master": "local[2]"})
    settings["paths"]["models"] = "models_spark"
    (example / "params_spark.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setattr(close_rates, "CHUNK_ROWS", 20)
    assert main(["-q", "--config", str(example / "params_spark.yaml"), "close-rates"]) == 0
    for name in ("close_rates.csv", "signals.json", "metrics/close_rates.json"):
        assert (example / "models_spark" / name).read_bytes() == (example / "models" / name).read_bytes(), name
    assert any(f["source"] == "discovered" for f in io.read_json(example / "models" / "signals.json")["frequency"])
