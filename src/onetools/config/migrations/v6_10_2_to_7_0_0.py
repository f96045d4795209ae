"""6.10.2 → 7.0.0: the scheduler is split and the Ruby Sunstone is gone.

7.0.0 removes ``mm_sched`` and its ``/etc/one/sched.conf`` (deleted by the step's
descriptor): oned plans the placement itself (new top-level keys of oned.conf, inserted by the
descriptor with their defaults) and calls a placement driver configured in
``/etc/one/schedulers/rank.conf`` (created by the descriptor).  This step reads sched.conf as
it was before the step and carries over the values the user changed from the 6.10.2 stock
file (an unchanged value leaves the 7.0.0 default alone):

* to oned.conf (top level): ``LIVE_RESCHEDS`` and ``COLD_MIGRATE_MODE`` (same names),
  ``MAX_DISPATCH`` as ``MAX_ACTIONS_PER_CLUSTER`` and ``MAX_HOST`` as ``MAX_ACTIONS_PER_HOST``;
* to schedulers/rank.conf: ``LOG/DEBUG_LEVEL`` (as the original tool does) and, our
  judgement, every other setting rank.conf has under the same name and meaning (it is the
  old scheduler's placement part): ``LOG/SYSTEM``, ``DEFAULT_SCHED``, ``DEFAULT_DS_SCHED``,
  ``DEFAULT_NIC_SCHED`` (changed, added and removed keys, e.g. ``POLICY``/``RANK``),
  ``MAX_HOST``, ``MEMORY_SYSTEM_DS_SCALE`` and ``DIFFERENT_VNETS``;
* settings without an equivalent in 7.0.0 (``SCHED_INTERVAL``, ``MAX_VM``, ``ONE_XMLRPC``,
  ``MESSAGE_SIZE``, ``TIMEOUT``, keys the user added) are only reported when customized.

A key the user removed from sched.conf is not removed from oned.conf (the scheduler used a
built-in default, and the new key's default stands).  When a key is given several times,
its first value is used, as OpenNebula's configuration reader does.

The Ruby Sunstone's ``/etc/one/sunstone-views.yaml`` is deleted too; its ``labels_groups``
(group name → list of labels, ``a/b`` being label ``b`` nested in ``a``; stock: only an empty
``default``) go to FireEdge's ``/etc/one/fireedge/sunstone/default-labels.yaml`` as nested
mappings: the labels of a group under ``group: {<name>: ...}``, and those of ``default`` (for
every group) under ``user:`` (the labels every user gets).  Existing labels are kept.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from onetools.config.formats.one import Instance, OneDocument, Tree
from onetools.config.formats.yaml import YamlDocument
from onetools.config.migrations import StepContext
from onetools.config.ops import ChangeOp
from onetools.config.stock import store

SCHED = "/etc/one/sched.conf"
ONED = "/etc/one/oned.conf"
RANK = "/etc/one/schedulers/rank.conf"
VIEWS = "/etc/one/sunstone-views.yaml"
LABELS = "/etc/one/fireedge/sunstone/default-labels.yaml"
READS = (SCHED, VIEWS)

SOURCE = "6.10.2"
TARGET = "7.0.0"
#: sched.conf key -> oned.conf key (top level in both).
TO_ONED = {
    "LIVE_RESCHEDS": "LIVE_RESCHEDS",
    "COLD_MIGRATE_MODE": "COLD_MIGRATE_MODE",
    "MAX_DISPATCH": "MAX_ACTIONS_PER_CLUSTER",
    "MAX_HOST": "MAX_ACTIONS_PER_HOST",
}
DEFAULT_GROUP = "default"


def _stock_tree(version: str, path: str) -> Tree:
    return OneDocument.parse(store().read(version, path) or "", path).tree()


def _same(left: list[str], right: list[str]) -> bool:
    return Counter(left) == Counter(right)


def _section(tree: Tree, key: str) -> Instance | None:
    """The content of a unique section, or None."""
    found = tree.get(key)
    if isinstance(found, dict):
        return found.get(None)
    return None


def _values(tree: Tree, key: str) -> list[str] | None:
    found = tree.get(key)
    return found if isinstance(found, list) else None


def _oned(ctx: StepContext, user: Tree, stock: Tree) -> list[str]:
    """Move the oned.conf settings; returns the sched.conf keys handled."""
    ops: list[ChangeOp] = []
    moved: list[str] = []
    for key, new_key in TO_ONED.items():
        values = _values(user, key)
        if not values or _same(values, _values(stock, key) or []):
            continue
        ops.append(ChangeOp("set", [], new_key, value=values[0]))
        shown = key if key == new_key else f"{key} as {new_key}"
        moved.append(f"{SCHED} {shown} = {values[0]} moved to {ONED}")
    if ops:
        if not ctx.exists(ONED):
            ctx.note(f"{ONED} is missing: {', '.join(TO_ONED)} of {SCHED} not moved")
        else:
            ctx.apply(ONED, ops)
            for message in moved:
                ctx.note(message)
    return list(TO_ONED)


def _rank(ctx: StepContext, user: Tree, stock: Tree) -> list[str]:
    """Move the settings rank.conf shares with sched.conf; returns the keys handled."""
    rank_stock = _stock_tree(TARGET, RANK)
    shared = [key for key in rank_stock if key in stock]
    ops: list[ChangeOp] = []
    moved: list[str] = []
    for key in shared:
        stock_section = _section(stock, key)
        if stock_section is not None:
            user_section = _section(user, key)
            if user_section is None:
                continue  # removed (or no longer a section): the scheduler's defaults apply
            for inner, values in user_section.items():
                if _same(values, stock_section.get(inner, [])):
                    continue
                ops.append(ChangeOp("set", [key], inner, value=values[0]))
                moved.append(f"{SCHED} {key}/{inner} = {values[0]} moved to {RANK}")
            for inner in stock_section:
                if inner not in user_section:
                    ops.append(ChangeOp("rm", [key], inner))
                    moved.append(f"{key}/{inner} removed from {RANK}, as it was from {SCHED}")
            continue
        top = _values(user, key)
        if not top or _same(top, _values(stock, key) or []):
            continue
        ops.append(ChangeOp("set", [], key, value=top[0]))
        moved.append(f"{SCHED} {key} = {top[0]} moved to {RANK}")
    if ops:
        if not ctx.exists(RANK):
            ctx.note(f"{RANK} is missing: scheduler settings of {SCHED} not moved")
        else:
            ctx.apply(RANK, ops)
            for message in moved:
                ctx.note(message)
    return shared


def _sched(ctx: StepContext) -> None:
    old = ctx.old_document(SCHED, "Augeas::ONE")
    if not isinstance(old, OneDocument):
        return
    user = old.tree()
    stock = _stock_tree(SOURCE, SCHED)
    handled = set(_oned(ctx, user, stock)) | set(_rank(ctx, user, stock))
    for key, value in user.items():
        if key in handled or value == stock.get(key):
            continue
        ctx.note(f"{SCHED} {key}: customized, but 7.0.0 has no such setting (not carried over)")


def _label_tree(labels: list[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for label in labels:
        node = tree
        parts = [part for part in label.split("/") if part]
        for index, part in enumerate(parts):
            if index == len(parts) - 1:
                node.setdefault(part, None)
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return tree


def _merge(base: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base`` (what ``base`` has wins on leaves)."""
    out: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
    for key, value in extra.items():
        if isinstance(value, dict) and (key not in out or isinstance(out[key], dict)):
            out[key] = _merge(out.get(key), value)
        elif key not in out:
            out[key] = value
    return out


