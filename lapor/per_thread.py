"""What each thread opens for itself (a database connection, a socket), closed once that thread has ended."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerThread(Generic[T]):
    """One `open()`ed value per thread, kept for that thread until `close`; a value whose thread has ended is
    closed by the next thread that opens one. Request threads come and go (anyio's pool ends a worker that was idle
    for 10 s): kept until `close`, every ended thread's connection stayed open, and bursts of traffic piled them up
    without bound (300 short-lived threads took a process from 12 open files to 1,514). Now a process holds at most
    as many as it ever had threads at once."""

    def __init__(self, open_: Callable[[], T], close: Callable[[T], None]) -> None:
        self._open = open_
        self._close = close
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: dict[threading.Thread, T] = {}

    def get(self) -> T:
        """This thread's value, opened on its first call."""
        value: T | None = getattr(self._local, "value", None)
        if value is None:
            value = self._open()
            with self._lock:
                ended = [thread for thread in self._held if not thread.is_alive()]
                leftovers = [self._held.pop(thread) for thread in ended]
                self._held[threading.current_thread()] = value
            for leftover in leftovers:  # nobody uses them: their threads are gone
                self._close(leftover)
            self._local.value = value
        return value

    def discard(self) -> None:
        """Close this thread's value (a broken connection); its next `get` opens a new one."""
        value: T | None = getattr(self._local, "value", None)
        if value is None:
            return
        self._local.value = None
        with self._lock:
            self._held.pop(threading.current_thread(), None)
        self._close(value)

    def close(self) -> None:
        """Close every thread's value."""
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        for value in held:
            self._close(value)
