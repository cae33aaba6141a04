"""Progress for long commands: counts, rate and ETA on a terminal; silent otherwise."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from mailhygiene.index import FolderSyncResult, SyncProgress
from mailhygiene.runs import BatchCounts


class _RateColumn(TextColumn):
    def __init__(self) -> None:
        super().__init__("{task.fields[rate]}")


class CountBar:
    """A rich progress bar on stderr: label, bar, done/total, rate and time remaining."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def begin(self, label: str, total: int) -> None:
        self._task = self._progress.add_task(label, total=max(total, 0), rate="")

    def advance(self, count: int) -> None:
        if self._task is None:
            return
        self._progress.advance(self._task, count)
        task = self._progress.tasks[self._task]
        speed = task.speed
        self._progress.update(self._task, rate=f"{speed:,.0f} msg/s" if speed else "")

    def finish(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[self._task]
            self._progress.update(self._task, total=task.completed or 0)
        self._task = None


class SyncBar(CountBar):
    """One bar per folder; implements ``index.SyncProgress``."""

    def folder_started(self, folder: str, to_fetch: int) -> None:
        self.begin(folder, to_fetch)

    def fetched(self, count: int) -> None:
        self.advance(count)

    def folder_finished(self, result: FolderSyncResult) -> None:
        self.finish()


class ExecuteBar(CountBar):
    """Messages checked and acted on; implements ``purge.execute.ExecuteProgress``."""

    def started(self, total: int) -> None:
        self.begin("executing", total)

    def advanced(self, count: int) -> None:
        self.advance(count)


class BatchBar(CountBar):
    """Accounts of a run batch finished, by any worker on any machine; a ``runs.BatchView``."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self._label = f"batch {key}"

    def counts(self, counts: BatchCounts) -> None:
        if self._task is None:
            self._task = self._progress.add_task(self._label, total=counts.total, rate="")
        self._progress.update(self._task, total=counts.total, completed=counts.finished)

    def account(self, name: str) -> AbstractContextManager[SyncProgress | None]:
        return nullcontext(None)
