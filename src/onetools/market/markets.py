"""Marketplaces: create, delete, list, show, update, rename, chgrp/chown/chmod, enable/disable.

A thin layer over ``OneApi`` that checks, before calling, what oned would check after (so
both backends give the same answer, and a 6.0 oned does not get to repeat its bugs):

* a template needs ``MARKET_MAD`` and that driver's required attributes (reference §3.5):
  ``http`` BASE_URL, PUBLIC_DIR; ``s3`` ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION, BUCKET;
  ``docker_registry`` BASE_URL; the catalogs ``one``, ``linuxcontainers``, ``turnkeylinux``,
  ``dockerhub`` none.  Messages are oned's (xmlrpc.md §2.9).  ``update`` checks the new
  driver's attributes again;
* deleting a private (http, s3) market that still has apps is refused with oned's message
  (6.0.0 deleted it and silently dropped its apps, §10.1 item 7); a catalog market is
  deleted with its app records.

Functions acting on several IDs keep going after a failure and return ``{id: error}``, as
the originals' ``perform_actions``.
"""

from __future__ import annotations

from onetools.errors import OnetoolsError, failures_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from onetools.one.api import OneApi, Permissions
    from onetools.one.xml import OneObject

#: ``REQUIRED_ATTRS`` per ``MARKET_MAD`` (oned.conf ``MARKET_MAD_CONF``, reference §3.5).
REQUIRED_ATTRS: dict[str, tuple[str, ...]] = {
    "one": (),
    "http": ("BASE_URL", "PUBLIC_DIR"),
    "s3": ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "REGION", "BUCKET"),
    "linuxcontainers": (),
    "turnkeylinux": (),
    "dockerhub": (),
    "docker_registry": ("BASE_URL",),
}
#: Markets whose apps users create (APP_ACTIONS create, delete); the others are catalogs.
PRIVATE_MADS = frozenset({"http", "s3"})
#: ``STATE`` (6.2+): 0 ENABLED, 1 DISABLED; short forms of the STAT column.
STATES = {0: "ENABLED", 1: "DISABLED"}
SHORT_STATES = {0: "on", 1: "off"}


class MarketError(OnetoolsError):
    """A market request refused before it reached OpenNebula."""


def _parse(text: str) -> dict[str, str]:
    """The scalar attributes of template text or ``<TEMPLATE>`` XML (last value wins)."""
    from onetools.one.template import parse, parse_xml

    try:
        template = parse_xml(text) if text.lstrip().startswith("<") else parse(text)
    except OnetoolsError as exc:
        raise MarketError(f"Cannot parse the market template: {exc.message}") from None
    except Exception as exc:  # the XML parser's errors
        raise MarketError(f"Cannot parse the market template: {exc}") from None
    return {key: value for key, value in template.attributes if isinstance(value, str)}


def check_template(attributes: dict[str, str]) -> str:
    """The driver of a market template; ``MarketError`` with oned's message when
    ``MARKET_MAD`` or one of its required attributes is missing or empty."""
    mad = (attributes.get("MARKET_MAD") or "").strip()
    if not mad:
        raise MarketError("No marketplace driver (MARKET_MAD) in template.")
    if mad not in REQUIRED_ATTRS:
        known = ", ".join(sorted(REQUIRED_ATTRS))
        raise MarketError(f'MARKET_MAD_CONF named "{mad}" is not defined (drivers: {known})')
    for key in REQUIRED_ATTRS[mad]:
        if not (attributes.get(key) or "").strip():
            raise MarketError(
                f'MarketPlace template is missing the "{key}" attribute or it\'s empty.'
            )
    return mad


def create_market(one: OneApi, text: str) -> int:
    """Allocate a market from template text (or ``<TEMPLATE>`` XML); the new ID."""
    attributes = _parse(text)
    if not (attributes.get("NAME") or "").strip():
        raise MarketError("No NAME in template.")
    check_template(attributes)
    return one.allocate_market(text)


def list_markets(one: OneApi) -> list[OneObject]:
    """Every market the session may see, in ID order."""
    from onetools.one.api import MARKET

    return one.pool(MARKET)


def show_market(one: OneApi, oid: int) -> OneObject:
    from onetools.one.api import MARKET

    return one.info(MARKET, oid)


def market_mad(market: OneObject) -> str:
    """The market's driver (the template's, which ``update`` can change)."""
    return market.text("TEMPLATE/MARKET_MAD") or market.text("MARKET_MAD")


def update_market(one: OneApi, oid: int, text: str, append: bool = False) -> int:
    """Replace (or with ``append`` merge into) the market's template; the driver's required
    attributes are checked on the result."""
    from onetools.one.api import MARKET

    attributes = _parse(text)
    if append:
        element = show_market(one, oid).root.find("TEMPLATE")
        children = list(element) if element is not None else []
        merged = {child.tag: child.text or "" for child in children if len(child) == 0}
        merged.update(attributes)
        attributes = merged
    check_template(attributes)
    return one.update(MARKET, oid, text, merge=append)


def delete_markets(one: OneApi, ids: Sequence[int]) -> dict[int, OnetoolsError]:
    """Delete markets; a private market with apps is refused (oned's message)."""
    from onetools.one.api import MARKET

    def delete(oid: int) -> None:
        market = show_market(one, oid)
        if market_mad(market) in PRIVATE_MADS and market.ids("MARKETPLACEAPPS"):
            raise MarketError(
                f"[one.market.delete] Cannot delete marketplace. Marketplace {oid} is not empty."
            )
        one.delete(MARKET, oid)

    return failures_of(ids, delete)


def rename_market(one: OneApi, oid: int, name: str) -> int:
    from onetools.one.api import MARKET

    return one.rename(MARKET, oid, name)


def chown_markets(
    one: OneApi, ids: Sequence[int], uid: int = -1, gid: int = -1
) -> dict[int, OnetoolsError]:
    from onetools.one.api import MARKET

    return failures_of(ids, lambda oid: one.chown(MARKET, oid, uid, gid))


def chmod_markets(
    one: OneApi, ids: Sequence[int], permissions: Permissions
) -> dict[int, OnetoolsError]:
    from onetools.one.api import MARKET

    return failures_of(ids, lambda oid: one.chmod(MARKET, oid, permissions))


def enable_markets(one: OneApi, ids: Sequence[int], enable: bool) -> dict[int, OnetoolsError]:
    """Enable or disable markets (6.2+; disabling drops the market's app records)."""
    from onetools.one.api import MARKET

    return failures_of(ids, lambda oid: one.enable(MARKET, oid, enable))
