"""`lapor seed` loads the demo data and stops with every view caught up, appending nothing the second time;
`lapor bench NAME ...` runs the checkout's benchmark of that name with its own options."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest

from lapor.cli import main
from lapor.context import ServiceContext
from lapor.settings import load_settings
from services.routing.service import SERVICE


def _appended(output: str) -> int:
    match = re.search(r"(\d+) events appended", output)
    assert match is not None, output
    return int(match.group(1))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_seed_loads_the_demo_into_the_store_and_the_views_once(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    data = tmp_path / "var"
    if backend == "postgres":
        monkeypatch.setenv("LAPOR_STORE", request.getfixturevalue("postgres_url"))
    assert main(["seed", "--data", str(data)]) == 0
    first = _appended(capsys.readouterr().out)
    assert first > 0

    ctx = ServiceContext.open(load_settings(data=data))
    try:
        head = ctx.store.head_position()
        assert len(ctx.store.read_all(0, limit=first + 1)) == first  # the count is of events, not of positions
        with ctx.db.read() as tx:
            reports = tx.fetchone("SELECT count(*) FROM rpt_complaints")
            checkpoints = tx.fetchall("SELECT name, position FROM subscription_checkpoints")
    finally:
        ctx.close()
    assert reports is not None
    assert reports[0] > 0  # the national view has the sample reports
    assert checkpoints
    assert all(position == head for _, position in checkpoints)  # nothing left for `lapor up` to catch up on

    assert main(["seed", "--data", str(data)]) == 0
    assert _appended(capsys.readouterr().out) == 0


def test_bench_runs_the_named_benchmark_with_its_options(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    store = f"sqlite:///{tmp_path / 'bench' / 'events.db'}"
    (tmp_path / "bench").mkdir()
    assert main(["bench", "store", "--store", store, "--events", "2000", "--commands", "50", "--writers", "2",
                 "--processes", "1"]) == 0
    out = capfd.readouterr().out
    assert re.search(r"command-per-event, 1 writer: 50 events in [0-9.]+ s = [0-9,]+ events/s", out), out
    assert (tmp_path / "bench" / "events.db").is_file()


def test_bench_passes_on_the_benchmarks_exit_code(capfd: pytest.CaptureFixture) -> None:
    assert main(["bench", "store", "--no-such-option"]) == 2
    assert "unrecognized arguments: --no-such-option" in capfd.readouterr().err


def test_bench_refuses_a_name_it_does_not_know(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_new_empty_store_is_announced_once(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    """A mistyped LAPOR_DATA or LAPOR_STORE starts an empty installation: the log says so, the first time only."""
    store = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    settings = load_settings(data=tmp_path / "var", store=store)
    for opening in ("first", "again"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lapor.context"):
            ServiceContext.open(settings).close()
        created = [record.getMessage() for record in caplog.records if "new, empty event store" in record.getMessage()]
        assert len(created) == (1 if opening == "first" else 0), opening


def test_ctrl_c_during_a_command_ends_it_with_one_line_and_the_shells_code(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Ctrl-C lands wherever the main thread is: here in a service's seeding, after the services' subscriptions
    started. The command stops them, closes the store, says so in one line and exits 130 (128 + SIGINT), where it
    printed a traceback; the store opens again afterwards."""

    def interrupted(ctx: ServiceContext) -> None:
        raise KeyboardInterrupt

    data = tmp_path / "var"
    services = [replace(SERVICE, seed_demo=interrupted)]
    assert main(["seed", "--data", str(data)], services=services) == 130
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == "lapor: interrupted"
    assert "Traceback" not in captured.err
    assert main(["seed", "--data", str(data)]) == 0  # nothing left locked or half-open
