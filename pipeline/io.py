"""Atomic, deterministic writes of every artifact.

Each writer produces the whole file under a temporary name in the target folder and
renames it into place, so a stage that dies half-way leaves the previous artifact
intact. Serialisation is fixed (sorted keys, fixed float formatting, no timestamps)
so the same inputs give byte-identical files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from pipeline import staging
from pipeline.errors import LeadcalError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    A full disk, a read-only file system or a denied write becomes a LeadcalError naming `path`
    (pipeline.staging.os_errors); a stage run by the CLI notes each file it replaces in models/
    (pipeline.staging.note_write)."""
    path = Path(path)
    with staging.os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
            yield tmp
            staging.note_write(path)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_binary(path: str | Path) -> Iterator[BinaryIO]:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        yield handle


def write_bytes(path: str | Path, payload: bytes) -> None:
    with atomic_binary(path) as handle:
        handle.write(payload)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _json_ready(value: Any) -> Any:
    """Plain JSON types only; NaN/inf become null (a published artifact never holds NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 10)
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return value.as_posix()
    return value


def write_json(path: str | Path, payload: Any) -> None:
    text = json.dumps(_json_ready(payload), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise LeadcalError(f"{path}: not found (run the stage that produces it first, e.g. `dvc repro`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LeadcalError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """CSV with a fixed float format, so reruns are byte-identical and diffs stay readable."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read back a CSV artifact: only empty cells are missing, so a signal named 'null' stays a name."""
    path = Path(path)
    if not path.exists():
        raise LeadcalError(f"{path}: not found (run the stage that produces it first, e.g. `dvc repro`)")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _parquet_options(schema: Any) -> dict[str, Any]:
    """LZ4 (reads 2-3x faster than zstd); dictionary pages for text only, no column statistics.

    Counts, ages and flags gain little from dictionaries, and nothing reads these files with
    filters that statistics would serve: on a million-lead features table the defaults take
    70 % longer to write.
    """
    import pyarrow as pa

    text = [field.name for field in schema if pa.types.is_string(field.type) or pa.types.is_large_string(field.type)]
    return {"compression": "lz4", "use_dictionary": text, "write_statistics": False}


def write_parquet(path: str | Path, frame: pd.DataFrame, statistics: list[str] | None = None) -> None:
    """`statistics`: columns whose row groups record their first and last value (a reader can
    then skip the row groups outside a range: the event log's lead ids)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    options = {**_parquet_options(table.schema), **({"write_statistics": statistics} if statistics else {})}
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **options)


class _Background:
    """`work(item)` for each item put, in order, on a second thread (see `in_background`)."""

    def __init__(self, work: Callable[[Any], None], name: str, queued: int) -> None:
        self.work = work
        self.failure: BaseException | None = None
        self.cancelled = False  # the caller failed: items still queued are dropped
        self._items: queue.Queue[Any] = queue.Queue(maxsize=queued)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._items.get()) is not _DONE:
            if self.failure is None and not self.cancelled:
                try:
                    self.work(item)
                except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                    self.failure = exc

    def put(self, item: Any) -> None:
        if self.failure is not None:
            raise self.failure
        self._items.put(item)

    def finish(self, close: Callable[[], None]) -> None:
        self._items.put(_DONE)
        self._thread.join()
        try:
            close()
        finally:
            if self.failure is not None:  # the first failure, not the file's refusal to close after it
                raise self.failure


_DONE = object()  # what tells the thread of `in_background` that no item follows


@contextlib.contextmanager
def in_background(work: Callable[[Any], None], close: Callable[[], None], name: str,
                  queued: int = 1) -> Iterator[Callable[[Any], None]]:
    """Yield `put(item)`: `work(item)` runs for each item, in order, on a second thread, so that
    encoding a part of a file overlaps the building of the next; at most `queued` items wait for
    the thread. On leaving, the thread is joined and then `close()` runs on the caller's thread.
    A failure on the thread is raised on the caller's, at its next `put` or on leaving; when the
    caller fails, the items still queued are dropped and the caller's failure is the one raised."""
    background = _Background(work, name, queued)
    try:
        yield background.put
    except BaseException:
        background.cancelled = True
        with contextlib.suppress(BaseException):  # the caller's failure is the one to report
            background.finish(close)
        raise
    background.finish(close)


