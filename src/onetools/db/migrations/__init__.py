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

During ``onedb upgrade`` the steps get a ``DeferringBackend``: a rewrite asked for with
``defer=True`` waits, and the waiting rewrites of one table run as one pass (one parse of
each body, one copy) when a later statement names the table or at the end of the chain.  A
step may defer a rewrite only if its transform reads nothing but its row; the other tables
it writes go in ``also_writes`` and what needs the finished table in ``after``.  Transforms
built with ``body_transform`` share the parsed body within a pass.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from lxml import etree

from onetools.db.backends.base import Backend, Row
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
BodyEditor = Callable[[etree._Element, dict[str, Any]], None]


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


class BodyEdit:
    """A row transform that edits the parsed ``body`` in place.

    Consecutive body edits of one fused rewrite (see ``DeferringBackend``) share one parse and
    one serialisation.  ``modifies=False`` marks an edit that only reads the tree (the body
    text is then kept as it was, byte for byte, unless an earlier edit changed it).
    """

    def __init__(self, edit: BodyEditor, *, modifies: bool = True) -> None:
        self.edit = edit
        self.modifies = modifies

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        root = parse_body(row["body"])
        self.edit(root, row)
        if self.modifies:
            row["body"] = to_text(root)
        return row


def body_transform(edit: BodyEditor, *, modifies: bool = True) -> BodyEdit:
    """A row transform that parses ``body``, lets ``edit`` change it, and writes it back."""
    return BodyEdit(edit, modifies=modifies)


@dataclass
class _Rewrite:
    """One step's rewrite of one table: what ``rewrite_table`` was asked to do."""

    transform: RowTransform
    step: str
    target_version: str
    definition: Table
    also_writes: tuple[str, ...]
    after: Callable[[], None] | None


class _FusedTransform:
    """The transforms of several rewrites of one table applied to each row in order.

    Remembers which rewrite runs, so that an error names its step.
    """

    def __init__(self, rewrites: list[_Rewrite]) -> None:
        self.rewrites = rewrites
        self.step = rewrites[0].step

    def __call__(self, row: dict[str, Any]) -> dict[str, Any] | None:
        root: etree._Element | None = None
        dirty = False
        for rewrite in self.rewrites:
            self.step = rewrite.step
            transform = rewrite.transform
            if isinstance(transform, BodyEdit):
                if root is None:
                    root = parse_body(row["body"])
                transform.edit(root, row)
                dirty = dirty or transform.modifies
                continue
            if root is not None:
                if dirty:
                    row["body"] = to_text(root)
                root, dirty = None, False
            result = transform(row)
            if result is None:
                return None
            row = result
        if root is not None and dirty:
            row["body"] = to_text(root)
        return row


def _copy_rows(
    backend: Backend,
    table: str,
    rewrites: list[_Rewrite],
    progress: Progress,
    batch: int,
) -> int:
    """Rebuild ``table`` once, passing each row through every rewrite in order."""
    last = rewrites[-1]
    new = last.definition
    label = last.step if len(rewrites) == 1 else f"{rewrites[0].step} .. {last.step}"
    transform = _FusedTransform(rewrites)
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
    pending: list[Sequence[Any]] = []
    progress(label, 0, total)
    with backend.bulk_writer(insert) as write:
        for row in iterate_rows(backend, old, keys, batch=batch):
            try:
                result = transform(row)
            except MigrationError:
                raise
            except Exception as exc:  # any bad data: name the row
                row_id = row[keys[0]] if len(keys) == 1 else tuple(row[key] for key in keys)
                raise MigrationError(
                    f"{type(exc).__name__}: {exc}", step=transform.step, table=table, row_id=row_id
                ) from exc
            done += 1
            if result is not None:
                pending.append(tuple(result.get(column) for column in columns))
            if len(pending) >= batch:
                write(pending)  # handed over: a new list for the next batch
                written += len(pending)
                pending = []
            if done % batch == 0:
                progress(label, done, total)
        if pending:
            write(pending)
            written += len(pending)
    progress(label, done, total)
    for index in SCHEMAS[last.target_version].indexes_of(table):
        backend.execute(create_index_sql(index))
    backend.execute(f"DROP TABLE {old}")
    for rewrite in rewrites:
        if rewrite.after is not None:
            rewrite.after()
    return written


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
    defer: bool = False,
    also_writes: tuple[str, ...] = (),
    after: Callable[[], None] | None = None,
) -> None:
    """Rebuild ``table`` with ``target_version``'s schema, each row passed through ``transform``.

    ``transform`` gets the old row as a dict and returns the new row (missing columns are
    NULL) or None to leave it out.  Any error raised for a row is reported as a
    ``MigrationError`` naming the step, the table and the row's key.  ``after`` runs once
    the table is rebuilt.

    With ``defer`` (and ``backend`` a ``DeferringBackend``, as during ``onedb upgrade``) the
    rebuild may be postponed and fused with later steps' rewrites of the same table into one
    pass.  Only a transform that depends on nothing but its row may be deferred; the tables
    it writes besides ``table`` go in ``also_writes``, and work that needs the rebuilt table
    goes in ``after``.
    """
    rewrite = _Rewrite(
        transform,
        step,
        target_version,
        definition or SCHEMAS[target_version].table(table),
        also_writes,
        after,
    )
    if isinstance(backend, DeferringBackend):
        backend.rewrite(table, rewrite, defer=defer, progress=progress, batch=batch)
    else:
        _copy_rows(backend, table, [rewrite], progress, batch)


