"""Migration steps between OpenNebula database versions: discovery and shared helpers.

Steps are small modules named ``v<X>_to_<Y>`` (dots as underscores) in ``shared/`` (the
federated tables) and ``local/`` (the rest), each defining ``SOURCE``, ``TARGET`` and
``upgrade(backend, progress)``.  They are chained by exact version: the step whose
``SOURCE`` is the database's version runs, then the one starting at its ``TARGET``, and so
on.  Discovery reads file names only; a step's module is imported when it runs.

``rewrite_table`` is the pattern nearly every step uses: rename ``T`` to ``old_T``, create
``T`` with the target version's schema, copy the rows page by page through a per-row
transform (bodies parsed and edited with lxml), drop ``old_T``.  Pages are read by primary
key (keyset pagination), so memory stays bounded and other queries may run between pages
on every engine.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from lxml import etree

from onetools.db.backends.base import Backend
from onetools.db.errors import DatabaseError
from onetools.db.schema import (
    SCHEMAS,
    Index,
    Table,
    create_index_sql,
    create_table_sql,
    drop_index,
    list_indexes,
    rename_table,
)

CHAINS = ("shared", "local")
OLD_PREFIX = "old_"
BATCH = 500

_STEP_NAME = re.compile(r"^v(\d+)_(\d+)_(\d+)_to_(\d+)_(\d+)_(\d+)$")


class Progress(Protocol):
    """Called as rows are processed: step name, rows done, rows in total."""

    def __call__(self, step: str, done: int, total: int, /) -> None: ...


def no_progress(step: str, done: int, total: int) -> None:
    """A ``Progress`` that reports nothing."""


class MigrationError(DatabaseError):
    """A step failed; the message names the step and, for bad data, the table and row."""

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        table: str | None = None,
        row_id: object = None,
    ) -> None:
        where = []
        if step:
            where.append(f"step {step}")
        if table:
            where.append(f"table {table}")
        if row_id is not None:
            where.append(f"row {row_id}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.step = step
        self.table = table
        self.row_id = row_id


@dataclass(frozen=True)
class MigrationStep:
    """One step of a chain, known by its module name."""

    chain: str
    name: str
    source: str
    target: str

    @property
    def label(self) -> str:
        """``shared/5.10.0_to_5.12.0``: how logs and errors name the step."""
        return f"{self.chain}/{self.source}_to_{self.target}"

    def module(self) -> ModuleType:
        """Import the step's module and check it declares the versions its name says."""
        module = importlib.import_module(f"{__name__}.{self.chain}.{self.name}")
        if (getattr(module, "SOURCE", None), getattr(module, "TARGET", None)) != (
            self.source,
            self.target,
        ):
            raise MigrationError(f"module {module.__name__} declares other versions than its name")
        return module

    def run(self, backend: Backend, progress: Progress = no_progress) -> None:
        """Apply the step (inside the caller's transaction, if any)."""
        upgrade: Callable[[Backend, Progress], None] = self.module().upgrade
        upgrade(backend, progress)


def discover(chain: str) -> list[MigrationStep]:
    """Every step of ``chain`` found in its package, sorted by source version."""
    if chain not in CHAINS:
        raise ValueError(f"unknown chain {chain}")
    package = importlib.import_module(f"{__name__}.{chain}")
    steps = []
    for info in pkgutil.iter_modules(package.__path__):
        match = _STEP_NAME.match(info.name)
        if not match:
            continue
        numbers = match.groups()
        steps.append(MigrationStep(chain, info.name, ".".join(numbers[:3]), ".".join(numbers[3:])))
    return sorted(steps, key=lambda step: tuple(int(n) for n in step.source.split(".")))


def pending_steps(chain: str, version: str, target: str | None = None) -> list[MigrationStep]:
    """The steps that take ``chain`` from ``version`` to ``target`` (default: as far as
    steps exist), in order."""
    steps = discover(chain)
    result: list[MigrationStep] = []
    current = version
    while current != target:
        matches = [step for step in steps if step.source == current]
        if not matches:
            return result
        if len(matches) > 1:
            raise MigrationError(
                f"several {chain} steps start at {current}: "
                + ", ".join(step.name for step in matches)
            )
        result.append(matches[0])
        current = matches[0].target
    return result


# -- XML bodies ------------------------------------------------------------------------------

_PARSER = etree.XMLParser(remove_blank_text=True, strip_cdata=False, resolve_entities=False)


def parse_body(body: object) -> etree._Element:
    """Parse an XML body (whitespace-only text dropped, CDATA kept)."""
    if body is None:
        raise ValueError("body is NULL")
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
    else:
        raise ValueError(f"body is not text ({type(body).__name__})")
    return etree.fromstring(data, _PARSER)


def to_text(root: etree._Element) -> str:
    """Serialise a body back to text (compact, as oned writes it)."""
    return etree.tostring(root, encoding="unicode")


def text_of(root: etree._Element, path: str, default: str = "") -> str:
    """Text of the first element at ``path`` (relative to ``root``), ``default`` if none."""
    found = root.find(path)
    if found is None or found.text is None:
        return default
    return found.text


