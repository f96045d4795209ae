"""Import and delete of IMAGE apps in the private markets (http, s3) on the embedded store.

On a real front-end oned runs the market driver after ``one.marketapp.allocate`` and before
dropping an app; on the embedded store nothing runs behind the store, so ``market.apps`` calls
``import_app`` after allocating and ``delete_app`` before deleting.

Setting SOURCE/MD5/SIZE/FORMAT: ``one.update(MARKETAPP, ...)`` cannot do it (oned, and
LocalOne with it, keep those attributes out of updates), so ``_record_import`` writes them in a
``LocalOne.driver_transaction()``, the store's interface for what drivers report (as
``market.monitor`` does for catalogs).
"""

from __future__ import annotations

from pathlib import Path

from onetools.errors import UsageError
from onetools.one.api import IMAGE, MARKET, MARKETAPP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from onetools.market.drivers.http import Imported
    from onetools.one.api import OneApi
    from onetools.one.xml import OneObject

PRIVATE_DRIVERS = ("http", "s3")


def market_settings(market: OneObject) -> dict[str, str]:
    """The market's TEMPLATE as a flat dict (vectors skipped)."""
    element = market.root.find("TEMPLATE")
    settings: dict[str, str] = {}
    for child in element if element is not None else []:
        if not len(child):
            settings[child.tag] = (child.text or "").strip()
    return settings


def runs_here(one: OneApi) -> bool:
    """Whether we play the market driver (the embedded store) or oned does."""
    return one.backend_name == "embedded"


def image_file(image: OneObject) -> Path:
    """The local file holding the image's bytes: its PATH, else its SOURCE."""
    from onetools.one.local import image_file as local_file

    path = local_file(image.root)
    if path is None:
        raise UsageError(
            f"Image {image.id} ({image.name}) has no local file to import (PATH/SOURCE): "
            "only local image files can be put in a private marketplace here"
        )
    return path


def import_app(one: OneApi, app_id: int) -> None:
    """Run the market driver's import for IMAGE app ``app_id`` and record the result."""
    app = one.info(MARKETAPP, app_id)
    if app.int("TYPE", 0) != 1:
        return  # only IMAGE apps carry a file (§3.4)
    market = one.info(MARKET, app.int("MARKETPLACE_ID"))
    mad = market.text("MARKET_MAD")
    if mad not in PRIVATE_DRIVERS:
        return
    settings = market_settings(market)
    if mad == "http":
        from onetools.market.drivers import http

        if not http.files_here(settings):
            from onetools.log import get_logger

            get_logger("market").warning(
                f"App {app_id}: the file was not copied (PUBLIC_DIR "
                f"{settings.get('PUBLIC_DIR', '')} is not a directory on this machine and the "
                "market has no BRIDGE_LIST): the app has no SOURCE until a driver sets one"
            )
            return
    image = one.info(IMAGE, app.int("ORIGIN_ID"))
    source_file = image_file(image)
    image_format = image.text("FORMAT") or "raw"
    imported: Imported
    if mad == "http":
        from onetools.market.drivers import http

        imported = http.import_image(settings, app_id, source_file, image_format)
    else:
        from onetools.market.drivers import s3

        imported = s3.import_image(settings, app_id, source_file, image_format)
    _record_import(one, app_id, imported)


def delete_app(one: OneApi, app_id: int) -> None:
    """Run the market driver's delete for app ``app_id`` (its file or object)."""
    app = one.info(MARKETAPP, app_id)
    source = app.text("SOURCE")
    if app.int("TYPE", 0) != 1 or not source:
        return
    market = one.info(MARKET, app.int("MARKETPLACE_ID"))
    mad = market.text("MARKET_MAD")
    settings = market_settings(market)
    if mad == "http":
        from onetools.market.drivers import http

        if http.files_here(settings):
            http.delete_file(settings, source, app_id)
    elif mad == "s3":
        from onetools.market.drivers import s3

        s3.delete_object(settings, source)


def _record_import(one: OneApi, app_id: int, imported: Imported) -> None:
    # What the driver reports (see the module docstring): LocalOne's update keeps these out.
    from onetools.one import bodies
    from onetools.one.local import LocalOne

    assert isinstance(one, LocalOne)
    with one.driver_transaction() as db:
        root = db.load(MARKETAPP, app_id, "onemarketapp.import")
        bodies.set_text(root, "SOURCE", imported.source)
        bodies.set_text(root, "MD5", imported.md5)
        bodies.set_text(root, "SIZE", imported.size_mb)
        bodies.set_text(root, "FORMAT", imported.image_format)
        db.save(MARKETAPP, app_id, root)