class DeferringBackend(Backend):
    """A backend for a chain of steps that fuses their rewrites of one table into one pass.

    A deferred rewrite waits until a statement (or schema lookup) names its table or one of
    the tables it writes; then, or at ``flush()``, all rewrites waiting on that table run as
    one copy.  A step that rewrites a table without ``defer`` runs at once, together with the
    rewrites waiting on it.  Rows are thus parsed and written once for several steps: an
    upgrade 6.0.0 -> 6.10.0 rewrites ``vm_pool`` once instead of four times.
    """

    def __init__(self, inner: Backend, log: Callable[[str], None] | None = None) -> None:
        super().__init__(inner.settings)
        self.inner = inner
        self.kind = inner.kind
        self.transactional_ddl = inner.transactional_ddl
        self._log = log
        #: The fused passes run: (table, steps, seconds), for reports.
        self.fused: list[tuple[str, list[str], float]] = []
        self._pending: dict[str, tuple[list[_Rewrite], Progress, int]] = {}

    # -- deferral ----------------------------------------------------------------------------
    def rewrite(
        self, table: str, rewrite: _Rewrite, *, defer: bool, progress: Progress, batch: int
    ) -> None:
        """Queue ``rewrite`` of ``table`` (``defer``) or run it with those queued before."""
        # Other tables' waiting rewrites that write these tables must run first.
        self._barrier(table, *rewrite.also_writes, keep=table)
        queued, _, _ = self._pending.pop(table, ([], progress, batch))
        queued.append(rewrite)
        if defer:
            self._pending[table] = (queued, progress, batch)
        else:
            self._run(table, queued, progress, batch)

    def flush(self) -> None:
        """Run every rewrite still waiting."""
        while self._pending:
            self._flush(next(iter(self._pending)))

    def _flush(self, table: str) -> None:
        queued, progress, batch = self._pending.pop(table)
        self._run(table, queued, progress, batch)

    def _run(self, table: str, queued: list[_Rewrite], progress: Progress, batch: int) -> None:
        steps = [rewrite.step for rewrite in queued]
        if len(steps) > 1 and self._log is not None:
            self._log(f"  > Rewriting {table} once for {', '.join(steps)}")
        begun = time.monotonic()
        _copy_rows(self.inner, table, queued, progress, batch)
        if len(steps) > 1:
            self.fused.append((table, steps, time.monotonic() - begun))

    def _touched(self, table: str) -> set[str]:
        """Lower-case names of the tables the rewrites waiting on ``table`` read or write."""
        queued = self._pending[table][0]
        return {table.lower(), *(name.lower() for r in queued for name in r.also_writes)}

    def _owner(self, name: str, keep: str | None = None) -> str | None:
        """The waiting table (other than ``keep``) whose rewrite reads or writes ``name``."""
        name = name.lower()
        return next(
            (table for table in self._pending if table != keep and name in self._touched(table)),
            None,
        )

    def _barrier(self, *names: str, keep: str | None = None) -> None:
        """Run the waiting rewrites that read or write any of ``names``."""
        for name in names:
            while (owner := self._owner(name, keep)) is not None:
                self._flush(owner)

    def _before(self, sql: str) -> None:
        """Run the waiting rewrites whose tables ``sql`` names (re caches the pattern)."""
        while self._pending:
            names = sorted(set().union(*map(self._touched, self._pending)))
            match = re.search(r"\b(" + "|".join(map(re.escape, names)) + r")\b", sql, re.I)
            if match is None:
                return
            self._barrier(match.group(1))

    # -- Backend, delegated ------------------------------------------------------------------
    def close(self) -> None:
        self.inner.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._before(sql)
        return self.inner.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._before(sql)
        self.inner.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._before(sql)
        return self.inner.query(sql, params)

    def stream(self, sql: str, params: Sequence[Any] = (), batch: int = 1000) -> Iterator[Row]:
        self._before(sql)
        return self.inner.stream(sql, params, batch)

    @contextlib.contextmanager
    def bulk_writer(self, sql: str) -> Iterator[Callable[[list[Sequence[Any]]], None]]:
        self._before(sql)
        with self.inner.bulk_writer(sql) as write:
            yield write

    def begin(self) -> None:
        self.inner.begin()

    def commit(self) -> None:
        self.inner.commit()

    def rollback(self) -> None:
        self.inner.rollback()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.inner.transaction():
            yield

    def tables(self) -> list[str]:
        return self.inner.tables()

    def columns(self, table: str) -> list[str]:
        self._barrier(table)
        return self.inner.columns(table)

    def table_exists(self, table: str) -> bool:
        return self.inner.table_exists(table)

    def quote(self, identifier: str) -> str:
        return self.inner.quote(identifier)


def create_table(backend: Backend, table: str, target_version: str) -> None:
    """Create ``table`` as ``target_version`` defines it (dropping a stale one first)."""
    backend.execute(f"DROP TABLE IF EXISTS {table}")
    backend.execute(create_table_sql(SCHEMAS[target_version].table(table), backend.kind))
    for index in SCHEMAS[target_version].indexes_of(table):
        backend.execute(create_index_sql(index))
