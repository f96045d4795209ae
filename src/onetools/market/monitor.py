"""Catalog monitoring: ``refresh(one, market_id)`` fetches a catalog market's list and makes
the market's apps match it.

What oned does every ``MONITORING_INTERVAL_MARKET`` (600 s) for its public markets, the
embedded store has nobody to do, so ``refresh`` does it there:

* the driver's ``monitor`` (``drivers/<mad>.py``) runs first; any fetch or parse failure is
  one ``CatalogError`` and **nothing** is written, so the previous apps stay.  A catalog that
  lists no usable app is a failure too (oned also never drops apps on an empty answer);
* then one store transaction: apps are matched by market id **and** the catalog's stable
  key (``ONETOOLS_ORIGIN`` in the app template), never by name alone, so two markets with
  same-named apps never overwrite each other (§10.1 item 7).  New entries become apps,
  changed ones (``ONETOOLS_CHECKSUM``, a digest of every field) are rewritten in place (same
  ID), vanished ones are removed;
* app names stay unique per owner as oned requires: a name another market's app already has
  gets `` (<market name>)`` appended (then `` (<market name> N)``);
* the market template records ``ONETOOLS_MONITOR_TIME`` (epoch of the last successful
  refresh) and ``ONETOOLS_MONITOR_APPS`` (apps listed).  ``refresh_stale`` refreshes the
  markets whose last refresh is older than their ``MONITORING_INTERVAL`` (default 600 s);
  markets never refreshed are left alone, so listing never goes to the network unasked.

On a real front-end oned monitors its markets itself and apps of public markets cannot be
created through the API; ``refresh`` refuses with a message saying so
(``MonitorUnsupported``).  Monitored apps are oneadmin's, ``um- u-- u--``, READY, as oned
makes them.
"""

from __future__ import annotations

import time

from onetools.errors import OnetoolsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from onetools.market.drivers._catalog import AppRecord, MonitorResult
    from onetools.one.api import OneApi
    from onetools.one.local import DriverTransaction
    from onetools.one.xml import OneObject

MONITOR_TIME = "ONETOOLS_MONITOR_TIME"
MONITOR_APPS = "ONETOOLS_MONITOR_APPS"
ORIGIN = "ONETOOLS_ORIGIN"
CHECKSUM = "ONETOOLS_CHECKSUM"
#: oned's MONITORING_INTERVAL_MARKET default; a market's MONITORING_INTERVAL overrides it.
DEFAULT_INTERVAL = 600
#: ``um- u-- u--``: what oned gives monitored apps (umask 0133).
MONITORED_PERMISSIONS = (1, 1, 0, 1, 0, 0, 1, 0, 0)


class MonitorUnsupported(OnetoolsError):
    """The market cannot be refreshed by this tool (a real front-end, a private market)."""


class RefreshReport:
    """What a refresh changed (app IDs) and the catalog entries it refused."""

    __slots__ = ("added", "removed", "unchanged", "updated", "warnings")

    def __init__(self) -> None:
        self.added: list[int] = []
        self.updated: list[int] = []
        self.removed: list[int] = []
        self.unchanged: list[int] = []
        self.warnings: list[str] = []

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged"
        )


def run_driver(mad: str, market_template: dict[str, str]) -> MonitorResult:
    """The catalog of a ``mad`` market (``MonitorUnsupported`` for a mad without one)."""
    import importlib

    from onetools.market.drivers import REGISTRY

    module_name = REGISTRY.get(mad)
    if module_name is None:
        raise MonitorUnsupported(
            f"Market driver {mad!r} has no catalog to monitor (catalog drivers: "
            f"{', '.join(sorted(REGISTRY))})"
        )
    module = importlib.import_module(module_name)
    result: MonitorResult = module.monitor(market_template)
    return result


def _flat_template(market: OneObject) -> dict[str, str]:
    values: dict[str, str] = {}
    template = market.root.find("TEMPLATE")
    for child in template if template is not None else []:
        if len(child) == 0:
            values[child.tag] = child.text or ""
    return values


