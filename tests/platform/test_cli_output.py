"""What `lapor` does with its output (a reader that went away: `lapor audit verify | head -1`) and what a refused
command leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lapor.context import ServiceContext
from lapor.settings import load_settings
from lapor.store import NewEvent
from lapor.subscriptions import Subscription, SubscriptionRunner
from tests.platform._servers import ROOT, run_lapor

SECRET = "s3cret-" + "x" * 40


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory whose store holds a few events, with read models a subscription has run on."""
    ctx = ServiceContext.open(load_settings(data=tmp_path, secret=SECRET))
    try:
        for n in range(3):
            ctx.store.append(f"complaint-T{n}", [NewEvent("Noted", {"n": n})])
        SubscriptionRunner(ctx.store, ctx.db, Subscription("notes", lambda event, tx: None)).run_until_caught_up()
    finally:
        ctx.close()
    return tmp_path


def lapor_to_a_closed_pipe(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`lapor <arguments>` with its stdout a pipe whose reader has already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "lapor.cli", *arguments], cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "LAPOR_SECRET": SECRET}, timeout=120,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "arguments",
    [
        ["token", "create", "--role", "auditor"],  # one line, printed into the buffer: the flush at exit found it
        ["audit", "verify"],  # rich's progress display: it ended the process with 1, "a broken link found"
        ["rebuild", "--service", "intake", "--processes", "1"],  # rich's tables: 1 too, "a table differs"
        ["parked", "list"],
    ],
)
def test_a_reader_gone_away_ends_the_command_quietly_with_the_code_of_sigpipe(data: Path, arguments: list[str]):
    """Session 31: a traceback (BrokenPipeError, or "Exception ignored ... BrokenPipeError" and exit 120), or exit 1,
    which the commands that check say of a finding."""
    result = lapor_to_a_closed_pipe(*arguments, "--data", str(data))
    assert result.stderr == ""
    assert result.returncode == 141  # 128 + SIGPIPE, as the shell says of a process that signal ended


@pytest.mark.parametrize(
    "arguments",
    [["rebuild"], ["seed"], ["parked", "replay", "--subscription", "followup.reactions", "--all"]],
)
def test_a_store_that_will_not_open_is_refused_without_a_signing_secret_left_behind(tmp_path: Path, arguments):
    """A data directory holding something else where the store should be: the command was refused, and a new
    `<data>/secret` stayed behind, made before the store was opened (session 31)."""
    (tmp_path / "events.db").write_text("not a database\n")
    environment = {name: value for name, value in os.environ.items() if not name.upper().startswith("LAPOR_")}
    result = run_lapor(*arguments, "--data", str(tmp_path), env=environment)
    assert result.returncode == 2
    assert "file is not a database" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["events.db"]
