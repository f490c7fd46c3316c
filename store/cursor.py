"""Page cursors: the key of a page's last row as an opaque URL-safe token (``{field: key}`` in
JSON, base64url without padding) that the request for the next page hands back."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

MAX_KEY = 2**31 - 1  # a key the column can hold (INTEGER on PostgreSQL)


@dataclass(frozen=True)
class Cursor:
    field: str  # the name the key goes by in the token

    def encode(self, key: int) -> str:
        return base64.urlsafe_b64encode(json.dumps({self.field: key}).encode()).decode().rstrip("=")

    def decode(self, token: str) -> int:
        """The key in ``token``; ValueError, KeyError or TypeError when it is not one we issued."""
        padded = token + "=" * (-len(token) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))[self.field]
        if type(key) is not int or not 1 <= key <= MAX_KEY:  # a bool is no key
            raise ValueError(f"cursor {self.field!r} is not a row key")
        return key