def append(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    """Append a child element (new elements go last, as in the original migrators)."""
    child = etree.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def remove_all(root: etree._Element, path: str) -> None:
    """Remove every element matching ``path`` (an ElementPath relative to ``root``)."""
    for element in root.findall(path):
        parent = element.getparent()
        if parent is not None:
            parent.remove(element)


def require(root: etree._Element, path: str) -> etree._Element:
    """The element at ``path``; ``ValueError`` naming it when missing."""
    found = root.find(path)
    if found is None:
        raise ValueError(f"missing element {root.tag}/{path}")
    return found


# -- table rewrite ---------------------------------------------------------------------------

RowTransform = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def _keyset(keys: tuple[str, ...], last: tuple[Any, ...] | None) -> tuple[str, list[Any]]:
    """WHERE clause and parameters for "rows after ``last``" in primary-key order."""
    if last is None:
        return "", []
    clauses = []
    params: list[Any] = []
    for i, key in enumerate(keys):
        parts = [f"{k} = ?" for k in keys[:i]] + [f"{key} > ?"]
        clauses.append("(" + " AND ".join(parts) + ")")
        params += list(last[: i + 1])
    return " WHERE " + " OR ".join(clauses), params


def iterate_rows(
    backend: Backend,
    table: str,
    keys: tuple[str, ...],
    columns: tuple[str, ...] | None = None,
    batch: int = BATCH,
) -> Iterator[dict[str, Any]]:
    """Rows of ``table`` as dicts in primary-key order, one page of ``batch`` at a time."""
    names = columns or tuple(backend.columns(table))
    select = ", ".join(names)
    order = ", ".join(keys)
    key_positions = [names.index(key) for key in keys]
    last: tuple[Any, ...] | None = None
    while True:
        where, params = _keyset(keys, last)
        page = backend.query(
            f"SELECT {select} FROM {table}{where} ORDER BY {order} LIMIT {batch}", params
        )
        for row in page:
            yield dict(zip(names, row, strict=True))
        if len(page) < batch:
            return
        last = tuple(page[-1][pos] for pos in key_positions)


def rewrite_table(
    backend: Backend,
    table: str,
    transform: RowTransform,
    *,
    step: str,
    target_version: str,
    progress: Progress = no_progress,
    definition: Table | None = None,
    batch: int = BATCH,
) -> int:
    """Rebuild ``table`` with ``target_version``'s schema, each row passed through ``transform``.

    ``transform`` gets the old row as a dict and returns the new row (missing columns are
    NULL) or None to leave it out.  Any error raised for a row is reported as a
    ``MigrationError`` naming the step, the table and the row's key.  Returns rows written.
    """
    new = definition or SCHEMAS[target_version].table(table)
    old = OLD_PREFIX + table
    total = int(str(backend.scalar(f"SELECT COUNT(*) FROM {table}")))
    # Named indexes travel with a renamed table and their names are global on SQLite and
    # PostgreSQL: drop them here, create the target version's ones on the new table.
    for name in list_indexes(backend, table):
        drop_index(backend, Index(name, table, ()))
    backend.execute(f"DROP TABLE IF EXISTS {old}")
    rename_table(backend, table, old)
    # Named indexes are built after the copy (one bulk build, not an update per row).  MySQL's
    # FULLTEXT stays in the CREATE: adding the first one afterwards makes InnoDB rebuild the
    # whole table (tried: no faster on a 20k-VM MariaDB upgrade).
    backend.execute(create_table_sql(new, backend.kind))

    columns = new.column_names
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    keys = new.primary_key
    done = written = 0
    pending: list[tuple[Any, ...]] = []
    progress(step, 0, total)
    for row in iterate_rows(backend, old, keys, batch=batch):
        try:
            result = transform(row)
        except MigrationError:
            raise
        except Exception as exc:  # any bad data: name the row
            row_id = row[keys[0]] if len(keys) == 1 else tuple(row[key] for key in keys)
            raise MigrationError(
                f"{type(exc).__name__}: {exc}", step=step, table=table, row_id=row_id
            ) from exc
        done += 1
        if result is not None:
            pending.append(tuple(result.get(column) for column in columns))
        if len(pending) >= batch:
            backend.executemany(insert, pending)
            written += len(pending)
            pending.clear()
        if done % batch == 0:
            progress(step, done, total)
    if pending:
        backend.executemany(insert, pending)
        written += len(pending)
    progress(step, done, total)
    for index in SCHEMAS[target_version].indexes_of(table):
        backend.execute(create_index_sql(index))
    backend.execute(f"DROP TABLE {old}")
    return written


def body_transform(edit: Callable[[etree._Element, dict[str, Any]], None]) -> RowTransform:
    """A row transform that parses ``body``, lets ``edit`` change it, and writes it back."""

    def transform(row: dict[str, Any]) -> dict[str, Any]:
        root = parse_body(row["body"])
        edit(root, row)
        row["body"] = to_text(root)
        return row

    return transform


def create_table(backend: Backend, table: str, target_version: str) -> None:
    """Create ``table`` as ``target_version`` defines it (dropping a stale one first)."""
    backend.execute(f"DROP TABLE IF EXISTS {table}")
    backend.execute(create_table_sql(SCHEMAS[target_version].table(table), backend.kind))
    for index in SCHEMAS[target_version].indexes_of(table):
        backend.execute(create_index_sql(index))
