"""Checks on the published model files, models/model.skops and models/model.json, before and after loading.

`leadcal score --models` can point at any folder, so the files may be anything: /dev/zero, a
huge file, a skops file of allowed types holding a plain dict or another estimator, a
`{}` description. Each is refused with one line naming the file and what is wrong, never a
traceback nor a read without end:

- before reading: the path must be a regular file (not a folder, device, FIFO or socket) of at
  most `MAX_MODEL_BYTES` (skops, also unpacked) or `MAX_DESCRIPTION_BYTES` (JSON). A leadcal
  model is a few MB; the caps are generous;
- after loading: the bundle must be {"base": a fitted LogisticRegression or
  HistGradientBoostingClassifier with two classes, "calibrator": None, a one-feature
  LogisticRegression or a fitted IsotonicRegression}; the description must hold the feature
  schema of this leadcal's version and the keys scoring uses, with their types; and the two
  must agree (model type, number and names of the features).

pipeline.stages.model.load_model / read_model call these.
"""

from __future__ import annotations

import math
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from pipeline import io
from pipeline.errors import LeadcalError

MiB = 2**20
MAX_MODEL_BYTES = 512 * MiB  # model.skops, on disk and unpacked (the sample's is well under 1 MiB)
MAX_DESCRIPTION_BYTES = 64 * MiB  # model.json (the sample's is a few kB)
MODEL_TYPES = {"logistic": LogisticRegression, "hgb": HistGradientBoostingClassifier}


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / MiB:,.1f} MiB)"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_file(path: Path, limit: int, what: str) -> None:
    """Refuse, before reading a byte, a `path` that is missing, not a regular file or larger than `limit`."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise LeadcalError(f"{path}: {what} not found (run `dvc repro` to train one)") from None
    except OSError as exc:
        raise LeadcalError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise LeadcalError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise LeadcalError(f"{path}: is {_kind(info.st_mode)}, not a {what} (a regular file is expected); not read")
    if info.st_size > limit:
        raise LeadcalError(f"{path}: {_size(info.st_size)}, larger than the {limit // MiB} MiB a {what} may have "
                           f"(a leadcal model is a few MB); not read")


def check_archive(path: Path, limit: int = MAX_MODEL_BYTES) -> None:
    """A skops file is a zip: refuse one that is not, or whose entries would unpack to more than `limit`."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise LeadcalError(f"{path}: not a leadcal model file (skops format expected): {exc}") from exc
    if unpacked > limit:
        raise LeadcalError(f"{path}: unpacks to {_size(unpacked)}, more than the {limit // MiB} MiB a model file may "
                           f"hold; not loaded")


def _fitted_binary(model: Any) -> bool:
    classes = getattr(model, "classes_", None)
    try:
        return classes is not None and sorted(np.asarray(classes).tolist()) == [0, 1]
    except TypeError:  # classes that do not compare
        return False


def check_bundle(bundle: Any, path: Path) -> None:
    """What pipeline.stages.model.model_bytes saved: {"base": a fitted classifier, "calibrator": None or a calibrator}."""
    prefix = f"{path}: not a leadcal model"
    if not isinstance(bundle, dict):
        raise LeadcalError(f"{prefix}: the file holds a {type(bundle).__name__}, expected a bundle "
                           f"{{'base': model, 'calibrator': calibrator}}")
    if set(bundle) != {"base", "calibrator"}:
        raise LeadcalError(f"{prefix}: the bundle has keys {sorted(map(str, bundle))}, expected ['base', 'calibrator']")
    base, calibrator = bundle["base"], bundle["calibrator"]
    if not isinstance(base, tuple(MODEL_TYPES.values())):
        raise LeadcalError(f"{prefix}: the base model is a {type(base).__name__}, expected LogisticRegression or "
                           f"HistGradientBoostingClassifier")
    n_features = getattr(base, "n_features_in_", None)
    if not _fitted_binary(base) or not isinstance(n_features, (int, np.integer)) or n_features < 1:
        raise LeadcalError(f"{prefix}: the base {type(base).__name__} is not fitted to two classes (closed or not)")
    if isinstance(base, LogisticRegression) and np.shape(getattr(base, "coef_", None)) != (1, n_features):
        raise LeadcalError(f"{prefix}: the base LogisticRegression's coefficients do not match its "
                           f"{n_features} features")
    if calibrator is None:
        return
    if isinstance(calibrator, IsotonicRegression):
        if getattr(calibrator, "X_thresholds_", None) is None:
            raise LeadcalError(f"{prefix}: the IsotonicRegression calibrator is not fitted")
    elif isinstance(calibrator, LogisticRegression):
        if not _fitted_binary(calibrator) or np.shape(getattr(calibrator, "coef_", None)) != (1, 1):
            raise LeadcalError(f"{prefix}: the LogisticRegression calibrator is not fitted on one score and two classes")
    else:
        raise LeadcalError(f"{prefix}: the calibrator is a {type(calibrator).__name__}, expected none, "
                           f"LogisticRegression (sigmoid) or IsotonicRegression")


