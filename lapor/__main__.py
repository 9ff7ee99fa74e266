"""The `lapor` command's entry point: the console script (pyproject.toml's [project.scripts]) and `python -m lapor`.

It imports the command (`lapor.cli`: FastAPI, uvicorn, psycopg, the services; a second or more) inside its
handling of Ctrl-C. The console script imported `lapor.cli` itself, so a SIGINT during that import ended in a
traceback (session 32); now it ends as one during a command does. Only the standard library is imported here."""

from __future__ import annotations

import sys

INTERRUPTED = 130  # 128 + SIGINT: what the shell says of a process Ctrl-C stopped


def interrupted() -> int:
    """What `lapor` says and returns when Ctrl-C stops it: one line on stderr, no traceback."""
    print("lapor: interrupted", file=sys.stderr)
    return INTERRUPTED


def main() -> int:
    try:
        from lapor.cli import main as command

        return command()
    except KeyboardInterrupt:  # during the import: the command's own handling takes one after it
        return interrupted()


if __name__ == "__main__":
    sys.exit(main())