class _PartWriter:
    """One Parquet file from frames written one after another, its schema the first frame's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = None  # a pq.ParquetWriter once the first frame gives the schema

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, **_parquet_options(table.schema))
        elif not table.schema.equals(self.writer.schema, check_metadata=False):
            table = table.cast(self.writer.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def parquet_parts(path: str | Path) -> Iterator[Callable[[pd.DataFrame], None]]:
    """Yield `write(frame)`: the frames written one after another make one Parquet file (each
    frame its own row groups), so a table is written while only one part of it is in memory,
    converted and encoded on a second thread while the next part is built (`in_background`: at
    10M leads the encoding took 19 of the features stage's 70 s; a frame must not be changed once
    written). Replaced atomically on success. Every frame must have the first one's columns and
    types (a later one is cast to them)."""
    with atomic_path(path) as tmp:
        parts = _PartWriter(tmp)
        with in_background(parts.write, parts.close, "parquet-parts") as write:
            yield write
        if parts.writer is None:
            raise ValueError(f"{path}: no frame written")


def read_parquet(path: str | Path, columns: list[str] | None = None, categories: list[str] | None = None) -> pd.DataFrame:
    """`categories`: text columns to read as pandas categories (a few distinct values over many
    rows: a code per row instead of a string)."""
    path = Path(path)
    if not path.exists():
        raise LeadcalError(f"{path}: not found (run the stage that produces it first, e.g. `dvc repro`)")
    if categories:
        return pd.read_parquet(path, columns=columns, engine="pyarrow", read_dictionary=categories)
    return pd.read_parquet(path, columns=columns, engine="pyarrow")


def parquet_columns(path: str | Path) -> list[str]:
    """The column names of a Parquet file, from its footer."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise LeadcalError(f"{path}: not found (run the stage that produces it first, e.g. `dvc repro`)")
    return list(pq.read_schema(path).names)


def read_parquet_by_lead(path: str | Path, columns: list[str], rows: int = 500_000,
                         lead_column: str = "lead_id") -> Iterator[pd.DataFrame]:
    """The table as frames of about `rows` rows each, in file order, a lead's consecutive rows
    never split between two: what counts leads can be added up frame by frame, in the memory
    of one frame, however long the table. At least one frame, empty for an empty table."""
    import pyarrow.parquet as pq

    columns = columns if lead_column in columns else [lead_column, *columns]
    file = pq.ParquetFile(path)
    empty = True
    for table in whole_leads(file.iter_batches(batch_size=rows, columns=columns), rows, lead_column):
        empty = False
        yield table.to_pandas()
    if empty:
        yield file.read(columns=columns).to_pandas()


def whole_leads(batches: Iterable[Any], rows: int, lead_column: str = "lead_id") -> Iterator[Any]:
    """Arrow record batches of a table whose leads' rows are consecutive -> Arrow tables of
    whole leads: batches are gathered until they hold `rows` rows, then cut before the last
    lead they reach, whose rows go with the next part (so a part may hold fewer than `rows`).
    Nothing for no rows. Used on a Parquet file's batches and on a Spark partition's."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pending: list[Any] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < rows:
            continue
        table = pa.Table.from_batches(pending)
        ids = table[lead_column]
        starts = pc.indices_nonzero(pc.not_equal(ids[1:], ids[:-1]))  # position - 1 of each row that begins a lead
        last_start = int(starts[-1].as_py()) + 1 if len(starts) else 0
        if last_start == 0:  # one lead so far: keep reading
            continue
        yield table.slice(0, last_start)
        rest = table.slice(last_start)
        pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)
