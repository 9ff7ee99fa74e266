"""`python -m tests.platform.launch up|serve ...`: the real `lapor` command with the probe service beside the
four, for the subprocess tests (the services have no subscriptions yet; the probe's is honest and tiny)."""

from __future__ import annotations

import sys

from lapor.app import load_services
from lapor.cli import main
from tests.platform import probe

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], services=[*load_services(), probe.SERVICE]))
