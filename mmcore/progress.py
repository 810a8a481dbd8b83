"""Where an ingest stands, in one object the command line and the Upload page both show: files done of all,
items embedded of all (once every file's count is known), items per second and the time left."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .ingest import FileResult

MIN_INTERVAL_S = 0.25  # item updates are passed on at most this often; a file's outcome always is


@dataclass(frozen=True)
class IngestProgress:
    """One moment of an ingest.

    `items_total` is None until every file still to come has been read (a folder of 10,000 photos is counted
    as it goes); `finished` is the file whose outcome this update reports, or None for an update of items;
    `current` the file being read or embedded; `stage` "loading models", "reading" (waiting for a file to be read,
    as a big CSV's rows are tokenized), "embedding", "captioning" (MMCORE_CAPTION_MODEL: the added files' pictures,
    `captioned` of them so far) or "done".
    """

    files_total: int
    files_done: int = 0
    items_done: int = 0
    items_total: int | None = None
    seconds: float = 0.0
    stage: str = "loading models"
    current: str | None = None
    finished: "FileResult | None" = None
    captioned: tuple[int, int] | None = None  # (done, total) pictures captioned, once every file is stored

    @property
    def rate(self) -> float | None:
        """Items embedded per second so far, once there is something to measure."""
        return self.items_done / self.seconds if self.items_done and self.seconds > 0.5 else None

    @property
    def eta(self) -> float | None:
        """Seconds left: from the items left at the current rate when their number is known, else from the files
        left at the time a file has taken so far."""
        if self.items_total is not None and self.rate:
            return max(0.0, (self.items_total - self.items_done) / self.rate)
        if self.files_done and self.seconds > 0.5:
            return (self.files_total - self.files_done) * self.seconds / self.files_done
        return None

    @property
    def fraction(self) -> float:
        """How far along, 0 to 1: by items when their total is known, else by files; captions by pictures."""
        if self.stage == "captioning" and self.captioned and self.captioned[1]:
            return min(1.0, self.captioned[0] / self.captioned[1])
        if self.items_total:
            return min(1.0, self.items_done / self.items_total)
        return self.files_done / self.files_total if self.files_total else 1.0

    def summary(self) -> str:
        """"1,234 of 1,530 items · 250 items/s · 0:01 left · 3 of 31 files" (no file names: they are data)."""
        if self.stage == "captioning" and self.captioned:
            return f"captioning pictures: {self.captioned[0]:,} of {self.captioned[1]:,} · {self.files_done:,} files stored"
        items = (f"{self.items_done:,} of {self.items_total:,} items" if self.items_total is not None
                 else f"{self.items_done:,} item" + ("" if self.items_done == 1 else "s"))
        parts = [items]
        if self.rate:
            parts.append(f"{self.rate:,.0f} items/s" if self.rate >= 10 else f"{self.rate:.1f} items/s")
        if self.eta is not None and self.stage != "done":
            parts.append(f"{clock(self.eta)} left")
        parts.append(f"{self.files_done:,} of {self.files_total:,} files")
        return " · ".join(parts)


def clock(seconds: float) -> str:
    """0:42, 12:05, 3:02:10."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


Progress = Callable[[IngestProgress], None]


class ProgressTracker:
    """Counts an ingest's files and items and hands `IngestProgress` to `on_progress` (item updates throttled).

    The runner says when a file is read (`reading`, with its item count where known), when items are embedded,
    and when a file is finished; files never read (skipped, refused) are simply finished.
    """

    def __init__(self, files: int, on_progress: Progress | None, clock=time.monotonic):
        self.on_progress = on_progress
        self.clock = clock
        self.state = IngestProgress(files_total=files)
        self.unread = files  # files whose item count is not known yet
        self.left: dict[int, int | None] = {}  # id(result) -> items still to embed of a file being read
        self.started: float | None = None  # when the first file was read (model loading doesn't count)
        self.last_sent = 0.0

    def stage(self, stage: str) -> None:
        self._send(stage=stage)

    def waiting(self, result: "FileResult") -> None:
        """The model waits for a file to be read (a big one takes a while before its first item)."""
        self._send(stage="reading", current=result.name, force=self.state.stage != "reading")

    def reading(self, result: "FileResult", items: int | None) -> None:
        """A file is being read: it will give `items` items to embed (None: not known until read)."""
        if self.started is None:
            self.started = self.clock()
        self.unread -= 1
        self.left[id(result)] = items
        self._send(stage="embedding", current=result.name, force=self.state.stage != "embedding")

    def embedded(self, result: "FileResult", items: int) -> None:
        """`items` more of the file's items have vectors."""
        left = self.left.get(id(result))
        if left is not None:
            self.left[id(result)] = max(0, left - items)
        self._send(items_done=self.state.items_done + items, force=False)

    def finished(self, result: "FileResult") -> None:
        if id(result) in self.left:
            del self.left[id(result)]  # what it didn't embed (it failed half-way) is no longer to come
        else:
            self.unread -= 1  # never read: skipped or refused
        self._send(files_done=self.state.files_done + 1, finished=result)

    def captioning(self, done: int, total: int) -> None:
        """`done` of the `total` pictures of the added files have their caption (after every file is stored)."""
        self._send(stage="captioning", current=None, captioned=(done, total), force=done in (0, total))

    def done(self) -> None:
        self._send(stage="done", current=None)

    def _send(self, force: bool = True, **changes) -> None:
        now = self.clock()
        seconds = now - self.started if self.started is not None else 0.0
        state = replace(self.state, seconds=seconds, **{"finished": None, **changes})
        unknown = self.unread > 0 or any(v is None for v in self.left.values())
        state = replace(state, items_total=None if unknown else state.items_done + sum(self.left.values()))
        self.state = replace(state, finished=None)
        if self.on_progress and (force or now - self.last_sent >= MIN_INTERVAL_S):
            self.last_sent = now
            self.on_progress(state)
