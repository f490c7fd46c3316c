"""`make run`, for real: the dev server starts Redis and the four Procfile processes, the
printed curl gets a 200, the shipment appears in the orders API, and Ctrl-C leaves nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.devserver import devserver_env, get_json
from tests.support.processes import start_in_session
from tests.support.services import free_port, missing

ROOT = Path(__file__).resolve().parents[2]


def _children_alive(pids: list[int]) -> list[int]:
    """Pids still running (zombies waiting for their reaper count as gone)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def test_make_run_serves_the_printed_curl_and_stops_cleanly(tmp_path: Path) -> None:
    if not shutil.which("redis-server"):
        missing("redis-server")
    web, admin, redis_port = free_port(), free_port(), free_port()
    env = devserver_env(tmp_path, web=web, admin=admin, redis_port=redis_port)
    log = open(tmp_path / "run.log", "w+")  # read back after the process ends
    process = start_in_session([sys.executable, "-m", "admin.devserver", "run"], env=env, log=log)
    try:
        deadline = time.monotonic() + 60
        banner = ""
        while time.monotonic() < deadline and "Try it" not in banner:
            time.sleep(0.3)
            banner = (tmp_path / "run.log").read_text()
        assert "Try it" in banner, banner
        token = (tmp_path / "admin-token").read_text().strip()
        assert token in banner
        curl = re.search(r"curl -sS -X POST '([^']+)'", banner)
        assert curl, banner
        webhook_url = curl.group(1)
        assert webhook_url.startswith(f"http://127.0.0.1:{web}/webhooks/shippo/demo?token=")
        body = (ROOT / "examples/shippo/transaction_created.json").read_bytes()
        answer = None
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(
                    webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = (response.status, json.loads(response.read()))
                break
            except OSError:
                time.sleep(0.3)
        assert answer is not None and answer[0] == 200 and answer[1]["status"] == "queued", answer
        order: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                order = get_json(f"http://127.0.0.1:{admin}/api/merchants/demo/orders/1001", token)
            except OSError:
                order = {}
            if order.get("shipments"):
                break
            time.sleep(0.3)
        assert order["shipments"][0]["tracking_number"] == "9205590164917312751089"
        assert order["status"] == "shipped"
        outbox: dict[str, Any] = {}
        while time.monotonic() < deadline:
            outbox = get_json(f"http://127.0.0.1:{admin}/api/outbox", token)
            if outbox["messages"]:
                break
            time.sleep(0.3)
        assert outbox["messages"][0]["kind"] == "shipped"
        assert "9205590164917312751089" in outbox["messages"][0]["text"]
        children = _descendants(process.pid)
        assert len(children) >= 5  # redis, honcho and the four processes (plus their workers)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    deadline = time.monotonic() + 15  # dramatiq's forked workers finish their shutdown
    while _children_alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _children_alive(children) == [], (tmp_path / "run.log").read_text()[-3000:]
    log_text = (tmp_path / "run.log").read_text()
    assert "parcelhook stopped" in log_text
    web_lines = [
        line for line in log_text.splitlines() if line[9:].lstrip().startswith("web.1") and "POST" in line
    ]
    assert web_lines, "the receiver's access log shows the webhook"
    assert not [line for line in web_lines if "token=" in line], "the webhook token never reaches a log"
