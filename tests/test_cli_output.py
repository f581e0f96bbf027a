"""CLI messages and output: --version, --json everywhere, verbatim user text, untruncated
tables when not on a terminal, and --help with examples and choices."""

from __future__ import annotations

import subprocess
import sys

from custody import __version__


def test_version_prints_and_exits_zero(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("--version").expect(0).out == f"custody {__version__}\n"
    # eager: works before any command and ignores the rest of the line
    assert cli("--version", "list").expect(0).out == f"custody {__version__}\n"


def test_version_from_the_console_script() -> None:
    run = subprocess.run([sys.executable, "-m", "custody.cli", "--version"], capture_output=True,
                         text=True, check=False)
    assert (run.returncode, run.stdout, run.stderr) == (0, f"custody {__version__}\n", "")
