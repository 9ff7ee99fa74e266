"""Writers for the concurrency tests: the same loop runs in threads (sharing one store) and in processes
(each opening the store by URL, started with multiprocessing's spawn)."""

from __future__ import annotations

import multiprocessing
import random
import threading
from multiprocessing.pool import Pool

from lapor.store import EventStore, NewEvent, WrongExpectedVersion, open_store

# (event_id, stream, version, position) of an acknowledged event
Acknowledged = tuple[str, str, int, int]


def append_with_retries(
    store: EventStore, worker: str, appends: int, shared_streams: list[str], private_stream: str
) -> list[Acknowledged]:
    """Append `appends` single events, about half to a stream shared with other writers (reading its version
    and retrying on a conflict, as a command handler does) and half to this writer's own stream."""
    chooser = random.Random(worker)
    acknowledged: list[Acknowledged] = []
    private_version = store.stream_version(private_stream)
    for n in range(appends):
        event = NewEvent("Noted", {"worker": worker, "n": n})
        if chooser.random() < 0.5:
            stream = chooser.choice(shared_streams)
            while True:
                try:
                    result = store.append(stream, [event], expected_version=store.stream_version(stream))
                    break
                except WrongExpectedVersion:
                    continue
        else:
            stream = private_stream
            result = store.append(stream, [event], expected_version=private_version)
            private_version = result.last_version
        acknowledged.append((str(event.event_id), stream, result.last_version, result.last_position))
    return acknowledged


def append_in_process(
    url: str, worker: str, appends: int, shared_streams: list[str], private_stream: str
) -> list[Acknowledged]:
    with open_store(url) as store:
        return append_with_retries(store, worker, appends, shared_streams, private_stream)


def processes_starting_together(count: int) -> Pool:
    """`count` spawned processes that take no task before all of them have started: spawning and importing take
    a second or more, long enough on a busy machine for one process to finish its appends alone."""
    spawn = multiprocessing.get_context("spawn")
    return spawn.Pool(count, initializer=_wait_for_the_others, initargs=(spawn.Barrier(count),))


def _wait_for_the_others(barrier: threading.Barrier) -> None:
    barrier.wait(timeout=120)
