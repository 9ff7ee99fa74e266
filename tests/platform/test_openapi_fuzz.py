"""The whole HTTP surface fuzzed from its own OpenAPI document against a real `lapor up --demo`.

Schemathesis's command line runs all its phases over every operation (the document's examples, boundary values
of every constraint, random cases valid and invalid, and sequences that follow the responses' links), checking
that the answer is never a server error, that its status is one the document lists for the operation, and that
its content type and body are the documented ones, so every error is an application/problem+json Problem, and
that a request the document calls invalid (a number where it asks for a date, 0 for a flag) is refused. It
runs as three callers: the national admin (who may do the most), an agency's liaison (scoped to Kota Kupang) and
nobody (no token). Generation is deterministic, so every run sends the same cases and a failure is reproducible
(the output ends with a curl command per failure); the server's state still grows from case to case. The
command line is used rather than schemathesis's pytest plugin because its fixture-loaded schemas fail with
pytest 9 (`'Function' object has no attribute '_nodeid'`), and it is what an operator would run by hand.

`/api/stream` is left out: it answers an endless event stream, which a request-response check cannot read to
its end (its own tests are tests/reporting/test_stream.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform._servers import Server, lapor

pytestmark = pytest.mark.slow

CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
    "negative_data_rejection",  # a request the document calls invalid is refused
])
EXAMPLES = 10  # cases per operation, phase and mode


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A demo server and the bearer token it printed for each role."""
    home: Path = tmp_path_factory.mktemp("fuzz")
    with lapor(home, "up", "--data", str(home / "var"), "--demo", name="fuzz", module="lapor.cli") as server:
        printed = server.stdout.read_text().splitlines()
        tokens = dict(line.split() for line in printed if line.startswith("  "))
        yield server, tokens


@pytest.mark.parametrize("caller", ["admin_national", "liaison", None], ids=lambda caller: caller or "anonymous")
def test_every_operation_answers_as_documented(demo, caller):
    server, tokens = demo
    authorization = [] if caller is None else ["--header", f"Authorization: Bearer {tokens[caller]}"]
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", *authorization,
            "--exclude-path-regex", "^/api/stream", "--checks", CHECKS, "--max-examples", str(EXAMPLES),
            "--generation-deterministic", "--workers", "1", "--no-color",
        ],
        capture_output=True, text=True, timeout=600, cwd=server.stdout.parent,  # its cache stays out of the repo
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", run.stdout).groups())
    assert generated == passed > 1000  # every case passed, and the cases really were sent
