"""Work done ahead in a background thread: the next batch of model inputs is prepared while the
models run on the current one (numpy, scipy and torch release the GIL, so the two overlap).

``ahead(make, items, depth)`` yields ``make(item)`` for each item in order. At most ``depth``
finished results wait in the queue, so memory stays bounded whatever the series length. An
exception raised by ``make`` reaches the consumer at that item, with its traceback; ``cancel``
(anything ``progress.is_cancelled`` understands) stops the producer before its next item, and
leaving the loop early (break, an exception, ``close()``) stops and joins the thread.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from PETriageLib.progress import is_cancelled

T = TypeVar("T")
R = TypeVar("R")

_END = object()  # the producer finished (all items, or stopped)


@dataclass
class _Failure:
    error: BaseException


class Ahead(Generic[T, R]):
    """An iterator over ``make(item)`` computed ``depth`` items ahead in a daemon thread.

    ``seconds``: the producer's time inside ``make`` (work the consumer no longer waits for);
    ``waited``: the consumer's time blocked on the queue (what the overlap did not hide).
    """

    def __init__(self, make: Callable[[T], R], items: Iterable[T], depth: int = 1, cancel: Any = None,
                 name: str = "petriage-ahead") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._make, self._items, self._cancel = make, list(items), cancel
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.seconds = 0.0
        self.waited = 0.0
        self.made = 0  # items made so far
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _put(self, value: Any) -> bool:
        """Put unless stopped; False when the consumer has gone."""
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set() or is_cancelled(self._cancel):
                    break
                t = time.perf_counter()
                try:
                    result = self._make(item)
                except BaseException as exc:  # handed to the consumer, raised there
                    self._put(_Failure(exc))
                    return
                self.seconds += time.perf_counter() - t
                self.made += 1
                if not self._put(result):
                    return
        finally:
            self._put(_END)

    def __iter__(self) -> Iterator[R]:
        return self

    def __next__(self) -> R:
        if self._stop.is_set():
            raise StopIteration
        t = time.perf_counter()
        value = self._queue.get()
        self.waited += time.perf_counter() - t
        if value is _END:
            self.close()
            raise StopIteration
        if isinstance(value, _Failure):
            self.close()
            raise value.error
        return value

    def close(self) -> None:
        """Stop the producer and wait for it (it finishes the item it is making)."""
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "Ahead[T, R]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def ahead(make: Callable[[T], R], items: Iterable[T], depth: int = 1, cancel: Any = None) -> Ahead[T, R]:
    """``make(item)`` for each item, ``depth`` ahead in a background thread (see the module doc)."""
    return Ahead(make, items, depth, cancel)
