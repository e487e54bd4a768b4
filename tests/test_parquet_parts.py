"""io.parquet_parts: frames written one after another, encoded on a second thread, as one file."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import io
from pipeline.errors import LeadcalError


def _parts(n: int) -> list[pd.DataFrame]:
    return [pd.DataFrame({"lead_id": [f"L{i}-{j}" for j in range(3)], "n": [i, i + 1, i + 2]}) for i in range(n)]


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name == "parquet-parts"}


def test_the_parts_make_one_file_in_their_order_each_its_own_row_group(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    with io.parquet_parts(path) as write:
        for part in _parts(5):
            write(part)
    assert pq.ParquetFile(path).metadata.num_row_groups == 5
    pd.testing.assert_frame_equal(pd.read_parquet(path), pd.concat(_parts(5), ignore_index=True), check_dtype=False)
    assert not _threads() and [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_a_failure_on_the_writing_thread_reaches_the_caller_and_leaves_no_file(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while the thread encodes part 3: the caller gets the one-line error naming the
    file (not a silent thread death, not a half file), and the thread is gone."""
    path = tmp_path / "table.parquet"
    path.write_bytes(b"previous")
    written: list[int] = []
    real = pq.ParquetWriter.write_table

    def full_disk(self, table, *args, **kwargs) -> None:  # noqa: ANN001
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(table.num_rows)
        real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    with pytest.raises(LeadcalError, match=r"no space left on device while writing \S*table\.parquet"):
        with io.parquet_parts(path) as write:
            for part in _parts(6):
                write(part)
    assert written == [3, 3]
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["table.parquet"]
    assert not _threads()


def test_a_failure_of_the_caller_is_the_one_raised_and_the_thread_stops(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    with pytest.raises(RuntimeError, match="the caller fails"):
        with io.parquet_parts(path) as write:
            write(_parts(1)[0])
            raise RuntimeError("the caller fails")
    assert not path.exists() and not list(tmp_path.iterdir()) and not _threads()


def test_no_part_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frame written"):
        with io.parquet_parts(tmp_path / "table.parquet"):
            pass
    assert not list(tmp_path.iterdir())
