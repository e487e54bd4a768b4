"""Model files: byte-reproducible, and never able to run code when loaded."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier

from pipeline.errors import LeadcalError
from pipeline.model import load_model, model_bytes


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
