"""Model files: byte-reproducible, and never able to run code when loaded."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier

from pipeline.errors import LeadcalError
from pipeline.stages.model import load_model, model_bytes


class Payload:
    """Stands for an object someone smuggles into a model file."""

    def __reduce__(self):  # what pickle would execute
        return (print, ("code ran",))


def _fitted(seed: int = 0) -> HistGradientBoostingClassifier:
    rng = np.random.default_rng(seed)
    X = rng.random((300, 4))
    return HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, X[:, 0] > 0.5)


def test_same_model_gives_same_bytes_and_round_trips(tmp_path: Path) -> None:
    model = _fitted()
    first, second = model_bytes({"base": model, "calibrator": None}), model_bytes({"base": _fitted(), "calibrator": None})
    assert first == second  # skops alone embeds object ids and times: these are renumbered/fixed
    path = tmp_path / "model.skops"
    path.write_bytes(first)
    X = np.random.default_rng(1).random((50, 4))
    assert np.array_equal(load_model(path)["base"].predict_proba(X), model.predict_proba(X))


def test_model_bytes_do_not_depend_on_the_thread_count() -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        one = model_bytes({"base": _fitted(), "calibrator": None})
    with threadpool_limits(2):
        two = model_bytes({"base": _fitted(), "calibrator": None})
    assert one == two


def test_a_file_with_untrusted_types_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    sio.dump({"model": _fitted(), "extra": Payload()}, path)
    with pytest.raises(LeadcalError, match=r"refuses to load.*Payload"):
        load_model(path)


def test_a_pickle_is_refused_without_being_unpickled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(LeadcalError, match="not a leadcal model file"):
        load_model(path)
    assert "code ran" not in capsys.readouterr().out


def test_missing_model_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(LeadcalError, match="dvc repro"):
        load_model(tmp_path / "absent.skops")


# --------------------------------------------------------------------------- size caps, structure, description

def _description(model: object, features: list[str], **changes: object) -> dict:
    """A model.json that describes `model` (as pipeline.stages.model.run writes it), with some keys replaced."""
    from pipeline.stages.model import SCHEMA_VERSION

    description = {
        "format": "skops",
        "schema": {"version": SCHEMA_VERSION, "model_type": "hgb", "fit_attributes": ["industry"],
                   "numeric_bins": {"company_size": [1, 11]}, "snapshot_days": [0, 7, 30], "horizon_days": 90,
                   "activities": ["demo_request"], "frequency": [], "recency_days": [7], "half_life_days": None},
        "features": features,
        "calibration": {"method": "none"},
        "grade_cutoffs": {"A": 0.3, "B": 0.2, "C": 0.1},
        "reference_fit_values": {},
    }
    description.update(changes)
    return description


def _models(tmp_path: Path, bundle: object, description: object) -> Path:
    import json

    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    (folder / "model.skops").write_bytes(sio.dumps(bundle) if not isinstance(bundle, bytes) else bundle)
    (folder / "model.json").write_text(json.dumps(description))
    return folder


FEATURES = ["a", "b", "c", "d"]


def _fitted_frame() -> HistGradientBoostingClassifier:
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((300, 4)), columns=FEATURES)
    return HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, (X["a"] > 0.5).astype(int))


def test_a_well_formed_pair_loads(tmp_path: Path) -> None:
    from pipeline.stages.model import read_model

    model = _fitted_frame()
    loaded, description = read_model(_models(tmp_path, model_bytes({"base": model, "calibrator": None}),
                                             _description(model, FEATURES)))
    assert isinstance(loaded.base_, HistGradientBoostingClassifier) and description["features"] == FEATURES


def test_dev_zero_is_refused_without_being_read(tmp_path: Path) -> None:
    from pipeline.stages.model import read_model

    with pytest.raises(LeadcalError, match=r"^/dev/zero: is a character device, not a model file"):
        load_model("/dev/zero")
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model.skops").symlink_to("/dev/zero")
    with pytest.raises(LeadcalError, match=r"model.skops: is a character device"):
        read_model(folder)
    (folder / "model.skops").unlink()
    model = _fitted_frame()
    _models(tmp_path, model_bytes({"base": model, "calibrator": None}), {})
    (folder / "model.json").unlink()
    (folder / "model.json").symlink_to("/dev/zero")
    with pytest.raises(LeadcalError, match=r"model.json: is a character device, not a model description"):
        read_model(folder)


def test_a_huge_file_is_refused_by_its_size(tmp_path: Path) -> None:
    import os

    from pipeline.stages.model import read_model

    path = tmp_path / "model.skops"
    with path.open("wb") as handle:  # sparse: takes no disk space
        handle.truncate(600 * 2**20)
    with pytest.raises(LeadcalError, match=r"model.skops: 629,145,600 bytes \(600.0 MiB\), larger than the 512 MiB"):
        load_model(path)
    model = _fitted_frame()
    folder = _models(tmp_path, model_bytes({"base": model, "calibrator": None}), {})
    os.truncate(folder / "model.json", 65 * 2**20)
    with pytest.raises(LeadcalError, match=r"model.json: .*\(65.0 MiB\), larger than the 64 MiB"):
        read_model(folder)


def test_a_file_that_would_unpack_too_large_is_refused(tmp_path: Path) -> None:
    from pipeline.model_file import check_archive

    path = tmp_path / "model.skops"
    path.write_bytes(model_bytes({"base": _fitted(), "calibrator": None}))
    with pytest.raises(LeadcalError, match=r"unpacks to .* more than the 0 MiB"):
        check_archive(path, limit=1000)


def test_a_folder_is_not_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(LeadcalError, match="is a folder, not a model file"):
        load_model(tmp_path)


@pytest.mark.parametrize("content, message", [
    ({"a": 1}, r"the bundle has keys \['a'\], expected \['base', 'calibrator'\]"),
    ([1, 2], r"the file holds a list, expected a bundle"),
    ("text", r"the file holds a str"),
    ("estimator", r"the file holds a HistGradientBoostingClassifier, expected a bundle"),
    ("kmeans", r"the base model is a KMeans, expected LogisticRegression or HistGradientBoostingClassifier"),
    ("unfitted", r"the base LogisticRegression is not fitted"),
    ("bad calibrator", r"the calibrator is a KMeans"),
])
def test_allowed_types_in_the_wrong_structure_are_one_clear_error(tmp_path: Path, content: object, message: str) -> None:
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression

    kmeans = KMeans(n_clusters=2, n_init=1, random_state=0).fit(np.random.default_rng(0).random((20, 2)))
    content = {
        "estimator": _fitted(),
        "kmeans": {"base": kmeans, "calibrator": None},
        "unfitted": {"base": LogisticRegression(), "calibrator": None},
        "bad calibrator": {"base": _fitted(), "calibrator": kmeans},
    }.get(content, content) if isinstance(content, str) else content
    path = tmp_path / "model.skops"
    sio.dump(content, path)
    with pytest.raises(LeadcalError, match=rf"model.skops: not a leadcal model: {message}"):
        load_model(path)


@pytest.mark.parametrize("description, message", [
    ({}, r"model.json: not a leadcal model description: missing format, schema, features, grade_cutoffs, "
         r"reference_fit_values; retrain"),
    ([], r"model.json: not a leadcal model description: expected a JSON object, found list"),
    ("wrong version", r"model.json: the model was saved with feature schema version 2, this leadcal reads version"),
    ("no version", r"model.json: the model was saved with feature schema version None"),
    ("bad features", r"model.json: not a leadcal model description: features is 'abcd', expected a non-empty list"),
    ("bad schema", r"missing schema.activities; schema.snapshot_days is '7', expected a non-empty list of whole days"),
    ("other model type", r"model.skops: holds a HistGradientBoostingClassifier, but .*model.json says model_type "
                         r"'logistic'"),
    ("other features", r"model.skops: the model takes 4 features, .*model.json lists 3"),
    ("renamed features", r"model.skops: the model's feature names differ"),
])
def test_a_wrong_description_is_one_clear_error(tmp_path: Path, description: object, message: str) -> None:
    from pipeline.stages.model import read_model

    model = _fitted_frame()
    good = _description(model, FEATURES)
    if isinstance(description, str):
        schema = dict(good["schema"])
        description = {
            "wrong version": lambda: _description(model, FEATURES, schema={**schema, "version": 2}),
            "no version": lambda: _description(model, FEATURES, schema={}),
            "bad features": lambda: _description(model, "abcd"),
            "bad schema": lambda: _description(model, FEATURES, schema={
                **{k: v for k, v in schema.items() if k != "activities"}, "snapshot_days": "7"}),
            "other model type": lambda: _description(model, FEATURES, schema={**schema, "model_type": "logistic"}),
            "other features": lambda: _description(model, FEATURES[:3]),
            "renamed features": lambda: _description(model, ["w", "x", "y", "z"]),
        }[description]()
    folder = _models(tmp_path, model_bytes({"base": model, "calibrator": None}), description)
    with pytest.raises(LeadcalError, match=message):
        read_model(folder)


def test_score_with_a_broken_description_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    from .conftest import REPO

    model = _fitted_frame()
    folder = _models(tmp_path, model_bytes({"base": model, "calibrator": None}), {})
    code = main(["--params", str(REPO / "params.yaml"), "score", str(tmp_path), "--out", str(tmp_path / "s.csv"),
                 "--models", str(folder)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("leadcal score: error: ") and "model.json: not a leadcal model description" in err