def refresh(one: OneApi, market_id: int) -> RefreshReport:
    """Fetch market ``market_id``'s catalog and reconcile its apps (module docstring)."""
    from onetools.market.drivers._catalog import CatalogError
    from onetools.one.api import MARKET

    local = _local_store(one, market_id)
    market = one.info(MARKET, market_id)
    if market.int("STATE", 0) == 1:  # oned monitors only enabled markets
        raise MonitorUnsupported(
            f"Market {market_id} ({market.name}) is disabled: enable it to refresh its apps"
        )
    # The template's MARKET_MAD is what update changes (reference §2).
    mad = market.text("TEMPLATE/MARKET_MAD") or market.text("MARKET_MAD")
    try:
        result = run_driver(mad, _flat_template(market))
    except CatalogError as exc:
        raise CatalogError(
            f"Market {market_id} ({market.name}) not refreshed, its apps are kept: {exc.message}"
        ) from None
    if not result.apps:
        detail = f" ({len(result.warnings)} entries refused)" if result.warnings else ""
        raise CatalogError(
            f"Market {market_id} ({market.name}) not refreshed, its apps are kept: the "
            f"catalog lists no usable app{detail}"
        )
    report = _reconcile(local, market_id, result.apps)
    report.warnings = result.warnings
    return report


def _local_store(one: OneApi, market_id: int) -> object:
    from onetools.one.local import LocalOne

    if not isinstance(one, LocalOne):
        raise MonitorUnsupported(
            f"Market {market_id} is on an OpenNebula front-end: oned monitors its markets "
            "itself (every MONITORING_INTERVAL_MARKET, 600 s by default); onemarket refresh "
            "only runs on the embedded store"
        )
    return one


def refresh_stale(one: OneApi, warn: Callable[[str], None], now: float | None = None) -> list[int]:
    """Refresh the markets last refreshed longer ago than their interval; a failure is a
    warning (listing goes on with the apps kept).  The markets refreshed are returned."""
    from onetools.one.api import MARKET
    from onetools.one.local import LocalOne

    if not isinstance(one, LocalOne):
        return []
    moment = time.time() if now is None else now
    refreshed: list[int] = []
    for market in one.pool(MARKET):
        stamp = market.text(f"TEMPLATE/{MONITOR_TIME}")
        if not stamp.isdigit() or market.int("STATE", 0) == 1:
            continue
        interval_text = market.text("TEMPLATE/MONITORING_INTERVAL")
        interval = int(interval_text) if interval_text.isdigit() else DEFAULT_INTERVAL
        if moment - int(stamp) < interval:
            continue
        try:
            report = refresh(one, market.id)
        except OnetoolsError as exc:
            warn(exc.log_line())
            continue
        for line in report.warnings:
            warn(f"Market {market.id}: {line}")
        refreshed.append(market.id)
    return refreshed


# -- the store side: what oned's MarketPlaceManager does with a monitor answer -------------------
def _app_template(record: AppRecord) -> dict[str, object]:
    """What stays in a monitored app's TEMPLATE (reference §3.1), plus the origin key and
    the checksum that drive reconciliation."""
    import hashlib

    attributes = record.attributes()
    for moved in ("SOURCE", "MD5", "SIZE", "FORMAT", "REGTIME", "TYPE"):
        attributes.pop(moved, None)
    attributes[ORIGIN] = record.origin
    attributes["IMPORT_ID"] = record.origin
    attributes[CHECKSUM] = hashlib.sha256(record.fingerprint().encode()).hexdigest()
    return attributes


