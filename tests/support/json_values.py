"""JSON read back in tests (a Flask response's ``get_json()``, ``json.loads`` of a body), typed:
a test that expects an object says so, and gets a clear failure when it is anything else."""

from __future__ import annotations

from typing import Any


def json_object(value: Any) -> dict[str, Any]:
    """``value`` (parsed JSON) as the object it must be."""
    assert isinstance(value, dict), f"expected a JSON object, got {value!r}"
    return value
