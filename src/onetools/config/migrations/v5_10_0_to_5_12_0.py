"""5.10.0 → 5.12.0: the information drivers (``IM_MAD``) move from oned.conf to monitord.conf.

5.12.0 introduces the monitor daemon: oned.conf keeps a single ``IM_MAD`` (``monitord``, added
by the step's descriptor) and the drivers are defined in the new ``/etc/one/monitord.conf``
(created from the stock text by the descriptor, with the stock ``kvm``, ``lxd``,
``firecracker`` and ``vcenter`` drivers).  The descriptor removes the stock ``IM_MAD``
instances of 5.10.0 (``collectd``, ``kvm``, ``lxd``, ``vcenter``) from oned.conf whatever
their content, and the ``MONITORING_INTERVAL_HOST``/``MONITORING_INTERVAL_VM`` keys with them.
This step carries the user's part over, reading oned.conf as it was before the step:

* a driver whose definition equals the 5.10.0 stock one: nothing to do (monitord.conf's own
  default stands, e.g. with its new ``THREADS = 0``);
* a stock driver the user changed: the keys the user changed or added are set in the
  monitord.conf instance of the same ``NAME`` (other keys keep the 5.12.0 defaults), keys
  the user removed are removed;
* a driver the user added (e.g. an uncommented ``ec2``): its whole definition moves to
  monitord.conf, and it is removed from oned.conf (the descriptor leaves it there);
* a stock driver the user removed: it is removed from monitord.conf too;
* ``collectd`` is dropped: 5.12.0 has no collectd driver (the UDP push is built into the
  monitor daemon), so a customized collectd is only reported.

Probe periods (our judgement; the monitoring model changed, there is no exact equivalent):
the 5.10.0 ``MONITORING_INTERVAL_HOST`` and ``MONITORING_INTERVAL_VM`` said how often hosts
and VMs are monitored.  In 5.12.0 that is ``PROBES_PERIOD/MONITOR_HOST`` and
``PROBES_PERIOD/MONITOR_VM`` of monitord.conf, so a value the user changed from the 5.10.0
default (180) is written there; an unchanged one leaves the new defaults (120 and 30).
monitord.conf's own ``MONITORING_INTERVAL_HOST`` is a different setting in 5.12.0 (how long
to wait for a beacon before restarting the probes) and is left alone.  The collectd push
cycle (``-i``) goes with collectd.
"""

from __future__ import annotations

from collections import Counter

from onetools.config.formats.one import Instance, Instances, OneDocument, Tree
from onetools.config.migrations import StepContext
from onetools.config.ops import ChangeOp
from onetools.config.stock import store

ONED = "/etc/one/oned.conf"
MONITORD = "/etc/one/monitord.conf"
READS = (ONED,)

SOURCE = "5.10.0"
DROPPED = ('"collectd"',)
#: The instance oned.conf keeps (added by the descriptor).
KEPT = ('"monitord"',)
#: 5.10.0 oned.conf top-level key -> (monitord.conf section, key).
PERIODS = {
    "MONITORING_INTERVAL_HOST": ("PROBES_PERIOD", "MONITOR_HOST"),
    "MONITORING_INTERVAL_VM": ("PROBES_PERIOD", "MONITOR_VM"),
}


def _instances(tree: Tree, name: str) -> Instances:
    found = tree.get(name)
    return found if isinstance(found, dict) else {}


def _values(tree: Tree, key: str) -> list[str]:
    found = tree.get(key)
    return found if isinstance(found, list) else []


def _peek(ctx: StepContext, path: str) -> OneDocument | None:
    """The current document of ``path``, parsed for reading only.  ``ctx.document`` would put
    it in the sandbox's document cache, which later steps take as "changed" (no refresh of a
    pristine file); only a file this step changes goes through ``ctx.apply``."""
    text = ctx.sandbox.read(path)
    return None if text is None else OneDocument.parse(text, path)


def _same(left: list[str], right: list[str]) -> bool:
    return Counter(left) == Counter(right)


