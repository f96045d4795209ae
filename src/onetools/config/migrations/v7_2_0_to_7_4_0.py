"""7.2.0 → 7.4.0: OneGate's listening address moves under ``:server:``.

In 7.4.0 ``/etc/one/onegate-server.conf`` replaces the top-level ``:host`` and ``:port`` with
``:server: {:bind: ..., :port: ...}``.  The step's descriptor removes the two old keys (whatever
their values) and inserts ``:server`` with the stock values (``127.0.0.1``, 5030).  This step
reads the file as it was before the step and puts the user's ``:host`` into ``:server/:bind``
and the user's ``:port`` into ``:server/:port`` when they differ from the 7.2.0 stock values.
"""

from __future__ import annotations

from typing import Any

from onetools.config.formats.yaml import YamlDocument
from onetools.config.migrations import StepContext
from onetools.config.ops import ChangeOp, Symbol, strict_equal
from onetools.config.stock import store

ONEGATE = "/etc/one/onegate-server.conf"
READS = (ONEGATE,)

SOURCE = "7.2.0"
SERVER = Symbol(":server")
#: old top-level key -> key under :server
MOVES = {Symbol(":host"): Symbol(":bind"), Symbol(":port"): Symbol(":port")}


def _content(document: object) -> dict[Any, Any]:
    content = document.content if isinstance(document, YamlDocument) else None
    return content if isinstance(content, dict) else {}


def _stock_value(user: dict[Any, Any], stock: dict[Any, Any], key: Any) -> bool:
    return key in stock and strict_equal(user[key], stock[key])


def up(ctx: StepContext) -> None:
    user = _content(ctx.old_document(ONEGATE, "Yaml"))
    text = store().read(SOURCE, ONEGATE)
    stock = _content(YamlDocument.parse(text, ONEGATE) if text else None)
    moved = {
        new_key: user[old_key]
        for old_key, new_key in MOVES.items()
        if old_key in user and not _stock_value(user, stock, old_key)
    }
    if not moved:
        return
    document = ctx.document(ONEGATE)
    if not isinstance(document, YamlDocument) or not isinstance(document.content, dict):
        ctx.note(f"{ONEGATE} is missing or not a mapping: :host/:port not moved")
        return
    server = document.content.get(SERVER)
    if isinstance(server, dict):
        ops = [ChangeOp("set", [SERVER], key, value=value) for key, value in moved.items()]
    else:
        merged = {**{new: stock.get(old) for old, new in MOVES.items()}, **moved}
        ops = [ChangeOp("set", [], SERVER, value=merged)]
    ctx.apply(ONEGATE, ops)
    for old_key, new_key in MOVES.items():
        if new_key in moved:
            ctx.note(f"{ONEGATE} {old_key} = {moved[new_key]} moved to {SERVER}/{new_key}")