def _reconcile(store: object, market_id: int, records: list[AppRecord]) -> RefreshReport:
    from onetools.one import bodies
    from onetools.one.api import MARKET, MARKETAPP
    from onetools.one.local import LocalOne
    from onetools.one.template import parse, render

    assert isinstance(store, LocalOne)
    method = "onemarket.refresh"
    report = RefreshReport()
    owner = bodies.Owner(permissions=MONITORED_PERMISSIONS)
    with store.driver_transaction() as db:  # one transaction: all of the catalog or nothing
        market = db.load(MARKET, market_id, method)
        market_name = market.findtext("NAME") or ""
        existing: dict[str, tuple[int, str, str]] = {}
        for app_id in bodies.get_ids(market, "MARKETPLACEAPPS"):
            row = db.execute(
                "SELECT body FROM marketplaceapp_pool WHERE oid = ?", (app_id,)
            ).fetchone()
            if row is None:
                continue
            app = bodies.parse_body(row[0])
            origin = app.findtext(f"TEMPLATE/{ORIGIN}")
            if origin is not None and app.findtext("MARKETPLACE_ID") == str(market_id):
                existing[origin] = (
                    app_id,
                    app.findtext(f"TEMPLATE/{CHECKSUM}") or "",
                    app.findtext("REGTIME") or "0",
                )
        kept: set[int] = set()
        ids = [a for a in bodies.get_ids(market, "MARKETPLACEAPPS") if a not in _ids(existing)]
        for record in records:
            template_attributes = _app_template(record)
            template = parse(render(template_attributes))
            previous = existing.get(record.origin)
            if previous is not None and previous[1] == template_attributes[CHECKSUM]:
                kept.add(previous[0])
                report.unchanged.append(previous[0])
                ids.append(previous[0])
                continue
            oid = previous[0] if previous is not None else db.next_id(MARKETAPP)
            name = _free_name(db, record.name, market_name, oid)
            fields = {
                "REGTIME": record.regtime or int(time.time()),
                "ORIGIN_ID": -1,
                "SOURCE": record.source,
                "MD5": record.md5,
                "SIZE": record.size_mb,
                "DESCRIPTION": record.description,
                "VERSION": record.version or "0.0",
                "FORMAT": record.format,
                "APPTEMPLATE64": record.apptemplate64,
                "STATE": 1,
                "TYPE": bodies.APP_TYPES[record.type],
            }
            root = bodies.marketplace_app(
                oid, name, owner, fields, market_id, market_name, template
            )
            if previous is None:
                db.insert(MARKETAPP, oid, root)
                report.added.append(oid)
            else:
                db.save(MARKETAPP, oid, root)
                kept.add(oid)
                report.updated.append(oid)
            ids.append(oid)
        for app_id, _checksum, _regtime in existing.values():
            if app_id not in kept:
                db.execute("DELETE FROM marketplaceapp_pool WHERE oid = ?", (app_id,))
                report.removed.append(app_id)
        bodies.set_ids(market, "MARKETPLACEAPPS", ids)
        template = parse(
            render(
                {
                    **_market_attributes(market),
                    MONITOR_TIME: str(int(time.time())),
                    MONITOR_APPS: str(len(records)),
                }
            )
        )
        bodies.replace_template(market, template)
        db.save(MARKET, market_id, market)
    return report


def _ids(existing: dict[str, tuple[int, str, str]]) -> set[int]:
    return {value[0] for value in existing.values()}


def _market_attributes(market: object) -> dict[str, object]:
    """The market's template as a mapping for ``render`` (vectors kept)."""
    from xml.etree.ElementTree import Element

    assert isinstance(market, Element)
    values: dict[str, object] = {}
    template = market.find("TEMPLATE")
    for child in template if template is not None else []:
        if len(child):
            value: object = {item.tag: item.text or "" for item in child}
        else:
            value = child.text or ""
        if child.tag in values:
            current = values[child.tag]
            values[child.tag] = [*current, value] if isinstance(current, list) else [current, value]
        else:
            values[child.tag] = value
    return values


def _free_name(db: DriverTransaction, name: str, market_name: str, oid: int) -> str:
    """``name``, or ``name (<market>)``/``name (<market> N)`` when another app of oneadmin
    (in another market: names are unique within a catalog) already has it."""

    def taken(candidate: str) -> bool:
        row = db.execute(
            "SELECT oid FROM marketplaceapp_pool WHERE name = ? AND uid = 0 AND oid != ?",
            (candidate, oid),
        ).fetchone()
        return row is not None

    if not taken(name):
        return name
    for number in range(1, 1000):
        suffix = f" ({market_name})" if number == 1 else f" ({market_name} {number})"
        candidate = name[: 128 - len(suffix)] + suffix
        if not taken(candidate):
            return candidate
    raise OnetoolsError(f"No free name for app {name!r} in market {market_name}")