def _set_ops(path: list[str], key: str, values: list[str]) -> list[ChangeOp]:
    """Ops making ``key`` hold exactly ``values`` (applied in replace mode)."""
    if len(values) == 1:
        return [ChangeOp("set", list(path), key, value=values[0])]
    ops = [ChangeOp("rm", list(path), key)]
    ops += [ChangeOp("ins", list(path), key, value=v, extra={"multiple": True}) for v in values]
    return ops


def _instance_ops(
    ident: str, user: Instance, stock: Instance | None, target: Instance | None
) -> list[ChangeOp]:
    """Ops carrying the user's definition of driver ``ident`` into monitord.conf."""
    path = ["IM_MAD", ident]
    ops: list[ChangeOp] = []
    if target is None:
        # A new instance: NAME first (it creates the section), then the rest as the user has it.
        ops.append(ChangeOp("ins", path, "NAME", value=ident))
        for key, values in user.items():
            if key != "NAME":
                ops += _set_ops(path, key, values)
        return ops
    for key, values in user.items():
        if key == "NAME":
            continue
        if stock is not None and key in stock and _same(stock[key], values):
            continue  # the user's value is the old default: keep the new default
        ops += _set_ops(path, key, values)
    if stock is not None:
        for key in stock:
            if key not in user and key != "NAME" and key in target:
                ops.append(ChangeOp("rm", path, key))
    return ops


def up(ctx: StepContext) -> None:
    old = ctx.old_document(ONED, "Augeas::ONE")
    if old is None:
        return
    assert isinstance(old, OneDocument)
    user_tree = old.tree()
    stock_tree = OneDocument.parse(store().read(SOURCE, ONED) or "", ONED).tree()
    user_drivers = _instances(user_tree, "IM_MAD")
    stock_drivers = _instances(stock_tree, "IM_MAD")

    moves: list[tuple[str, list[ChangeOp], str]] = []  # (driver, ops, what)
    monitord = _peek(ctx, MONITORD)
    current = _instances(monitord.tree(), "IM_MAD") if monitord is not None else {}

    for ident, definition in user_drivers.items():
        if ident is None or ident in KEPT:
            continue
        stock = stock_drivers.get(ident)
        if ident in DROPPED:
            if stock is None or definition != stock:
                ctx.note(f"{ONED}: IM_MAD {ident} dropped (5.12.0 has no collectd driver)")
            continue
        if stock is not None and definition == stock:
            continue
        ops = _instance_ops(ident, definition, stock, current.get(ident))
        what = "added" if stock is None else "customized"
        moves.append((ident, ops, what))

    removed = [
        ident
        for ident in stock_drivers
        if ident is not None
        and ident not in user_drivers
        and ident not in DROPPED
        and ident in current
    ]

    periods: list[tuple[str, str, str, list[str]]] = []
    for old_key, (section, key) in PERIODS.items():
        values = _values(user_tree, old_key)
        if values and not _same(values, _values(stock_tree, old_key)):
            periods.append((old_key, section, key, values))

    if not (moves or removed or periods):
        return
    if monitord is None:
        ctx.note(f"{MONITORD} is missing: IM_MAD definitions and probe periods of {ONED} not moved")
        return

    for ident, ops, what in moves:
        ctx.apply(MONITORD, ops)
        ctx.note(f"IM_MAD {ident} ({what}) moved from {ONED} to {MONITORD}")
        oned = _peek(ctx, ONED)
        if oned is not None and ident in _instances(oned.tree(), "IM_MAD"):
            ctx.apply(ONED, [ChangeOp("rm", ["IM_MAD", ident], None)])
    for ident in removed:
        ctx.apply(MONITORD, [ChangeOp("rm", ["IM_MAD", ident], None)])
        ctx.note(f"IM_MAD {ident} removed from {MONITORD} (it was removed from {ONED})")
    for old_key, section, key, values in periods:
        ctx.apply(MONITORD, _set_ops([section], key, values[:1]))
        ctx.note(f"{ONED} {old_key} = {values[0]} moved to {MONITORD} {section}/{key}")
