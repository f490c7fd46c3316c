"""Project processes the end-to-end tests start for real (`make run`, a Procfile line)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import IO, Any

from config import PROJECT_ROOT


def start_in_session(argv: Sequence[str], *, env: Mapping[str, str], log: IO[Any]) -> subprocess.Popen[bytes]:
    """``argv`` run from the project root in a session of its own (so a test can signal its whole
    process group), with stdout and stderr to ``log``."""
    return subprocess.Popen(
        list(argv), cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
