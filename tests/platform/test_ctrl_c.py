"""Ctrl-C stops `lapor` with one line on stderr, `lapor: interrupted`, and exit 130 (128 + SIGINT), wherever it
lands: while the command's modules are still importing, and in a rebuild's processes, whose fresh tables are
dropped. Real `lapor` processes, started as the console script starts them, in a session of their own so that
SIGINT goes to every process of it, as a terminal's Ctrl-C goes to its foreground group (session 32: both ended
in tracebacks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from lapor.app import load_services
from tests.reporting.test_rebuild import open_context, run_live

ROOT = Path(__file__).resolve().parents[2]
MARKER_WAIT = 120.0  # seconds at most for a process to show it got where the test waits for it: a hung one fails


def console_script() -> str:
    """What the `lapor` console script runs, from pyproject.toml: `from <module> import <function>` and its exit."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        module, function = tomllib.load(file)["project"]["scripts"]["lapor"].split(":")
    return f"from {module} import {function}; sys.exit({function}())"


def lapor(arguments: list[str], before: str = "", env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`lapor ARGUMENTS` in a session of its own; `before`: Python run first, in the same process. SIGINT is as a
    terminal leaves it (its default), whatever the test run inherited: a shell's background job (CI started with
    `&`) inherits it ignored, and Python keeps it so, as `lapor` should."""
    code = f"import sys\n{before}\n{console_script()}"
    return subprocess.Popen(
        [sys.executable, "-c", code, *arguments], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=_sigint_as_a_terminal_leaves_it,
    )


def _sigint_as_a_terminal_leaves_it() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_once(process: subprocess.Popen[str], ready: Callable[[], bool]) -> tuple[str, str]:
    """Once `ready()` (polled), SIGINT to the process's whole group; its stdout and stderr after it ended."""
    deadline = time.monotonic() + MARKER_WAIT
    while not ready():
        assert process.poll() is None, f"ended before it was ready: {process.communicate()}"
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    return process.communicate(timeout=MARKER_WAIT)


# Run in the process before the console script: the import of uvicorn (by lapor.cli) says so on stdout and waits
# there for a signal.
PAUSED_IMPORT = """
import signal

class PauseAtUvicorn:
    def find_spec(self, name, path=None, target=None):
        if name == "uvicorn":
            print("importing uvicorn", flush=True)
            signal.pause()
        return None

sys.meta_path.insert(0, PauseAtUvicorn())
"""


def test_ctrl_c_while_lapor_imports_its_command_says_interrupted_in_one_line_and_exits_130():
    """The console script imported `lapor.cli` outside the command's handling of Ctrl-C: a SIGINT during that
    second of imports printed a traceback (from FastAPI's or pydantic's imports) and ended by the signal."""
    process = lapor(["--help"], before=PAUSED_IMPORT)
    assert process.stdout is not None
    assert process.stdout.readline() == "importing uvicorn\n"
    out, err = ctrl_c_once(process, lambda: True)
    assert (process.returncode, err, out) == (130, "lapor: interrupted\n", "")


# Put first on the path of a rebuild's processes (spawned ones too: Python imports `sitecustomize` at every start):
# each building process, the rebuild itself or a share's, leaves a file named by its pid in LAPOR_TEST_PAUSED, saying
# whether SIGINT reaches it, and waits there for a signal before it builds. A rebuild of the test's log takes a tenth
# of a second: without the pause, the signal could come after it ended.
PAUSE_BEFORE_BUILDING = """
import os
import signal
from pathlib import Path

import lapor.rebuild

_build = lapor.rebuild._build


def _paused_build(*args, **kwargs):
    deaf = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    (Path(os.environ["LAPOR_TEST_PAUSED"]) / str(os.getpid())).write_text("deaf" if deaf else "hears")
    signal.pause()
    return _build(*args, **kwargs)


lapor.rebuild._build = _paused_build
"""


@pytest.mark.parametrize(("processes", "keep"), [("2", False), ("2", True), ("1", False)])
def test_ctrl_c_during_a_rebuild_drops_its_fresh_tables_and_says_interrupted(
    tmp_path: Path, processes: str, keep: bool
):
    """Ctrl-C reached every rebuild process: each printed a traceback from wherever it was (its imports, its
    build), and the parent waited for them. Now they never see it; the parent ends them, drops every share's
    fresh tables (with --keep too: half-built tables would look like a rebuild) and the `rebuild/` folder it
    made, and says so in one line. The signal is sent while every building process is at its build's start (in
    one process: the rebuild itself)."""
    data = tmp_path / "var"
    ctx = open_context(data, None)
    try:
        run_live(ctx, load_services(), batch_size=500)
    finally:
        ctx.close()
    hooks, paused = tmp_path / "hooks", tmp_path / "paused"
    hooks.mkdir()
    paused.mkdir()
    (hooks / "sitecustomize.py").write_text(PAUSE_BEFORE_BUILDING)
    process = lapor(
        ["rebuild", "--data", str(data), "--processes", processes] + (["--keep"] if keep else []),
        env={"PYTHONPATH": os.pathsep.join([str(hooks), str(ROOT)]), "LAPOR_TEST_PAUSED": str(paused)},
    )
    out, err = ctrl_c_once(process, lambda: len(list(paused.iterdir())) == int(processes))
    assert (process.returncode, err) == (130, "lapor: interrupted\n"), out
    # The shares' processes never get the signal (a share's traceback may or may not have come out before the
    # parent ended it); a rebuild in one process is the one that hears it.
    heard = sorted(marker.read_text() for marker in paused.iterdir())
    assert heard == (["deaf", "deaf"] if processes == "2" else ["hears"])
    assert (data / "rebuild").exists() is False
    assert "identical" not in out
