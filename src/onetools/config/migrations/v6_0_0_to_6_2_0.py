"""6.0.0 → 6.2.0: FireEdge settings get their own files under ``/etc/one/fireedge``.

6.2.0 splits FireEdge's configuration: the provision GUI reads
``/etc/one/fireedge/provision/provision-server.conf`` and the new Sunstone (FireEdge)
``/etc/one/fireedge/sunstone/sunstone-server.conf``; the step's descriptor creates both from
the stock text.  This step carries the user's values into them:

* every ``oneprovision_*`` key of ``/etc/one/fireedge-server.conf`` (6.0.0 stock:
  ``oneprovision_prepend_command`` and ``oneprovision_optional_create_command``, both empty)
  that the user changed or added is set in provision-server.conf.  It is copied, not moved:
  6.2.0's fireedge-server.conf still has these keys;
* ``:token_remote_support`` of the Ruby Sunstone's ``/etc/one/sunstone-server.conf`` (only a
  comment in the stock file, so any value is the user's) becomes ``support_token`` of the
  FireEdge sunstone-server.conf, unless that file already has a token of its own.
"""

from __future__ import annotations

from typing import Any

from onetools.config.formats.yaml import YamlDocument
from onetools.config.migrations import StepContext
from onetools.config.ops import ChangeOp, Symbol, strict_equal
from onetools.config.stock import store

FIREEDGE = "/etc/one/fireedge-server.conf"
PROVISION = "/etc/one/fireedge/provision/provision-server.conf"
SUNSTONE = "/etc/one/sunstone-server.conf"
FIREEDGE_SUNSTONE = "/etc/one/fireedge/sunstone/sunstone-server.conf"

SOURCE = "6.0.0"
PROVISION_PREFIX = "oneprovision_"
TOKEN = Symbol(":token_remote_support")
SUPPORT_TOKEN = "support_token"


def _mapping(ctx: StepContext, path: str) -> dict[Any, Any] | None:
    """The current content of ``path`` if it is a mapping, parsed for reading only:
    ``ctx.document`` would put the file in the sandbox's document cache, which later steps take
    as "changed"; only a file this step changes goes through ``ctx.apply``."""
    text = ctx.sandbox.read(path)
    if text is None:
        return None
    content = YamlDocument.parse(text, path).content
    return content if isinstance(content, dict) else None


def _stock(path: str) -> dict[Any, Any]:
    text = store().read(SOURCE, path)
    content = YamlDocument.parse(text, path).content if text else None
    return content if isinstance(content, dict) else {}


def _provision(ctx: StepContext) -> None:
    user = _mapping(ctx, FIREEDGE)
    if not user:
        return
    stock = _stock(FIREEDGE)
    moved = {
        key: value
        for key, value in user.items()
        if isinstance(key, str)
        and key.startswith(PROVISION_PREFIX)
        and not (key in stock and strict_equal(value, stock[key]))
    }
    if not moved:
        return
    target = _mapping(ctx, PROVISION)
    if target is None:
        ctx.note(f"{PROVISION} is missing or not a mapping: {', '.join(moved)} not copied")
        return
    for key, value in moved.items():
        if key in target and strict_equal(target[key], value):
            continue
        ctx.apply(PROVISION, [ChangeOp("set", [], key, value=value)])
        ctx.note(f"{FIREEDGE} {key} copied to {PROVISION}")


def _support_token(ctx: StepContext) -> None:
    user = _mapping(ctx, SUNSTONE)
    if not user or user.get(TOKEN) in (None, ""):
        return
    value = user[TOKEN]
    token = value if isinstance(value, str) else str(value)
    target = _mapping(ctx, FIREEDGE_SUNSTONE)
    if target is None:
        ctx.note(f"{FIREEDGE_SUNSTONE} is missing or not a mapping: {TOKEN} not copied")
        return
    current = target.get(SUPPORT_TOKEN)
    if current == token:
        return
    if current not in (None, ""):
        ctx.note(
            f"{FIREEDGE_SUNSTONE} already has a {SUPPORT_TOKEN}: {SUNSTONE} {TOKEN} not copied"
        )
        return
    ctx.apply(FIREEDGE_SUNSTONE, [ChangeOp("set", [], SUPPORT_TOKEN, value=token)])
    ctx.note(f"{SUNSTONE} {TOKEN} copied to {FIREEDGE_SUNSTONE} {SUPPORT_TOKEN}")


def up(ctx: StepContext) -> None:
    _provision(ctx)
    _support_token(ctx)
