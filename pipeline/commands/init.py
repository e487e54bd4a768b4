"""`leadcal init EXPORT`: profile an export and write a commented starter params file.

Mapping a CRM export onto params.yaml by hand is where a first calibration goes wrong: a
count read as a category, a web form's 'Select' scored as an answer, a column sales fills
in after the deal ('Tags', 'Lead Quality') mapped as a signal, which then "predicts" the
outcome perfectly and makes the whole run worthless. This module reads the export once,
decides for every column what it most likely is, and writes a params file that runs as it
is and says, next to every mapping, the evidence it was chosen on, so a person can check it
in minutes instead of building it in hours.

The profiling functions are pure (a table in, findings out); reading the export and writing
the file happen only in `read_export` and `init`. The file is written as text (PyYAML cannot
write comments), with every string quoted as JSON, which is valid YAML, and its bytes depend
only on the export: same export, same file.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.leakage import MAX_CLOSE_RATE
from pipeline.core.stats import stratified_auc
from pipeline.data.sources import FALSE_WORDS, TRUE_WORDS, existing_table, read_path
from pipeline.errors import LeadcalError
from pipeline.params import Signals, snake_name

MIN_SUPPORT = Signals().min_support  # the default signals.min_support: fewer leads than this give no points
MAX_CATEGORIES = 50  # more distinct values than this: an id, free text, an e-mail or a name, not a category
MAX_COUNT = 1000  # a whole number above this is a measure (seconds, euros), not how many times something happened
NUMBER_BANDS = 5  # quantile bands proposed for a number column
LEAK_CLOSE_RATE = MAX_CLOSE_RATE  # the leakage screen's rule: a value holding MIN_SUPPORT decided leads that closes this often is the outcome in disguise
LEAK_AUC = 0.90  # out-of-fold AUC of a column used alone (per-value close rates as the score)
LEAK_RANK_AUC = 0.95  # in-sample AUC of a number's own ranking (monotone, so little overfitting)
LEAK_FILL_HIGH, LEAK_FILL_LOW = 0.70, 0.30  # filled for >= 70 % of one outcome and <= 30 % of the other
LEAK_FILL_RATIO = 3.0  # ... or filled 3x as often for one outcome (>= MIN_SUPPORT such leads, >= 20 % of them)
FOLDS = 5
DEFAULT_OUT = Path("params.init.yaml")

# Spellings of "no answer" proposed as source.missing_values when seen in two or more columns
# ('Select' at once: it is only ever a web form's unanswered drop-down). 'NA' is not one of
# them: it is Namibia's country code.
PLACEHOLDERS = ("select", "select one", "n/a", "-", "--", "none", "null", "(blank)", "unknown")
FLAG_WORDS = (TRUE_WORDS | FALSE_WORDS) - {""}

# Outcome columns, most telling name first; their values must read as won or lost.
OUTCOME_NAMES = ("converted", "conversion", "won", "is_won", "is_customer", "customer", "outcome", "status",
                 "result", "closed")
WON_WORDS = {"1", "true", "yes", "y", "won", "closed won", "closed_won", "win", "converted", "customer", "success"}
LOST_WORDS = {"0", "false", "no", "n", "lost", "closed lost", "closed_lost", "not converted", "not_converted",
              "unconverted", "failed", "failure"}
CREATED_NAMES = re.compile(r"(^|_)(created?|creation|createdate|createddate|signup|sign_up|added|registered|"
                           r"submitted|first_contact|first_seen|lead_date)(_|$)")
OUTCOME_DATE_NAMES = re.compile(r"(^|_)(converted|conversion|won|closed?|close_date|became_a_customer)(_|$)")
MEASURE_WORDS = {"score", "index", "rating", "rank", "age", "year", "years", "size", "amount", "revenue", "price",
                 "value", "percent", "pct", "ratio", "rate", "duration", "time", "seconds", "secs", "minutes", "mins",
                 "hours", "days", "spent", "per", "average", "avg"}
NOT_EVENT_WORDS = {"index", "score", "profile", "level", "rating"}
ID_WORDS = {"id", "uuid", "guid", "key"}
DATE_SHAPE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?"
                        r"\s*(Z|[+-]\d{2}:?\d{2}|UTC)?$")
DATE_FORMATS = tuple(f"{d}{t}" for d in ("%d/%m/%Y", "%m/%d/%Y", "%d-%m-%Y", "%m-%d-%Y", "%d.%m.%Y", "%Y/%m/%d")
                     for t in ("", " %H:%M", " %H:%M:%S"))


@dataclass
class Column:
    """What one export column was found to be, and why (the why becomes the file's comment)."""

    name: str
    kind: str  # count, flag, number, category (an activity), fit (a category attribute), date, skip
    note: str
    activity: str | None = None  # event or attribute name for wide activities
    edges: list[float] = field(default_factory=list)  # band edges of a number
    leak: str | None = None  # evidence when the column is a leakage suspect (then it is not mapped)


@dataclass
class Outcome:
    column: str
    won: list[str]
    lost: list[str]
    note: str


@dataclass
class Placeholder:
    spelling: str
    columns: dict[str, int]  # column -> cells
    proposed: bool


@dataclass
class Profile:
    """Everything `render` needs; built by `profile_leads` or `profile_contract`."""

    rows: int
    columns: list[Column]
    placeholders: list[Placeholder]
    lead_id: str | None
    lead_id_note: str
    outcome: Outcome | None
    created_at: str | None = None
    date_format: str | None = None  # strptime format of created_at / outcome date (None: ISO 8601)
    outcome_date: str | None = None
    won: int = 0
    lost: int = 0
    contract: bool = False  # the export is a folder in leadcal's own shape (leads, activities, stages)
    min_support: int = MIN_SUPPORT
    warnings: list[str] = field(default_factory=list)

    def mapped(self, *kinds: str) -> list[Column]:
        return [c for c in self.columns if c.kind in kinds and c.leak is None]

    @property
    def suspects(self) -> list[Column]:
        return [c for c in self.columns if c.leak is not None]

    @property
    def number_attributes(self) -> list[Column]:
        return self.mapped("number")


@dataclass
class InitResult:
    path: Path
    profile: Profile
    summary: str


# ---------------------------------------------------------------------------------------------
# small helpers


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(value: float) -> str:
    """0.993 -> '99.3 %', 0.92 -> '92 %'; never rounds a share that is not all (or none) to 100 % (0 %)."""
    text = f"{100 * value:.1f}"
    if 0 < value < 1 and text in ("0.0", "100.0"):
        text = f"{100 * value:.2g}" if value < 0.5 else "99.9+"
    return f"{text.removesuffix('.0')} %"


def _q(text: str) -> str:
    """A YAML scalar: JSON's double-quoted string is valid YAML, whatever the text holds."""
    return json.dumps(text, ensure_ascii=False)


def _shown(text: str, width: int = 40) -> str:
    """A cell value fit for a one-line comment."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= width else text[: width - 3] + "..."


def _number(value: float) -> str:
    """12.0 -> '12', 0.86 -> '0.86': edges as a person writes them."""
    return str(int(value)) if float(value).is_integer() else f"{value:.12g}"


def _3(value: float) -> float:
    """Three significant digits, for medians in comments."""
    return value if value == 0 else round(value, 2 - math.floor(math.log10(abs(value))))


def _text(values: pd.Series) -> pd.Series:
    """Cells as stripped text, blanks as <NA>."""
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def _examples(counts: pd.Series, limit: int = 3) -> str:
    top = counts.sort_values(ascending=False, kind="stable").head(limit)
    more = f", ... ({len(counts)} values)" if len(counts) > limit else ""
    return ", ".join(f"{_q(_shown(k, 30))} {_n(int(v))}" for k, v in top.items()) + more


def _value_counts(values: pd.Series) -> pd.Series:
    """Counts per value, most frequent first, ties in value order (deterministic)."""
    counts = values.dropna().value_counts()
    frame = counts.rename_axis("value").reset_index(name="n")
    frame = frame.sort_values(["n", "value"], ascending=[False, True], kind="stable")
    return pd.Series(frame["n"].to_numpy(), index=frame["value"].to_numpy())


def _tokens(name: str) -> set[str]:
    return set(snake_name(name).split("_"))


def out_of_fold_auc(groups: np.ndarray, y: np.ndarray, folds: int = FOLDS, prior_weight: float = 10.0) -> float:
    """AUC of a column used alone: each lead scored by its value's close rate on the other folds.

    Honest where an in-sample rate is not: with many small values, in-sample rates rank the
    very leads they were computed from and any mid-size category looks predictive. Rates are
    shrunk towards the average (`prior_weight` leads' worth), a value unseen elsewhere gets the
    average; folds are row positions modulo `folds`, so the result is deterministic.
    """
    fold = np.arange(len(y)) % folds
    prior = float(y.mean())
    score = np.full(len(y), prior)
    for f in range(folds):
        train, test = fold != f, fold == f
        stats = pd.DataFrame({"g": groups[train], "y": y[train]}).groupby("g")["y"].agg(["sum", "count"])
        rate = (stats["sum"] + prior * prior_weight) / (stats["count"] + prior_weight)
        score[test] = pd.Series(groups[test]).map(rate).fillna(prior).to_numpy(dtype=float)
    return stratified_auc(y, score)


def nice(value: float, down: bool = False) -> float:
    """Two significant digits (287 -> 290, 0.8571 -> 0.86, 1234 -> 1200): edges people read.
    `down` rounds towards minus infinity, so the first edge stays at or below the smallest value."""
    if value == 0 or not math.isfinite(value):
        return 0.0 if value == 0 else value
    exponent = math.floor(math.log10(abs(value))) - 1
    step = 10.0 ** exponent
    scaled = math.floor(value / step) if down else math.floor(value / step + 0.5)
    return float(round(scaled * step, max(0, -exponent)))


def propose_edges(values: np.ndarray, min_support: int = MIN_SUPPORT, bands: int = NUMBER_BANDS) -> list[float]:
    """Lower edges of about `bands` quantile bands, rounded to nice numbers, each holding at
    least `min_support` values where the data allows (a band with fewer leads gets no points).

    Always at least two strictly increasing edges (signals.numeric_bins requires it): the
    first at 0 (or, for negative values, at or below the smallest), so no lead falls below
    the first band.
    """
    values = np.sort(values[np.isfinite(values)])
    first = 0.0 if values[0] >= 0 else nice(float(values[0]), down=True)  # bands of a measure start at 0
    candidates = sorted({nice(float(q)) for q in np.quantile(values, [i / bands for i in range(1, bands)])})
    kept = [first]
    for edge in candidates:
        if edge > kept[-1] and np.sum((values >= kept[-1]) & (values < edge)) >= min_support:
            kept.append(edge)
    while len(kept) > 1 and np.sum(values >= kept[-1]) < min_support:
        kept.pop()
    if len(kept) < 2:  # too few leads for two supported bands: split at the median anyway
        median = nice(float(np.median(values)))
        above = values[values > first]
        kept = [first, median if median > first else float(above[0]) if len(above) else first + 1]
    return kept


def bands_of(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Band index of each value, as text for grouping ('(blank)' for missing)."""
    position = np.searchsorted(np.asarray(edges, dtype=float), values, side="right")
    return np.where(np.isnan(values), "(blank)", position.astype(str))


# ---------------------------------------------------------------------------------------------
# profiling (pure)


def find_placeholders(frame: pd.DataFrame) -> list[Placeholder]:
    """Cells spelling 'no answer', per spelling and column; proposed when seen in 2+ columns or 'Select'."""
    seen: dict[str, dict[str, int]] = {}  # word -> column -> cells
    spellings: dict[str, dict[str, int]] = {}  # word -> spelling -> cells
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_datetime64_any_dtype(frame[column]):
            continue
        text = _text(frame[column])
        hit = text.str.lower().isin(PLACEHOLDERS).fillna(False)
        for spelling, count in text[hit].value_counts().items():
            word = spelling.lower()
            seen.setdefault(word, {})[column] = seen.get(word, {}).get(column, 0) + int(count)
            spellings.setdefault(word, {})[spelling] = int(count) + spellings.get(word, {}).get(spelling, 0)
    found = []
    for word in PLACEHOLDERS:  # in a fixed order, so the file's bytes do not depend on hashing
        if word in seen:
            spelling = min(spellings[word], key=lambda s: (-spellings[word][s], s))  # the commonest spelling
            found.append(Placeholder(spelling, seen[word], proposed=len(seen[word]) >= 2 or word == "select"))
    return found


def blank(frame: pd.DataFrame, placeholders: list[Placeholder]) -> pd.DataFrame:
    """Every column as stripped text, with the proposed placeholders blanked (as extract will)."""
    words = {p.spelling.lower() for p in placeholders if p.proposed}
    out = {}
    for column in frame.columns:
        text = _text(frame[column])
        out[column] = text.mask(text.str.lower().isin(words).fillna(False))
    return pd.DataFrame(out, index=frame.index)


def find_lead_id(frame: pd.DataFrame) -> tuple[str | None, str]:
    """The column identifying a lead: unique and never blank, id-named ones first."""
    candidates = []
    for position, column in enumerate(frame.columns):
        values = frame[column]
        if values.isna().any() or not values.is_unique:
            continue
        tokens = _tokens(column)
        rank = 0 if tokens & ID_WORDS else 1 if tokens & {"number", "no", "nr", "email", "e_mail"} else 2
        candidates.append((rank, position, column))
    if not candidates:
        return None, "no column holds a different, non-blank value on every row"
    column = min(candidates)[2]
    return column, f"unique on every one of the {_n(len(frame))} rows, e.g. {_q(_shown(frame[column].iloc[0], 30))}"


def _outcome_word(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else value


def find_outcome(frame: pd.DataFrame) -> Outcome | None:
    """A won/lost column: outcome-like name, 2..4 values of which some read as won and some as lost.
    Other values (Open, In progress) are leads still open, left out of both lists."""
    found = []
    for position, column in enumerate(frame.columns):
        snake = snake_name(column)
        tokens = set(snake.split("_"))
        ranks = [i for i, name in enumerate(OUTCOME_NAMES) if name == snake or name in tokens]
        if not ranks:
            continue
        counts = _value_counts(frame[column].str.lower())
        if not 2 <= len(counts) <= 4:
            continue
        won = [v for v in counts.index if _outcome_word(v) in WON_WORDS]
        lost = [v for v in counts.index if _outcome_word(v) in LOST_WORDS]
        if won and lost:
            found.append((min(ranks), position, column, counts, won, lost))
    if not found:
        return None
    _, _, column, counts, won, lost = min(found, key=lambda f: f[:2])
    n_won, n_lost = int(counts[won].sum()), int(counts[lost].sum())
    open_values = [v for v in counts.index if v not in won and v not in lost]
    note = (f"{' and '.join(_q(v) for v in won)} = won ({_n(n_won)} leads), "
            f"{' and '.join(_q(v) for v in lost)} = lost ({_n(n_lost)}); close rate {_pct(n_won / (n_won + n_lost))}")
    if open_values:
        note += f"; {', '.join(_q(v) for v in open_values)} ({_n(int(counts[open_values].sum()))}) = still open"
    blanks = int(frame[column].isna().sum())
    if blanks:
        note += f"; {_n(blanks)} blank = still open"
    return Outcome(column, won, lost, note)


def date_format_of(values: pd.Series) -> str | None | bool:
    """None: ISO 8601 dates; a strptime format: dates in that format; False: not dates.

    A column is dates when every filled cell parses with one format; the first 200 cells are
    tried first, so a column of names is rejected without parsing all of it.
    """
    filled = values.dropna()
    if filled.empty or not filled.head(200).str.match(DATE_SHAPE).all():
        return False
    if filled.str.match(DATE_SHAPE).all():
        if pd.to_datetime(filled, format="ISO8601", errors="coerce", utc=True).notna().all():
            return None
        for fmt in DATE_FORMATS:
            if pd.to_datetime(filled, format=fmt, errors="coerce").notna().all():
                return fmt
    return False


def _numbers(values: pd.Series) -> np.ndarray | None:
    """The column as floats (nan for blanks), or None when a filled cell is not a number."""
    numbers = pd.to_numeric(values, errors="coerce").astype("Float64")
    if (numbers.isna() & values.notna()).any():
        return None
    floats = numbers.to_numpy(dtype=float, na_value=np.nan)
    return None if np.isinf(floats).any() else floats


def classify(name: str, values: pd.Series, min_support: int = MIN_SUPPORT, contract: bool = False) -> Column:
    """What a column (stripped text, placeholders blanked) most likely is; see the module docstring.

    Wide exports: yes/no -> flag; whole numbers 0..1000 not named like a measure -> count (how
    many times); other numbers -> number (banded attribute); text naming an activity -> category
    (the value names the event); other text with 2..50 values -> fit attribute. In leadcal's
    own folder shape (`contract`), every usable lead column is a fit attribute.
    """
    filled = values.dropna()
    blanks = len(values) - len(filled)
    blank_note = f"; {_n(blanks)} blank" if blanks else ""
    counts = _value_counts(filled)
    if filled.empty:
        return Column(name, "skip", "always blank")
    if len(counts) == 1:
        return Column(name, "skip", f"one value only ({_q(_shown(counts.index[0], 30))}){blank_note}")
    if len(filled) < min_support:
        return Column(name, "skip", f"filled for only {_n(len(filled))} rows (< {min_support}: too few for a signal)")
    date_format = date_format_of(filled)
    if date_format is not False:
        dates = pd.to_datetime(filled, format=date_format or "ISO8601", utc=True)
        return Column(name, "date", f"dates, {dates.min().date()} .. {dates.max().date()}"
                                    f"{' (' + date_format + ')' if date_format else ''}{blank_note}")
    lower = filled.str.lower()
    if set(lower.unique()) <= FLAG_WORDS and lower.nunique() == 2:
        yes = int(lower.isin(TRUE_WORDS).sum())
        note = f"yes/no: {_examples(counts)}{blank_note}"
        if yes < min_support and not contract:
            return Column(name, "skip", f"{note}: only {_n(yes)} true (< {min_support}: too few for a signal)")
        if contract:
            return Column(name, "fit", note)
        return Column(name, "flag", note, activity=snake_name(name))
    numbers = _numbers(filled)
    if numbers is not None:
        return _classify_numbers(name, numbers, len(counts), blank_note, min_support, contract)
    if len(counts) > MAX_CATEGORIES:
        unique = " (unique on every row)" if len(counts) == len(filled) else ""
        return Column(name, "skip", f"{_n(len(counts))} distinct values{unique}: an id, free text, e-mail or name, "
                                    f"not a category; e.g. {_q(_shown(counts.index[0], 30))}")
    note = f"{_examples(counts)}{blank_note}"
    spellings = pd.Series(counts.index).groupby(pd.Series(counts.index).str.lower(), sort=True).agg(list)
    doubles = [sorted(v) for v in spellings if len(v) > 1]
    if doubles:  # 'Google' and 'google' are two categories unless source.leads.values merges them
        note += "; one value, several spellings: " + ", ".join("/".join(_q(s) for s in d) for d in doubles[:3])
    tokens = _tokens(name)
    if not contract and tokens & {"activity", "activities"} and not tokens & NOT_EVENT_WORDS:
        return Column(name, "category", f"the value names the event: {note}", activity=snake_name(name))
    return Column(name, "fit", note)


def _classify_numbers(name: str, numbers: np.ndarray, distinct: int, blank_note: str, min_support: int,
                      contract: bool) -> Column:
    """A column of numbers (`distinct` values among them): an id when every row has its own whole
    number, a count (how many times) when whole, 0..MAX_COUNT and not named like a measure,
    otherwise a number kept as a banded attribute; the note says which rule decided."""
    whole = bool(np.all(numbers == np.round(numbers)))
    if whole and distinct == len(numbers) and len(numbers) >= min_support:
        return Column(name, "skip", f"id-like: a different whole number on every row ({_n(len(numbers))})")
    edges = propose_edges(numbers, min_support)
    median = _number(_3(float(np.median(numbers))))
    spread = (f"{_number(numbers.min())} .. {_number(numbers.max())}, median {median}"
              f"{blank_note}")
    if (not contract and whole and numbers.min() >= 0 and numbers.max() <= MAX_COUNT
            and not _tokens(name) & MEASURE_WORDS):
        return Column(name, "count", f"whole numbers {spread} (a blank is 0)", activity=snake_name(name),
                      edges=edges)
    why = ("not whole numbers" if not whole else f"above {MAX_COUNT}" if numbers.max() > MAX_COUNT
           else "below 0" if numbers.min() < 0 else "named like a measure")
    # in leadcal's own shape the column is the attribute; in a wide export it becomes one, snake_case
    return Column(name, "number", f"a measure ({why}): {spread}", activity=name if contract else snake_name(name),
                  edges=edges)


def leakage(column: Column, values: pd.Series, y: pd.Series, min_support: int = MIN_SUPPORT) -> str | None:
    """Evidence that a column is known only once the outcome is (or is the outcome), or None.

    `y` is 1 (won), 0 (lost) or <NA> (open, ignored). Three tests, any one suffices:
    - a value held by >= `min_support` decided leads closes at >= 99 %;
    - the column alone ranks leads with an out-of-fold AUC >= 0.90 (per-value close rates as
      the score; a number also by its own order, in sample, >= 0.95);
    - it is filled mostly for one outcome: >= 70 % of won leads and <= 30 % of lost (or the
      reverse), or 3 times as often with >= `min_support` such leads: a field sales fills in
      after the contact ('Lead Quality', 'Tags', 'Lost reason').
    """
    decided = y.notna().to_numpy()
    target = y.to_numpy(dtype=float, na_value=np.nan)[decided].astype(int)
    if target.sum() < 2 or target.sum() > len(target) - 2:
        return None
    cells = values[decided]
    if column.kind in ("count", "number"):
        numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        groups = bands_of(numbers, column.edges)
        labels = {str(i): (f"below {_number(column.edges[0])}" if i == 0 else
                           f"{_number(column.edges[i - 1])} or more" if i == len(column.edges) else
                           f"{_number(column.edges[i - 1])} to {_number(column.edges[i])}")
                  for i in range(len(column.edges) + 1)}
    else:
        groups = cells.str.lower().fillna("(blank)").to_numpy(dtype=object).astype(str)
        labels = {}
    evidence = []
    overall = target.mean()
    stats = pd.DataFrame({"g": groups, "y": target}).groupby("g")["y"].agg(["sum", "count"])
    stats = stats.sort_values(["count"], ascending=False, kind="stable")
    for value, row in stats.iterrows():
        if row["count"] >= min_support and row["sum"] / row["count"] >= LEAK_CLOSE_RATE and overall < 0.95:
            shown = labels.get(value, value)
            evidence.append(f"{_q(column.name)} = {_q(_shown(shown, 40))} closes {_n(int(row['sum']))} of "
                            f"{_n(int(row['count']))} leads ({_pct(row['sum'] / row['count'])})")
            break
    score = out_of_fold_auc(groups, target)
    if column.kind in ("count", "number"):
        filled = ~np.isnan(numbers)
        ranked = stratified_auc(target[filled], numbers[filled]) if filled.sum() else float("nan")
        ranked = max(ranked, 1 - ranked)
        enough = target[filled].sum() >= min_support and (1 - target[filled]).sum() >= min_support
        if ranked >= LEAK_RANK_AUC and enough:
            evidence.append(f"its value alone ranks leads with AUC {ranked:.2f}")
    if score >= LEAK_AUC:
        evidence.append(f"alone it ranks leads with AUC {score:.2f} (out-of-fold)")
    is_filled = cells.notna().to_numpy()
    won_fill, lost_fill = is_filled[target == 1].mean(), is_filled[target == 0].mean()
    high, low = max(won_fill, lost_fill), min(won_fill, lost_fill)
    high_leads = int(is_filled[target == (1 if won_fill >= lost_fill else 0)].sum())
    if (high >= LEAK_FILL_HIGH and low <= LEAK_FILL_LOW) or (
            high >= LEAK_FILL_RATIO * low and high >= 0.2 and high_leads >= min_support):
        evidence.append(f"filled for {_pct(won_fill)} of won leads, {_pct(lost_fill)} of lost")
    return "; ".join(evidence) or None


def _dates(profile: Profile, frame: pd.DataFrame) -> None:
    """Pick the creation date and the outcome date among the date columns (by name only: a
    wrong creation date would shift every lead's history, so no date is taken on shape alone)."""
    dates = [c for c in profile.columns if c.kind == "date"]
    created = [c for c in dates if CREATED_NAMES.search(snake_name(c.name))]
    if created:
        column = created[0]
        profile.created_at = column.name
        column.kind, column.note = "created_at", f"creation date: {column.note}"
    if profile.outcome is not None:
        decided = [c for c in dates if c.kind == "date" and OUTCOME_DATE_NAMES.search(snake_name(c.name))]
        if decided:
            column = decided[0]
            profile.outcome_date = column.name
            column.kind, column.note = "outcome_date", f"when the outcome happened: {column.note}"
    formats = {date_format_of(frame[c]) for c in (profile.created_at, profile.outcome_date) if c}
    if len(formats) == 1:
        profile.date_format = formats.pop()
    elif formats:
        profile.warnings.append("the creation and outcome dates are written in different formats "
                                f"({sorted(map(str, formats))}); "
                                "set source.leads.date_format by hand")


def outcome_flags(frame: pd.DataFrame, outcome: Outcome | None) -> pd.Series:
    """1 won, 0 lost, <NA> open (or no outcome known)."""
    if outcome is None:
        return pd.Series(pd.NA, index=frame.index, dtype="Int64")
    lower = frame[outcome.column].str.lower()
    return pd.Series(np.where(lower.isin(outcome.won), 1, np.where(lower.isin(outcome.lost), 0, -1)),
                     index=frame.index).replace(-1, pd.NA).astype("Int64")


def profile_leads(frame: pd.DataFrame, min_support: int = MIN_SUPPORT, contract: bool = False,
                  won: pd.Series | None = None) -> Profile:
    """Profile a one-row-per-lead table: id, outcome, dates, placeholders, every column's kind, suspects.

    `contract`: the leads table of leadcal's own folder shape (lead_id, created_at and lead
    attributes), whose outcome `won` comes from its stages table.
    """
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:  # a Parquet file can hold 'Email' and 'email'; params name columns ignoring case
        raise LeadcalError(f"column(s) {repeated} appear more than once (names are compared ignoring case)")
    placeholders = find_placeholders(frame)
    text = blank(frame, placeholders)
    if contract:
        lead_id, id_note = "lead_id", "leadcal's own column"
        outcome = None
        y = won.reset_index(drop=True) if won is not None else outcome_flags(text, None)
    else:
        lead_id, id_note = find_lead_id(text)
        outcome = find_outcome(text)
        y = outcome_flags(text, outcome)
    profile = Profile(rows=len(frame), columns=[], placeholders=placeholders, lead_id=lead_id, lead_id_note=id_note,
                      outcome=outcome, contract=contract, min_support=min_support)
    profile.won, profile.lost = int((y == 1).sum()), int((y == 0).sum())
    used = {lead_id, outcome.column if outcome else None} | ({"created_at"} if contract else set())
    for name in frame.columns:
        if name in used:
            continue
        column = classify(name, text[name], min_support, contract)
        if column.kind in ("count", "flag", "number", "category", "fit") and profile.won and profile.lost:
            column.leak = leakage(column, text[name], y, min_support)  # a suspect is listed, never mapped
        profile.columns.append(column)
    if not contract:
        _dates(profile, text)
    if lead_id is None:
        profile.warnings.append("no lead id: no column holds a different, non-blank value on every row; "
                                "set source.leads.columns.lead_id by hand")
    if not contract and outcome is None:
        profile.warnings.append("no outcome column found (a column named like converted / won / status whose values "
                                "read as won and lost, e.g. 1/0, yes/no, won/lost); set source.outcome by hand")
    if not contract and not profile.mapped("count", "flag", "number", "category"):
        profile.warnings.append("no activity column found; list at least one under source.wide.activities")
    if profile.won and profile.won < 100:
        profile.warnings.append(f"only {profile.won} won leads: train.min_customers (default 100) will stop the "
                                "model from being published")
    return profile


def profile_contract(leads: pd.DataFrame, stages: pd.DataFrame | None, min_support: int = MIN_SUPPORT) -> Profile:
    """Profile a folder already in leadcal's shape: fit attributes from the leads columns; a lead
    that ever reached the `customer` stage counts as won (for the leakage checks only)."""
    leads = leads.reset_index(drop=True)
    leads.columns = [str(c).strip().lower() for c in leads.columns]
    won = pd.Series(pd.NA, index=leads.index, dtype="Int64")
    if stages is not None and {"lead_id", "stage"} <= set(stages.columns):
        stage = stages["stage"].astype("string").str.strip().str.lower().str.replace(r"[^0-9a-z]+", "_", regex=True)
        customers = set(stages.loc[(stage == "customer").fillna(False), "lead_id"].astype("string").str.strip())
        won = pd.Series(leads["lead_id"].astype("string").str.strip().isin(customers).astype(int), dtype="Int64")
    return profile_leads(leads, min_support, contract=True, won=won)


# ---------------------------------------------------------------------------------------------
# the params file (pure: a profile in, text out)


def _line(content: str, comment: str = "", width: int = 48) -> str:
    if not comment:
        return content
    return f"{content.ljust(width)}  # {comment}" if len(content) < width else f"{content}  # {comment}"


def _relative(path: Path, start: Path) -> str:
    """`path` relative to `start` (the params file's folder), POSIX-style; absolute across drives."""
    try:
        return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def render(profile: Profile, raw: str, leads_path: str | None, export_name: str, out_name: str) -> str:
    """The params file's text. `raw`: paths.raw as written (relative to the file's folder);
    `leads_path`: the leads file or folder relative to it (None for leadcal's own folder shape)."""
    lines = [
        f"# Starter params written by `leadcal init` from {export_name}: {_n(profile.rows)} rows.",
        "# Every mapping below says why it was chosen; check them (above all the leakage suspects), then run",
        f"#   leadcal run --config {out_name}",
        "# Relative paths are read from this file's folder. Settings not written here take the defaults of",
        "# pipeline/params.py (README \"Your own data\").",
    ]
    if profile.outcome or profile.contract:
        total = profile.won + profile.lost
        rate = f", close rate {_pct(profile.won / total)}" if total else ""
        lines.append(f"# Outcome: {_n(profile.won)} won, {_n(profile.lost)} lost{rate}.")
    if profile.suspects:
        lines.append("# Leakage suspects, NOT mapped (known only once the outcome is; see the commented-out lines): "
                     + ", ".join(c.name for c in profile.suspects) + ".")
    for warning in profile.warnings:
        lines.append(f"# TODO: {warning}.")
    sample = "data/sample" if raw != "data/sample" else "data/generated-sample"
    lines += [
        "",
        "paths:",
        _line(f"  raw: {_q(raw)}", "the export's folder; source paths below are relative to it"),
        "  extracted: \"data/extracted\"",
        "  features: \"data/features\"",
        "  models: \"models\"",
        _line(f"  sample: {_q(sample)}", "unused: nothing is generated for a real export"),
        "",
        "source:",
    ]
    if profile.contract:
        lines.append(_line("  leads: null", "paths.raw holds leads, activities and stages in leadcal's own shape"))
    else:
        lines += _render_leads(profile, leads_path)
    proposed = [p for p in profile.placeholders if p.proposed]
    if proposed:
        lines.append(_line("  missing_values:", "'no answer' spellings, blanked in every column"))
        for placeholder in proposed:
            where = ", ".join(f"{_q(c)} {_n(n)}" for c, n in placeholder.columns.items())
            lines.append(_line(f"    - {_q(placeholder.spelling)}", f"seen in {where}"))
    else:
        lines.append("  missing_values: []")
    for placeholder in profile.placeholders:
        if not placeholder.proposed:
            where = ", ".join(f"{_q(c)} {_n(n)}" for c, n in placeholder.columns.items())
            lines.append(f"  # kept as a value: {_q(placeholder.spelling)} (in one column only: {where}); "
                         "add it to missing_values if it means 'no answer'")
    if not profile.contract:
        lines += _render_wide(profile)
    lines += _render_not_mapped(profile)
    lines += _render_signals(profile)
    return "\n".join(lines) + "\n"


def _render_leads(profile: Profile, leads_path: str | None) -> list[str]:
    lines = ["  leads:", _line(f"    path: {_q(leads_path or '')}", "relative to paths.raw")]
    if profile.date_format:
        lines.append(_line(f"    date_format: {_q(profile.date_format)}", "how the dates below are written"))
    lines.append(_line("    columns:", "contract name: export column"))
    if profile.lead_id:
        lines.append(_line(f"      lead_id: {_q(profile.lead_id)}", profile.lead_id_note))
    else:
        lines.append("      # TODO lead_id: the column that identifies a lead (none is unique on every row)")
    if profile.created_at:
        note = next(c.note for c in profile.columns if c.name == profile.created_at)
        lines.append(_line(f"      created_at: {_q(profile.created_at)}", note))
    else:
        lines.append("      # no creation date found: leads are seen as of the export (snapshot mode,")
        lines.append("      # docs/method.md \"Snapshot exports\"); add created_at: <column> if one exists")
    if profile.outcome:
        outcome = profile.outcome
        lines += [
            "  outcome:",
            _line(f"    column: {_q(outcome.column)}", outcome.note),
            f"    won: [{', '.join(_q(v) for v in outcome.won)}]",
            f"    lost: [{', '.join(_q(v) for v in outcome.lost)}]",
        ]
        if profile.outcome_date:
            note = next(c.note for c in profile.columns if c.name == profile.outcome_date)
            lines.append(_line(f"    date_column: {_q(profile.outcome_date)}", note))
    else:
        lines += [
            "  # TODO outcome: no won/lost column found. Name it, e.g.",
            "  # outcome: {column: \"status\", won: [\"won\"], lost: [\"lost\"]}",
        ]
    return lines


def _render_wide(profile: Profile) -> list[str]:
    activities = profile.mapped("count", "flag", "number", "category")
    prefixed = len(profile.mapped("category")) > 1  # two 'last activity' columns must not merge their events
    lines = ["  wide:", "    activities:" if activities or profile.suspects else "    activities: []"]
    sections = (
        ("count", "counts: how many times (whole numbers >= 0; a blank is 0)"),
        ("flag", "flags: yes/no, one event when yes"),
        ("category", "categories: the value names the event"
                     + (" (prefixed by the column: several such columns)" if prefixed else "")),
        ("number", "numbers: measures kept as banded attributes (see signals.numeric_bins)"),
    )
    for kind, title in sections:
        mapped = [c for c in activities if c.kind == kind]
        suspects = [c for c in profile.suspects if c.kind == kind]
        if not mapped and not suspects:
            continue
        lines.append(f"      # {title}")
        for column in mapped + suspects:
            entry = _activity_entry(column, prefixed)
            if column.leak is None:
                lines.append(_line(f"      - {entry}", column.note, width=72))
            else:
                lines.append(f"      # - {entry}")
                lines.append(f"      #   leakage suspect, not mapped: {column.leak}")
    return lines


def _activity_entry(column: Column, prefixed: bool) -> str:
    if column.kind == "category" and not prefixed:
        return f"{{column: {_q(column.name)}, kind: category}}"
    activity = column.activity or snake_name(column.name)
    return f"{{column: {_q(column.name)}, activity: {_q(activity)}, kind: {column.kind}}}"


def _render_not_mapped(profile: Profile) -> list[str]:
    lines = []
    skipped = [c for c in profile.columns if c.kind == "skip"]
    dates = [c for c in profile.columns if c.kind == "date"]
    if skipped:
        lines.append("  # not mapped:")
        lines += [f"  #   {_q(c.name)}: {c.note}" for c in skipped]
    if dates:
        lines.append("  # dates not mapped (neither a creation nor an outcome date by name; a date of an event can be")
        lines.append("  # mapped as {column: ..., activity: ..., kind: date} under wide.activities):")
        lines += [f"  #   {_q(c.name)}: {c.note}" for c in dates]
    return lines


def _attribute(column: Column) -> str:
    """The fit attribute a number column becomes (Params checks it is listed and banded)."""
    return snake_name(column.activity or column.name) if column.activity != column.name else column.name


def _render_signals(profile: Profile) -> list[str]:
    fits = profile.mapped("fit")
    numbers = profile.number_attributes
    # a wide export's suspect numbers are commented out under wide.activities already
    suspects = [c for c in profile.suspects if c.kind == "fit" or (profile.contract and c.kind == "number")]
    lines = ["", "signals:"]
    if fits or numbers or suspects:
        lines.append(_line("  fit_attributes:", "who the lead is: categories and banded numbers"))
    else:
        lines.append("  fit_attributes: []")
    for column in fits:
        lines.append(_line(f"    - {_q(column.name)}", column.note))
    for column in numbers:
        lines.append(_line(f"    - {_q(_attribute(column))}", f"the number column {_q(column.name)}"))
    for column in suspects:
        lines.append(f"    # - {_q(column.name)}")
        lines.append(f"    #   leakage suspect, not mapped: {column.leak}")
    if numbers:
        lines.append(_line("  numeric_bins:", "lower edges of the bands: quantiles, rounded to 2 digits"))
        for column in numbers:
            edges = ", ".join(_number(e) for e in column.edges)
            lines.append(_line(f"    {_q(_attribute(column))}: [{edges}]", column.note))
    else:
        lines.append("  numeric_bins: {}")
    lines.append(_line(f"  min_support: {profile.min_support}", "fewer leads than this: no points"))
    segments = [c.name for c in fits][:2]
    lines += ["", "funnel:",
              _line(f"  segments: [{', '.join(_q(s) for s in segments)}]",
                    "conversion broken down by these attributes")]
    return lines


# ---------------------------------------------------------------------------------------------
# I/O at the edges


def read_export(export: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, bool, str | None]:
    """The export's leads table, its stages (leadcal's own folder shape only), whether it is in
    that shape, and the leads file or folder relative to paths.raw (None in that shape)."""
    if not export.exists():
        raise LeadcalError(f"{export}: not found (give a CSV or Parquet file, or a folder of them)")
    if export.is_dir():
        leads_file = existing_table(export, "leads")
        if leads_file is not None and existing_table(export, "activities") is not None:
            leads, _ = read_path(leads_file)
            columns = {str(c).strip().lower() for c in leads.columns}
            if {"lead_id", "created_at"} <= columns:
                stages_file = existing_table(export, "stages")
                stages = read_path(stages_file)[0] if stages_file is not None else None
                if stages is not None:
                    stages.columns = [str(c).strip().lower() for c in stages.columns]
                return leads, stages, True, None
    elif export.suffix.lower() not in (".csv", ".parquet"):
        raise LeadcalError(f"{export}: not a .csv or .parquet file")
    frame, _ = read_path(export)
    return frame, None, False, export.resolve().name


def init(export: Path, out: Path = DEFAULT_OUT, force: bool = False, min_support: int = MIN_SUPPORT) -> InitResult:
    """Profile `export` and write the starter params file `out`; refuses to overwrite without `force`."""
    export, out = Path(export), Path(out)
    name = export.resolve().name  # 'leads.csv', also when EXPORT is given as '.' or with '..'
    if out.exists() and not force:
        raise LeadcalError(f"{out} already exists; pass --force to overwrite it (or --out another file)")
    if out.is_dir():
        raise LeadcalError(f"{out} is a folder; --out names the params file to write")
    leads, stages, contract, leads_path = read_export(export)
    if leads.empty:
        raise LeadcalError(f"{export}: no rows to profile")
    if contract:  # paths.raw is the folder itself
        profile = profile_contract(leads, stages, min_support)
        raw_folder = export
    else:  # paths.raw is the folder holding the file (or the folder of files), source.leads.path its name
        profile = profile_leads(leads, min_support)
        raw_folder = export.resolve().parent
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = _relative(raw_folder, out.parent)
    text = render(profile, raw, leads_path, name, out.as_posix())
    out.write_text(text, encoding="utf-8")
    return InitResult(out, profile, summarize(profile, export, out))


def summarize(profile: Profile, export: Path, out: Path) -> str:
    """What was found, in a few lines for the terminal."""
    lines = [f"leadcal init: wrote {out} from {export} ({_n(profile.rows)} rows)"]
    if profile.contract:
        lines.append("  leadcal's own folder shape (leads, activities, stages): source.leads: null")
    else:
        lines.append(f"  lead id: {profile.lead_id or 'NOT FOUND'}")
        if profile.outcome:
            lines.append(f"  outcome: {profile.outcome.column}: {profile.outcome.note}")
        else:
            lines.append("  outcome: NOT FOUND")
        lines.append(f"  creation date: {profile.created_at or 'none (snapshot mode)'}")
        for kind, label in (("count", "counts"), ("flag", "flags"), ("category", "categories"), ("number", "numbers")):
            names = [c.name for c in profile.mapped(kind)]
            if names:
                lines.append(f"  activity {label}: {', '.join(names)}")
    fits = [c.name for c in profile.mapped("fit")] + [_attribute(c) for c in profile.number_attributes]
    lines.append(f"  fit attributes: {', '.join(fits) or 'none'}")
    proposed = [p.spelling for p in profile.placeholders if p.proposed]
    if proposed:
        lines.append(f"  missing values: {', '.join(proposed)}")
    if profile.suspects:
        lines.append("  leakage suspects, NOT mapped (check before mapping any of them):")
        lines += [f"    {c.name}: {c.leak}" for c in profile.suspects]
    skipped = [c.name for c in profile.columns if c.kind in ("skip", "date")]
    if skipped:
        lines.append(f"  not mapped: {', '.join(skipped)} (reasons in the file)")
    lines.append(f"next: check {out}, then run: leadcal run --config {out}")
    return "\n".join(lines)
