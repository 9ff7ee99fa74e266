"""Child processes that stop with the process that started them, also when it was killed: `lapor up --workers`'
HTTP workers and the store writer it starts."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger("lapor.orphans")

PARENT_WATCH = 1.0  # seconds between checks that the starting process is still there


def stop_when_orphaned(parent: int, stop: Callable[[], None], stopping: Callable[[], bool]) -> threading.Thread:
    """A daemon thread that calls `stop` once `parent` is no longer this process's parent (it is gone), checking
    every PARENT_WATCH seconds until `stopping()` says the process is stopping anyway."""

    def watch() -> None:
        while not stopping():
            if os.getppid() != parent:
                log.warning("the process that started this one (pid %d) is gone; stopping", parent)
                stop()
                return
            time.sleep(PARENT_WATCH)

    thread = threading.Thread(target=watch, name="watch-parent", daemon=True)
    thread.start()
    return thread
