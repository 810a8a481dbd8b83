"""Items' metadata, documents and write tokens on disk, one JSON line an item, with each line's byte offset: a few
items are read without parsing the rest (a `search --like` needs ten of 100,000).

A folder of rows holds ids.npy, rows.jsonl (`[metadata, document, write token]` per line, in the order of the ids),
offsets.npy (int64, where each line starts, and the file's length last) and order.npy (the rows in id order). It is the format of a staged import
(mmcore.pending, which adds vectors.npy) and of the row cache (mmcore.row_cache).
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import MediaError, StoreError
from .safe_io import load_npy, regular_fd

MAX_ROWS_BYTES = 8 * 2**30  # what a rows file may hold, against a data dir from someone else's backup


class Rows:
    """The rows of one folder: ids read at once, lines when asked for. The file stays open, so the rows can still
    be read after the folder was removed (a staging settled meanwhile)."""

    def __init__(self, folder: Path, ids: np.ndarray, offsets: np.ndarray, fd: int):
        self.folder, self._ids, self._offsets, self._fd = folder, ids, offsets, fd

    def __del__(self):
        try:
            os.close(self._fd)
        except (OSError, AttributeError):
            pass

    def __len__(self) -> int:
        return len(self._ids)

    @cached_property
    def ids(self) -> list[str]:
        return self._ids.tolist()

    def positions(self, ids: Sequence[str]) -> dict[str, int]:
        """The row of each of `ids` the folder holds: a binary search in id order, so looking up a search's ten hits
        among 100,000 rows costs no dict of all of them."""
        wanted = list(dict.fromkeys(ids))
        if not wanted or not len(self._ids):
            return {}
        in_order = self._sorted
        at = np.minimum(np.searchsorted(in_order, np.asarray(wanted, dtype=in_order.dtype)), len(in_order) - 1)
        return {id_: int(self._order[i]) for id_, i in zip(wanted, at.tolist()) if in_order[i] == id_}

    @cached_property
    def _order(self) -> np.ndarray:
        """The rows in id order: order.npy where it was written with the rows, else sorted here."""
        try:
            order = load_npy(self.folder / "order.npy", 8 * len(self._ids))
            if order.dtype.kind == "i" and order.shape == self._ids.shape:
                return order
        except MediaError:
            pass
        return np.argsort(self._ids, kind="stable")

    @cached_property
    def _sorted(self) -> np.ndarray:
        return self._ids[self._order]

    def read(self, rows: Sequence[int]) -> list[list]:
        """`[metadata, document, write token]` of each of `rows` (positions), in that order."""
        out = []
        for row in rows:
            start, end = int(self._offsets[row]), int(self._offsets[row + 1])
            out.append(self._parse(os.pread(self._fd, end - start, start)))
        return out

    @cached_property
    def _all(self) -> list[list]:
        data = os.pread(self._fd, int(self._offsets[-1]), 0)
        return [self._parse(line) for line in data.splitlines()]

    def _parse(self, line: bytes) -> list:
        try:
            row = json.loads(line)
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], dict)):
                raise ValueError("a line is not [metadata, document, write]")
            return row
        except (ValueError, UnicodeDecodeError) as e:
            raise unreadable(self.folder, e) from None

    @cached_property
    def metadatas(self) -> list[dict]:
        return [r[0] for r in self._all]

    @cached_property
    def documents(self) -> list[str | None]:
        return [r[1] for r in self._all]

    @cached_property
    def writes(self) -> list[str]:
        return [r[2] for r in self._all]


def write_rows(folder: Path, ids: Sequence[str], metadatas: Sequence[dict], documents: Sequence[str | None],
               writes: Sequence[str]) -> None:
    """ids.npy, rows.jsonl and offsets.npy of the items into `folder` (which exists)."""
    offsets = [0]
    with open(folder / "rows.jsonl", "wb") as f:
        for row in zip(metadatas, documents, writes):
            offsets.append(offsets[-1] + f.write(json.dumps(row, ensure_ascii=False).encode() + b"\n"))
    ids = np.asarray(list(ids), dtype=str)
    np.save(folder / "ids.npy", ids)
    np.save(folder / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    np.save(folder / "order.npy", np.argsort(ids, kind="stable"))


def open_rows(folder: Path, kind: type[Rows] = Rows) -> Rows:
    """The rows of `folder` (as a `kind`). A folder staged before offsets were kept gets them by one pass over its lines.

    Raises:
        MediaError: a file is missing (the folder was removed meanwhile, for one) or isn't what it should be.
    """
    ids = load_npy(folder / "ids.npy", MAX_ROWS_BYTES)
    fd = regular_fd(folder / "rows.jsonl")
    try:
        size = os.fstat(fd).st_size
        if size > MAX_ROWS_BYTES:
            raise MediaError(str(folder / "rows.jsonl"), "too big")
        if (folder / "offsets.npy").exists():
            offsets = load_npy(folder / "offsets.npy", 8 * (len(ids) + 1))
        else:
            data = os.pread(fd, size, 0)
            offsets = np.concatenate([[0], np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1])
        if offsets.dtype.kind != "i" or offsets.shape != (len(ids) + 1,) or offsets[0] != 0 or offsets[-1] != size \
                or np.any(np.diff(offsets) <= 0):
            raise MediaError(str(folder), "ids.npy, rows.jsonl and offsets.npy disagree")
    except BaseException:
        os.close(fd)
        raise
    return kind(folder, ids, offsets, fd)


def unreadable(folder: Path, reason) -> StoreError:
    what = "import the vectors again" if folder.parent.name == "pending" else "it is read from the store again"
    return StoreError(f"The items kept in {folder} can't be read ({reason}); remove that folder ({what}).")
