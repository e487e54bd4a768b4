"""The events of a range of leads, read from the canonical event log as NumPy positions.

The features stage (on DuckDB) takes the leads in id order, a range at a time, and needs
each event of those leads as (lead's position in the range, activity's position, time). The
log extract writes is sorted by lead id and records each row group's first and last id, so
only the row groups that can hold the range are read. Ids and names are read as Parquet's
dictionary codes and looked up once per distinct value, never per row: a string per event is
what made the SQL join slow.

Every log extract writes is sorted so and records the spans: DuckDB's stream, the pandas
path's file (CSV exports) and Spark's part files. Any other (a frame in memory for `leadcal
score`, a file without text statistics) gives the same answer, read whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.data.engine import parquet_files

COLUMNS = ["lead_id", "activity", "occurred_at"]


class EventLog:
    """The canonical activities table, from its Parquet file(s) or a frame in memory."""

    def __init__(self, source: Path | pd.DataFrame) -> None:
        if isinstance(source, pd.DataFrame):
            self._table: pa.Table | None = pa.Table.from_pandas(source[COLUMNS], preserve_index=False)
            self._files: list[tuple[pq.ParquetFile, list[tuple[object, object] | None]]] = []
        else:
            self._table = None
            self._files = [(file, _id_spans(file)) for file in
                           (pq.ParquetFile(path, read_dictionary=COLUMNS[:2]) for path in parquet_files(source))]

    def of_leads(self, lead_ids: pa.Array, activities: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The events of `lead_ids` (sorted, unique) as (lead position in `lead_ids`, activity
        position in `activities`, microseconds since the epoch); events of other leads are left out."""
        table = self._table if self._table is not None else self._read(lead_ids)
        lead = _positions(table.column("lead_id"), lead_ids)
        mine = lead >= 0
        activity = _positions(table.column("activity"), activities)[mine]
        us = microseconds(table.column("occurred_at"))
        return lead[mine], activity, us[mine]

    def _read(self, lead_ids: pa.Array) -> pa.Table:
        """The row groups whose id span meets [first, last] of `lead_ids` (all, without statistics)."""
        low, high = (lead_ids[0].as_py(), lead_ids[-1].as_py()) if len(lead_ids) else (None, None)
        parts = []
        for file, spans in self._files:
            groups = [g for g, span in enumerate(spans)
                      if low is not None and (span is None or not (span[1] < low or span[0] > high))]
            if groups:
                parts.append(file.read_row_groups(groups, columns=COLUMNS))
        if not parts:
            return pa.table({"lead_id": pa.array([], pa.string()), "activity": pa.array([], pa.string()),
                             "occurred_at": pa.array([], pa.timestamp("us"))})
        return pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]


def microseconds(column: pa.ChunkedArray | pa.Array, missing: int | None = None) -> np.ndarray:
    """A timestamp column as int64 microseconds since the epoch, `missing` for a null."""
    values = pc.cast(column, pa.timestamp("us")).cast(pa.int64())
    return (values if missing is None else values.fill_null(missing)).to_numpy()


def _id_spans(file: pq.ParquetFile) -> list[tuple[object, object] | None]:
    """Per row group, the first and last lead id its statistics record (None: unknown)."""
    metadata, column = file.metadata, file.schema_arrow.get_field_index("lead_id")
    spans: list[tuple[object, object] | None] = []
    for g in range(metadata.num_row_groups):
        stats = metadata.row_group(g).column(column).statistics if column >= 0 else None
        known = stats is not None and stats.has_min_max and isinstance(stats.min, str) and isinstance(stats.max, str)
        spans.append((stats.min, stats.max) if known else None)  # ids as text: compared as the sort compares them
    return spans


def _positions(column: pa.ChunkedArray, values: pa.Array) -> np.ndarray:
    """Each entry's position in `values`, -1 when absent: the distinct texts of all chunks are
    looked up in one pass, and each row takes its code's answer."""
    chunks = [chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode() for chunk in column.chunks]
    if not chunks:
        return np.empty(0, dtype=np.int64)
    dictionary = pa.concat_arrays([chunk.dictionary.cast(pa.string()) for chunk in chunks])
    found = pc.index_in(dictionary, value_set=values.cast(pa.string())).fill_null(-1).to_numpy().astype(np.int64)
    offsets = np.cumsum([0] + [len(chunk.dictionary) for chunk in chunks[:-1]])
    return np.concatenate([found[offset + chunk.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
                           for offset, chunk in zip(offsets, chunks)])