def _labels(ctx: StepContext) -> None:
    old = ctx.old_document(VIEWS, "Yaml")
    content = old.content if isinstance(old, YamlDocument) else None
    if not isinstance(content, dict) or not isinstance(content.get("labels_groups"), dict):
        return
    groups: dict[str, Any] = content["labels_groups"]
    wanted: dict[str, dict[str, Any]] = {"group": {}, "user": {}}
    for group, labels in groups.items():
        if isinstance(labels, str):
            labels = [labels]
        if not isinstance(labels, list):
            if labels is not None:
                ctx.note(f"{VIEWS} labels_groups/{group}: not a list of labels, not moved")
            continue
        tree = _label_tree([str(label) for label in labels if label is not None])
        if not tree:
            continue
        if str(group) == DEFAULT_GROUP:
            wanted["user"] = _merge(wanted["user"], tree)
        else:
            wanted["group"][str(group)] = _merge(wanted["group"].get(str(group)), tree)
    if not (wanted["group"] or wanted["user"]):
        return
    # Parsed for reading only (ctx.document would cache it as changed); ctx.apply changes it.
    text = ctx.sandbox.read(LABELS)
    data = YamlDocument.parse(text, LABELS).content if text is not None else None
    if not isinstance(data, dict):
        ctx.note(f"{LABELS} is missing or not a mapping: labels_groups of {VIEWS} not moved")
        return
    ops: list[ChangeOp] = []
    for key, tree in wanted.items():
        if not tree:
            continue
        current = data.get(key)
        if current is not None and not isinstance(current, dict):
            ctx.note(f"{LABELS} {key} is not a mapping: labels_groups of {VIEWS} not moved")
            continue
        merged = _merge(current, tree)
        if merged != current:
            ops.append(ChangeOp("set", [], key, value=merged, old=current))
    if ops:
        ctx.apply(LABELS, ops)
        ctx.note(f"{VIEWS} labels_groups moved to {LABELS}")


def up(ctx: StepContext) -> None:
    _sched(ctx)
    _labels(ctx)
