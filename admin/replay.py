"""``parcelhook replay``: post Shippo bodies to a running receiver, signed for a merchant."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TextIO

from config import Settings
from ingest.signature import HEADER, sign


def load_bodies(paths: list[str]) -> list[bytes]:
    bodies: list[bytes] = []
    for name in paths:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            bodies.extend(line.strip().encode() for line in text.splitlines() if line.strip())
        else:
            json.loads(text)  # fail early on a broken file, naming it
            bodies.append(text.encode())
    return bodies


def post(url: str, body: bytes, secret: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[HEADER] = sign(secret, body, int(time.time()))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def replay(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from store import merchants as merchant_store
    from store.database import Database
    from store.errors import NotFound

    db = Database(settings.database_url)
    try:
        with db.read() as conn:
            merchant = merchant_store.require(conn, args.merchant, settings.vault)
    except NotFound as exc:
        print(f"parcelhook: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    base = (args.url or settings.public_url).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise SystemExit(f"parcelhook: --url must be http(s), got {base!r}")
    url = f"{base}/webhooks/shippo/{merchant.slug}?token={merchant.webhook_token}"
    secret = args.secret or (merchant.hmac_secrets[0] if merchant.hmac_secrets else None)
    bodies = load_bodies(args.files)
    bodies = bodies + [b for b in bodies for _ in range(args.duplicates)]
    if args.shuffle:
        random.shuffle(bodies)
    outcomes: Counter[str] = Counter()
    for body in bodies:
        status, answer = post(url, body, secret)
        outcomes[f"{status} {answer.get('status') or answer.get('error', '')}".strip()] += 1
        if args.delay:
            time.sleep(args.delay)
    for outcome, count in sorted(outcomes.items()):
        print(f"{count:6d}  {outcome}", file=out)
    return 0 if all(key.startswith("200") for key in outcomes) else 1
