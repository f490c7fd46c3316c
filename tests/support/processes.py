"""Project processes the tests start for real (`make run`, a Procfile line, a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from config import PROJECT_ROOT


def start_in_session(argv: Sequence[str], *, env: Mapping[str, str], log: IO[Any]) -> subprocess.Popen[bytes]:
    """``argv`` run from the project root in a session of its own (so a test can signal its whole
    process group), with stdout and stderr to ``log``."""
    return subprocess.Popen(
        list(argv), cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def python_ok(
    args: Sequence[str], *, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python args`` (this interpreter) run from the project root to its end; it must exit 0
    (the assertion shows its stderr). Returns what it printed."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done
