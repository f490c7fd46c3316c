"""SQL lives in ``store/``: the apps and the workers call repositories; they never import the
tables (``store.schema``) or SQLAlchemy's query builder. And the admin app reaches order
logic through the application service ``workers/orders.py``, never through event processing."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CALLERS = ("admin", "ingest", "workers")
#: Engine-level helpers that build no SQL: the ``Connection`` type, ``make_url``.
ALLOWED_SQLALCHEMY = frozenset({"sqlalchemy.engine"})


def _modules() -> list[Path]:
    return sorted(p for package in CALLERS for p in (ROOT / package).rglob("*.py"))


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_the_callers_exist() -> None:
    assert len(_modules()) > 30


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_outside_store_builds_sql(path: Path) -> None:
    offending = sorted(
        {
            name
            for name in _imports(path)
            if name == "store.schema"
            or name.startswith("store.schema.")
            or (
                (name == "sqlalchemy" or name.startswith("sqlalchemy."))
                and not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED_SQLALCHEMY)
            )
        }
    )
    assert offending == [], (
        f"{path.relative_to(ROOT)} imports {offending}: move the query into a store/ repository"
    )


@pytest.mark.parametrize(
    "path", sorted((ROOT / "admin").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_admin_does_not_import_event_processing(path: Path) -> None:
    assert "workers.processing" not in set(_imports(path)), "use the application service workers/orders.py"