# --------------------------------------------------------------------------- model.json

def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _texts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _wholes(v: Any) -> bool:
    return isinstance(v, list) and all(_whole(x) for x in v)


def _frequency(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(s, dict) and isinstance(s.get("activity"), str) and _whole(s.get("min_count"))
        and _whole(s.get("window_days")) for s in v)


Check = tuple[Callable[[Any], bool], str]
SCHEMA_FIELDS: dict[str, Check] = {
    "model_type": (lambda v: v in MODEL_TYPES, f"one of {sorted(MODEL_TYPES)}"),
    "fit_attributes": (_texts, "a list of attribute names"),
    "numeric_bins": (lambda v: isinstance(v, dict) and all(isinstance(e, list) and all(_number(x) for x in e)
                                                           for e in v.values()), "an object of attribute: [band edges]"),
    "snapshot_days": (lambda v: _wholes(v) and len(v) > 0, "a non-empty list of whole days"),
    "horizon_days": (_whole, "a whole number of days"),
    "activities": (_texts, "a list of activity names"),
    "frequency": (_frequency, "a list of {activity, min_count, window_days}"),
    "recency_days": (_wholes, "a list of whole days"),
    "half_life_days": (lambda v: v is None or (_number(v) and v > 0), "a positive number of days or null"),
}
DESCRIPTION_FIELDS: dict[str, Check] = {
    "format": (lambda v: v == "skops", "'skops'"),
    "schema": (lambda v: isinstance(v, dict), "an object (the feature schema)"),
    "features": (lambda v: _texts(v) and len(v) > 0 and len(set(v)) == len(v), "a non-empty list of distinct column names"),
    "grade_cutoffs": (lambda v: isinstance(v, dict) and all(_number(v.get(k)) for k in "ABC"),
                      "an object with numbers A, B and C"),
    "reference_fit_values": (lambda v: isinstance(v, dict) and all(
        isinstance(g, dict) and all(_number(x) for x in g.values()) for g in v.values()),
        "an object of attribute: {signal: share}"),
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problems(payload: dict, fields: dict[str, Check], where: str = "") -> list[str]:
    missing = [key for key in fields if key not in payload]
    problems = [f"missing {', '.join(where + k for k in missing)}"] if missing else []
    problems += [f"{where}{key} is {_shown(payload[key])}, expected {expected}"
                 for key, (valid, expected) in fields.items() if key in payload and not valid(payload[key])]
    return problems


def check_description(description: Any, path: Path, schema_version: int) -> None:
    """model.json: the keys and types `leadcal score` relies on, and this leadcal's feature schema version."""
    prefix = f"{path}: not a leadcal model description"
    if not isinstance(description, dict):
        raise LeadcalError(f"{prefix}: expected a JSON object, found {type(description).__name__} "
                           f"{_shown(description)}")
    problems = _problems(description, DESCRIPTION_FIELDS)
    schema = description.get("schema")
    if isinstance(schema, dict):
        version = schema.get("version")
        if version != schema_version:
            raise LeadcalError(
                f"{path}: the model was saved with feature schema version {_shown(version)}, this leadcal reads "
                f"version {schema_version}; retrain it with `dvc repro`")
        problems += _problems(schema, SCHEMA_FIELDS, "schema.")
    if problems:
        raise LeadcalError(f"{prefix}: {'; '.join(problems)}; retrain it with `dvc repro`")


def read_description(path: Path, schema_version: int) -> dict:
    """model.json, size-capped before reading and checked after (`check_description`)."""
    check_file(path, MAX_DESCRIPTION_BYTES, "model description")
    try:
        description = io.read_json(path)
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:  # io.read_json reports broken JSON itself
        raise LeadcalError(f"{path}: not a leadcal model description: not readable as JSON text "
                           f"({type(exc).__name__})") from exc
    check_description(description, path, schema_version)
    return description


def check_pair(bundle: dict, description: dict, model_path: Path, description_path: Path) -> None:
    """The model file and its description must describe the same model."""
    base, schema, features = bundle["base"], description["schema"], description["features"]
    expected = MODEL_TYPES[schema["model_type"]]
    if not isinstance(base, expected):
        raise LeadcalError(f"{model_path}: holds a {type(base).__name__}, but {description_path} says model_type "
                           f"{schema['model_type']!r} ({expected.__name__}); the two files are not from the same run")
    if int(base.n_features_in_) != len(features):
        raise LeadcalError(f"{model_path}: the model takes {int(base.n_features_in_)} features, {description_path} "
                           f"lists {len(features)}; the two files are not from the same run")
    names = getattr(base, "feature_names_in_", None)
    if names is not None and [str(n) for n in names] != list(features):
        raise LeadcalError(f"{model_path}: the model's feature names differ from the features {description_path} "
                           f"lists; the two files are not from the same run")
