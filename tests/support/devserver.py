"""The environment `make run` (``python -m admin.devserver run``) gets in the end-to-end tests."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.json_values import json_object

#: Set by a developer's shell or CI; `make run` must come up on its own defaults without them.
UNSET = (
    "PARCELHOOK_ADMIN_TOKEN",
    "PARCELHOOK_DATABASE_URL",
    "PARCELHOOK_ENCRYPTION_KEYS",
    "PARCELHOOK_REDIS_URL",
    "PARCELHOOK_SIGNING_KEY",
)


def devserver_env(var: Path, *, web: int, admin: int, redis_port: int) -> dict[str, str]:
    """This process's environment with everything under ``var`` and on the given loopback ports,
    one web and one worker process, and none of :data:`UNSET`."""
    env = {
        **os.environ,
        "PARCELHOOK_VAR_DIR": str(var),
        "PARCELHOOK_WEB_PORT": str(web),
        "PARCELHOOK_ADMIN_PORT": str(admin),
        "PARCELHOOK_REDIS_PORT": str(redis_port),
        "PARCELHOOK_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",  # what a user may have exported
        "PARCELHOOK_PUBLIC_URL": f"http://127.0.0.1:{web}",
        "WEB_CONCURRENCY": "1",
        "WORKER_PROCESSES": "1",
    }
    for name in UNSET:
        env.pop(name, None)
    return env


def get_json(url: str, token: str) -> dict[str, Any]:
    """GET an admin API ``url`` with the admin ``token``: the JSON object it answers."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json_object(json.loads(response.read()))
