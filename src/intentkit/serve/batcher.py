"""Micro-batcher: group concurrent requests into few padded forward passes, off the event loop.

Flow per request: reserve queue room (429 when full) -> tokenize in the tokenizer thread ->
enqueue one item per text -> while more requests are being tokenized, the batch loop waits for
them until the token budget or the batch size is reached, or the oldest item has waited
``max_wait_ms`` (with nobody on the way it doesn't wait at all) -> takes up to
``max_batch_size`` items (FIFO, so nobody starves), sorts them by length and cuts them into
forward passes of at most ``max_batch_tokens`` padded tokens, each padded only to its own
longest text -> runs them in the single model thread -> answers each caller's future.
Cf. TEI ``core/src/queue.rs`` (token budget) and LitServe ``max_batch_size``/``batch_timeout``.

While one forward runs, new requests queue up and form the next batch, so under load batches
grow by themselves and nobody waits the full ``max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from intentkit.serve.http_errors import ServeError

log = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], list[list[int]]]
#: One forward: ``(logits (rows, labels), out-of-scope score (rows,) or None)``.
Forward = Callable[[Sequence[Sequence[int]]], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class BatchResult:
    """One request's outputs, rows in its texts' order, and where its time went (ms)."""

    logits: np.ndarray
    #: The out-of-scope score per text (higher = more in-scope), or None for the softmax scorer.
    oos_score: np.ndarray | None
    tokenize_ms: float
    queue_ms: float
    inference_ms: float


class _Item:
    __slots__ = ("ids", "future", "enqueued")

    def __init__(self, ids: list[int], future: asyncio.Future, enqueued: float) -> None:
        self.ids = ids
        self.future = future
        self.enqueued = enqueued


def plan_batches(
    lengths: Sequence[int],
    *,
    max_batch_tokens: int,
    max_batch_size: int,
    split_tokens: int = 0,
) -> list[list[int]]:
    """Cut indices, sorted by length, into batches of <= max_batch_size rows and padded tokens.

    A batch's padded size is ``rows x longest``; a single text longer than the budget still gets
    its own batch (it was already truncated to the model's max length). With ``split_tokens``
    > 0, a batch that already holds that many padded tokens is closed before a longer text would
    pad all its rows: on CPU a forward costs per (padded) token and is already efficient at ~128
    tokens, so this saves the padding (25% faster for 32 random CLINC150 queries on ModernBERT-
    base). On GPUs the per-forward overhead dominates, so they don't split (0).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Ascending order: lengths[i] is the longest of current + [i].
        longest = lengths[current[-1]] if current else 0
        if current and (
            len(current) >= max_batch_size
            or (len(current) + 1) * lengths[i] > max_batch_tokens
            or (0 < split_tokens <= len(current) * longest and lengths[i] > longest)
        ):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class MicroBatcher:
    """Asynchronous front of a synchronous ``forward``; create and use it inside one event loop."""

    def __init__(
        self,
        encode: Encode,
        forward: Forward,
        *,
        max_batch_tokens: int = 16384,
        max_batch_size: int = 256,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        split_tokens: int = 0,
        metrics: Any | None = None,
    ) -> None:
        self._encode = encode
        self.split_tokens = split_tokens
        self._forward = forward
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._metrics = metrics
        self._queue: deque[_Item] = deque()
        self._pending = 0  # texts reserved: tokenizing or queued (the 429 bound)
        self._busy = False
        self._closed = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # One model thread: torch already uses every core inside one forward, and two forwards
        # at once would only fight over them. Tokenization gets its own thread so it overlaps.
        self._model_pool: ThreadPoolExecutor | None = None
        self._tok_pool: ThreadPoolExecutor | None = None

    @property
    def depth(self) -> int:
        """Texts waiting (tokenizing or queued), not counting the batch being computed."""
        return self._pending

    def start(self) -> None:
        """Start the batch loop on the running event loop."""
        self._wake = asyncio.Event()
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="intentkit-model")
        self._tok_pool = ThreadPoolExecutor(1, thread_name_prefix="intentkit-tokenize")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def in_model_thread(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in the model thread (warm-up: CUDA graphs replay in the thread that recorded
        them); call after :meth:`start`."""
        return await asyncio.get_running_loop().run_in_executor(self._model_pool, fn)

    async def stop(self, timeout: float = 30.0) -> None:
        """Refuse new work, let queued work finish (up to ``timeout`` s), then stop the threads."""
        self._closed = True
        deadline = time.perf_counter() + timeout
        while (self._queue or self._busy) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(ServeError("not_ready", "the server is shutting down"))
        for pool in (self._model_pool, self._tok_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._pending)

    async def submit(self, texts: Sequence[str]) -> BatchResult:
        """Logits for ``texts`` from shared batches; a 429 ServeError when the queue is full."""
        if self._closed or self._task is None:
            raise ServeError("not_ready", "the server is shutting down")
        n = len(texts)
        if self._pending + n > self.max_queue:
            if self._metrics is not None:
                self._metrics.rejected.inc()
            raise ServeError(
                "overloaded",
                f"queue full ({self._pending} texts waiting, limit {self.max_queue}); retry later",
            )
        self._pending += n  # reserved before tokenizing so a flood can't overshoot the bound
        self._set_depth()
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            ids = await loop.run_in_executor(self._tok_pool, self._encode, list(texts))
        except BaseException:
            self._pending -= n
            self._set_depth()
            raise
        now = time.perf_counter()
        futures = []
        for row in ids:
            item = _Item(row, loop.create_future(), now)
            self._queue.append(item)
            futures.append(item.future)
        assert self._wake is not None
        self._wake.set()
        # return_exceptions: a failed chunk must not leave sibling futures' errors unretrieved.
        results = await asyncio.gather(*futures, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        rows = [r[0] for r in results]  # (logits row, score or None) per text
        return BatchResult(
            logits=np.stack([row[0] for row in rows]),
            oos_score=None if rows[0][1] is None else np.array([r[1] for r in rows], np.float64),
            tokenize_ms=(now - t0) * 1000.0,
            queue_ms=max(r[1] for r in results),
            inference_ms=max(r[2] for r in results),
        )

    def _full(self) -> bool:
        """True when the queued items already fill a batch (no point waiting longer)."""
        if len(self._queue) >= self.max_batch_size:
            return True
        longest = 0
        for count, item in enumerate(self._queue, start=1):
            longest = max(longest, len(item.ids))
            if count * longest >= self.max_batch_tokens:
                return True
        return False

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = self._queue[0].enqueued + self.max_wait
            # Wait for batch-mates only while some are on their way (being tokenized): an idle
            # server answers a lone request at once instead of sleeping max_wait_ms for nobody.
            # Under load the model thread is busy, and requests pile up during each forward.
            while not self._full() and self._pending > len(self._queue):
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
            take = min(len(self._queue), self.max_batch_size)
            items = [self._queue.popleft() for _ in range(take)]
            self._pending -= take
            self._set_depth()
            self._busy = True
            try:
                plan = plan_batches(
                    [len(it.ids) for it in items],
                    max_batch_tokens=self.max_batch_tokens,
                    max_batch_size=self.max_batch_size,
                    split_tokens=self.split_tokens,
                )
                for idx in plan:
                    chunk = [items[i] for i in idx]
                    await self._run_chunk(loop, chunk)
            finally:
                self._busy = False

    async def _run_chunk(self, loop: asyncio.AbstractEventLoop, chunk: list[_Item]) -> None:
        ids = [it.ids for it in chunk]
        start = time.perf_counter()
        try:
            logits, score = await loop.run_in_executor(self._model_pool, self._forward, ids)
        except Exception as exc:  # answer every caller; the route turns it into a logged 500
            log.error("forward pass of %d texts failed", len(chunk), exc_info=True)
            for it in chunk:
                if not it.future.done():
                    it.future.set_exception(exc)
            return
        end = time.perf_counter()
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(chunk))
            self._metrics.batch_tokens.observe(len(chunk) * max(len(x) for x in ids))
            self._metrics.forward_seconds.observe(end - start)
        infer_ms = (end - start) * 1000.0
        for i, it in enumerate(chunk):
            if not it.future.done():  # the caller may have gone away
                row = (logits[i], None if score is None else score[i])
                it.future.set_result((row, (start - it.enqueued) * 1000.0, infer_ms))
