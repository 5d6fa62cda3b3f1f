"""The decision log: a bounded queue and one writer task per process, in front of a DecisionStore.

Requests append a small tuple (:class:`~daemon.storage.records.Entry`) to a bounded deque and never
wait on disk. One writer task wakes when ``batch_size`` records are waiting or ``flush_interval``
has passed, takes what is waiting (at most ``max_batch``, so that a backlog drains in fewer, larger
transactions) and hands it to the store, which builds the records (keyed input fingerprint, the input
as ``log_inputs`` keeps it), links them into this writer's hash chain and writes the batch in one
transaction, off the event loop. A failed write is never dropped: it is counted, logged once per kind
of failure, and retried with backoff while ``/readyz`` says the log is unhealthy; meanwhile the queue
fills and, once it stays full, requests get 503.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

from daemon.storage.interface import DecisionStore
from daemon.storage.records import Entry

log = logging.getLogger("aigov.decisionlog")

class QueueFull(Exception):
    """The decision log could not take a record within the bounded wait."""


class DecisionLog:
    """The bounded queue and its single writer task."""

    def __init__(
        self,
        store: DecisionStore,
        *,
        batch_size: int = 50,
        flush_interval: float = 5.0,
        max_queue: int = 10_000,
        enqueue_timeout: float = 0.5,
        on_written: Callable[[int], None] = lambda n: None,
        on_error: Callable[[], None] = lambda: None,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
        max_batch: int = 1000,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.enqueue_timeout = enqueue_timeout
        self.max_batch = max(batch_size, max_batch)
        self.max_queue = max_queue
        # A deque, not an asyncio.Queue: appending is the only work a request does here, and
        # Queue.put_nowait/get_nowait cost several times a deque's append/popleft per record.
        self._items: collections.deque[Entry] = collections.deque()
        self._wake = asyncio.Event()  # set when a batch is ready (or on close)
        self._space = asyncio.Event()  # set when the writer has taken records out
        self.on_written = on_written
        self.on_error = on_error
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.failure: str | None = None  # what the failing writes raise, while they fail
        self._reported: set[str] = set()  # kinds of failure already logged

    @property
    def healthy(self) -> bool:
        """False while writes fail (they are being retried)."""
        return self.failure is None

    async def start(self) -> None:
        """Open the store and start the writer task."""
        await self.store.open()
        self.task = asyncio.create_task(self._run(), name="aigov-decision-writer")

    def qsize(self) -> int:
        """Records waiting to be written."""
        return len(self._items)

    def offer(self, entry: Entry) -> bool:
        """Enqueue without waiting; False when the queue is full or closing."""
        items = self._items
        if self.closing or len(items) >= self.max_queue:
            return False
        items.append(entry)
        if len(items) >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    async def record(self, entry: Entry) -> None:
        """Enqueue; when the queue is full, wait at most ``enqueue_timeout`` for room, else QueueFull."""
        if not self.offer(entry):
            await self.put(entry)

    async def put(self, entry: Entry) -> None:
        """Enqueue, waiting at most ``enqueue_timeout`` for room; QueueFull when the queue stays full."""
        if self.offer(entry):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.enqueue_timeout
        while not self.closing:
            self._space.clear()
            self._wake.set()  # a full queue is a ready batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._space.wait(), remaining)
            except TimeoutError:
                break
            if self.offer(entry):
                return
        if self.closing:
            raise QueueFull("the decision log is closing")
        raise QueueFull("the decision log queue stayed full")

    def _take(self) -> list[Entry]:
        """Everything waiting, up to ``max_batch`` records."""
        items = self._items
        n = min(len(items), self.max_batch)
        if n == len(items):
            batch = list(items)
            items.clear()
        else:
            popleft = items.popleft
            batch = [popleft() for _ in range(n)]
        if n:
            self._space.set()
        return batch

    async def _write(self, batch: list[Entry]) -> None:
        delay = self.retry_delay
        while True:
            try:
                await self.store.write(batch)
            except Exception as e:
                # Never drop what was answered: keep retrying; meanwhile the queue fills and requests
                # get 503. Each kind of failure is logged once (with its traceback when it is not an
                # error the store knows), not once per retry.
                kind = f"{type(e).__module__}.{type(e).__qualname__}"
                self.failure = f"{type(e).__name__}: {e}"
                self.on_error()
                if kind not in self._reported:
                    self._reported.add(kind)
                    log.error("decision log write failed (%s); retrying with backoff until it succeeds",
                              self.failure, exc_info=not _expected(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
                continue
            if self.failure is not None:
                log.warning("decision log writes succeed again")
                self.failure = None
                self._reported.clear()
            self.on_written(len(batch))
            return

    async def _run(self) -> None:
        # One wait per flush cycle (not per record): woken when a batch is ready, else at the interval.
        while True:
            if len(self._items) < self.batch_size and not self.closing:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                except TimeoutError:
                    pass
            self._wake.clear()
            batch = self._take()
            if batch:
                await self._write(batch)
            elif self.closing:
                return

    async def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, write everything queued, close the store."""
        self.closing = True
        if self.task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self.task), timeout)
            except TimeoutError:
                log.error("decision log: %d records could not be written within %.0fs", self.qsize(), timeout)
                self.task.cancel()
        await self.store.close()


def _expected(e: Exception) -> bool:
    """Failures of the database itself (busy, full, unreachable), as opposed to a bug in aigov."""
    import sqlite3

    from daemon.errors import StorageError

    return isinstance(e, sqlite3.Error | StorageError | OSError)
