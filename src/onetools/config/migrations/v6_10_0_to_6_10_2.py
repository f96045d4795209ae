"""6.10.0 → 6.10.2: two names change in files the stock trees do not change.

* FireEdge service tabs (``/etc/one/fireedge/sunstone/<view>/service-tab.yaml``): the
  scheduled-actions tab and action are called ``sched_actions``, not ``scheduler_actions``
  (the name used by the VM tabs and by the FireEdge code);
* the KVM guest agent probe (``/var/lib/one/remotes/etc/im/kvm-probes.d/guestagent.conf``):
  the guest-ping command is reported as ``:vm_qemu_ping``, not ``:vm_crash``.

The stock files of 6.10.0 and 6.10.2 are identical where both exist (and already use the new
names), so the step's descriptor changes nothing: a file still using the old name got it from
an earlier release or from the user.  The old name is renamed wherever it appears as a
mapping key (its value is kept, renamed inside too) or as an item of a list (the list keeps
its order).  Ops cannot reorder a mapping, so a renamed key ends up last in its mapping.  If
the new name is already there, the old one is left alone and reported.
"""

from __future__ import annotations

import os
from typing import Any

from onetools.config.files import prefixed
from onetools.config.formats.yaml import YamlDocument
from onetools.config.migrations import StepContext
from onetools.config.ops import ChangeOp, Symbol
from onetools.config.stock import store

VIEWS_DIR = "/etc/one/fireedge/sunstone"
SERVICE_TAB = "service-tab.yaml"
GUESTAGENT = "/var/lib/one/remotes/etc/im/kvm-probes.d/guestagent.conf"

TARGET = "6.10.2"
#: (old name, new name) per kind of file; keys and list items are compared with their type.
SERVICE_RENAMES = (("scheduler_actions", "sched_actions"),)
GUESTAGENT_RENAMES = ((Symbol(":vm_crash"), Symbol(":vm_qemu_ping")),)


def _service_tabs(ctx: StepContext) -> list[str]:
    """Service tab files of every view: the stock views and those found in the tree."""
    views = {
        path.split("/")[-2]
        for path in store().paths(TARGET)
        if path.startswith(VIEWS_DIR + "/") and path.endswith("/" + SERVICE_TAB)
    }
    base = prefixed(ctx.sandbox.base, VIEWS_DIR)
    if os.path.isdir(base):
        views |= {name for name in os.listdir(base) if os.path.isdir(os.path.join(base, name))}
    return sorted(f"{VIEWS_DIR}/{view}/{SERVICE_TAB}" for view in views)


def _is(value: Any, name: Any) -> bool:
    return type(value) is type(name) and value == name


class _Renamer:
    """Renames ``old`` to ``new`` in a YAML tree, noting where both names are present."""

    def __init__(self, old: Any, new: Any) -> None:
        self.old = old
        self.new = new
        self.clashes: list[str] = []

    def value(self, value: Any, path: list[Any]) -> Any:
        """A copy of ``value`` with the name renamed in it (mapping keys and list items)."""
        if isinstance(value, dict):
            clash = any(_is(key, self.new) for key in value)
            out: dict[Any, Any] = {}
            for key, item in value.items():
                renamed = _is(key, self.old) and not clash
                if _is(key, self.old) and clash:
                    self.clashes.append(_show([*path, key]))
                out[self.new if renamed else key] = self.value(item, [*path, key])
            return out
        if isinstance(value, list):
            clash = any(_is(item, self.new) for item in value)
            if clash and any(_is(item, self.old) for item in value):
                self.clashes.append(_show(path))
            return [
                self.new if _is(item, self.old) and not clash else self.value(item, [*path, i])
                for i, item in enumerate(value)
            ]
        return value

    def ops(self, tree: dict[Any, Any], path: list[Any]) -> list[ChangeOp]:
        """Ops doing the renames under the mapping ``tree`` at ``path``: a renamed key is
        removed and added again (it goes last); a list is set whole (its order is kept)."""
        ops: list[ChangeOp] = []
        clash = any(_is(key, self.new) for key in tree)
        for key, value in tree.items():
            where = [*path, key]
            if _is(key, self.old) and not clash:
                ops.append(ChangeOp("rm", list(path), key, old=value))
                ops.append(ChangeOp("ins", list(path), self.new, value=self.value(value, where)))
                continue
            if _is(key, self.old):
                self.clashes.append(_show(where))
            if isinstance(value, dict):
                ops += self.ops(value, where)
            elif isinstance(value, list):
                renamed = self.value(value, where)
                if renamed != value:
                    ops.append(ChangeOp("set", list(path), key, value=renamed, old=value))
        return ops


def _bare(name: Any) -> str:
    """The text of a name as it appears in a file (a symbol without its colon)."""
    return name[1:] if isinstance(name, Symbol) else str(name)


def _show(path: list[Any]) -> str:
    return "/".join(str(part) for part in path)


def _rename(ctx: StepContext, path: str, renames: tuple[tuple[Any, Any], ...]) -> None:
    for old, new in renames:
        # Parsed for reading only: ctx.document would put the file in the sandbox's document
        # cache, which later steps take as "changed"; only a file this step changes goes
        # through ctx.apply.
        text = ctx.sandbox.read(path)
        if text is None or _bare(old) not in text:
            continue
        content = YamlDocument.parse(text, path).content
        if not isinstance(content, dict):
            return
        renamer = _Renamer(old, new)
        ops = renamer.ops(content, [])
        if ops:
            ctx.apply(path, ops)
            ctx.note(f"{path}: {old} renamed to {new}")
        for where in dict.fromkeys(renamer.clashes):
            ctx.note(f"{path}: {where} not renamed to {new}, which is already there")


def up(ctx: StepContext) -> None:
    for path in _service_tabs(ctx):
        _rename(ctx, path, SERVICE_RENAMES)
    _rename(ctx, GUESTAGENT, GUESTAGENT_RENAMES)
