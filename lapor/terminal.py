"""What the `lapor` command prints through rich (progress bars, the rebuild's tables).

rich's own console ends the process with exit code 1 when its output's reader has gone away (`lapor rebuild | head
-1`, a log shipper that stopped): to `lapor`, whose 1 says "a check found something" (docs/platform.md), that read
as a rebuild that differs or a broken hash chain. `OutputConsole` raises the BrokenPipeError instead, which
`lapor.cli.main` turns into its code for a closed output (session 31).
"""

from __future__ import annotations

import errno
from typing import Any

from rich.console import Console


class OutputConsole(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more is written, also by the refresh of a live display
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")


def output_console(**options: Any) -> Console:
    """A console on stdout (or `stderr=True`) whose closed pipe is a BrokenPipeError."""
    return OutputConsole(**options)
