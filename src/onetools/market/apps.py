"""Marketplace apps: the library behind ``onemarketapp`` (reference/onemarketapp.md §1, §3).

Every function takes a ``OneApi`` and plain arguments and returns data or raises a
``OnetoolsError``; the CLI only parses and prints.  What differs from the original, on purpose:

* ``create`` of an IMAGE app from an image writes ``APPTEMPLATE64`` (the image's TYPE and
  DEV_PREFIX), so that the app exports as the same kind of image; the original's
  ``create --image`` wrote neither template and exported a bare OS image;
* apps are created only on markets that accept them (http, s3): the refusal names the market
  and its driver before anything is allocated;
* ``chown`` of an app in a public market is refused (as 6.8+, #6331);
* ``show`` reads PUBLISHER from the app's TEMPLATE (the original read it from the top level,
  where it never is, and always printed it empty).
"""

from __future__ import annotations

import base64

from onetools.errors import UsageError
from onetools.one.api import MARKET, MARKETAPP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any
    from xml.etree.ElementTree import Element

    from onetools.one.api import OneApi, Permissions
    from onetools.one.template import Template
    from onetools.one.xml import OneObject

#: App TYPE numbers (§3.2) and their long and short names.
TYPE_NAMES = {0: "UNKNOWN", 1: "IMAGE", 2: "VMTEMPLATE", 3: "SERVICE_TEMPLATE"}
TYPE_SHORT = {0: "unk", 1: "img", 2: "tpl", 3: "srv"}
#: App STATE numbers and their names.
STATE_NAMES = {0: "INIT", 1: "READY", 2: "LOCKED", 3: "ERROR", 4: "DISABLED"}
STATE_SHORT = {0: "ini", 1: "rdy", 2: "lck", 3: "err", 4: "dis"}
APP_READY, APP_ERROR, APP_DISABLED = 1, 3, 4
#: Market drivers whose apps users create (``MARKET_MAD_CONF`` APP_ACTIONS has ``create``).
PRIVATE_MADS = frozenset({"http", "s3"})
#: Market drivers that list a public catalog (apps owned by oneadmin, monitored).
PUBLIC_MADS = frozenset({"one", "linuxcontainers", "turnkeylinux", "dockerhub", "docker_registry"})
#: Image TYPE numbers (one.image.info) to names.
IMAGE_TYPE_NAMES = {
    0: "OS",
    1: "CDROM",
    2: "DATABLOCK",
    3: "KERNEL",
    4: "RAMDISK",
    5: "CONTEXT",
    6: "BACKUP",
}

LOCK_LEVELS = {"use": 1, "manage": 2, "admin": 3, "all": 4}


# -- reading ------------------------------------------------------------------------------------
def list_apps(one: OneApi, filter_flag: int = -2) -> list[OneObject]:
    """The app pool (``filter_flag`` as ``one.marketapppool.info``; default all)."""
    return one.pool(MARKETAPP, filter_flag)


def show(one: OneApi, app_id: int) -> OneObject:
    """One app as ``one.marketapp.info`` returns it."""
    return one.info(MARKETAPP, app_id)


def checksums(app: OneObject) -> tuple[str | None, str | None]:
    """``(md5, sha256)`` to verify a download of the app's file: MD5 as OpenNebula records it,
    SHA-256 as the catalog gave it (``TEMPLATE/SHA256``, kept by the monitor); None: absent."""
    md5 = app.text("MD5") or app.text("TEMPLATE/MD5")
    sha256 = app.text("TEMPLATE/SHA256") or app.text("SHA256")
    return md5 or None, sha256 or None


def decode64(text: str) -> str:
    """A ``*TEMPLATE64`` attribute decoded ("" when empty); bad base64 is an error that says so."""
    if not text.strip():
        return ""
    try:
        return base64.b64decode(text.strip(), validate=False).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise UsageError("The app's template is not valid base64 UTF-8 text") from None


def encode64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def type_name(app: OneObject) -> str:
    return TYPE_NAMES.get(app.int("TYPE", 0), "UNKNOWN")


def state_name(app: OneObject) -> str:
    return STATE_NAMES.get(app.int("STATE", 0), "UNKNOWN")


def size_text(megabytes: int | str | None) -> str:
    """unit_to_str from M: ``256M``, ``2G``, ``1.5G`` (one decimal, ``.0`` dropped)."""
    try:
        value = float(megabytes or 0)
    except (TypeError, ValueError):
        return "-"
    units = "MGTP"
    index = 0
    while value > 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text}{units[index]}"


def template_text(template: Template) -> str:
    """A ``Template`` as OpenNebula template text (vectors one member per line)."""
    from onetools.one.template import quote

    lines = []
    for key, value in template.attributes:
        if isinstance(value, list):
            inner = ",\n  ".join(f"{k} = {quote(v)}" for k, v in value)
            lines.append(f"{key} = [\n  {inner} ]")
        else:
            lines.append(f"{key} = {quote(value)}")
    return "".join(line + "\n" for line in lines)


def element_text(element: Element | None) -> str:
    """The children of a ``<TEMPLATE>`` element as template text (for ``show``)."""
    from onetools.one.template import Template

    if element is None:
        return ""
    template = Template()
    for child in element:
        if len(child):
            template.add(child.tag, [(sub.tag, sub.text or "") for sub in child])
        else:
            template.add(child.tag, child.text or "")
    return template_text(template)


# -- creating -----------------------------------------------------------------------------------
def _market(one: OneApi, market_id: int) -> OneObject:
    market = one.info(MARKET, market_id)
    mad = market.text("MARKET_MAD")
    if mad not in PRIVATE_MADS:
        raise UsageError(
            f"Marketplace {market_id} ({market.name}, driver {mad}) does not accept new apps: "
            "create them in an http or s3 marketplace"
        )
    return market


def image_app_template(
    one: OneApi,
    image_id: int,
    name: str | None = None,
    description: str | None = None,
    version: str | None = None,
    vmtemplate: str | None = None,
) -> str:
    """The template of an IMAGE app built from image ``image_id`` (§3.3): ORIGIN_ID, TYPE,
    and APPTEMPLATE64 with the image's TYPE and DEV_PREFIX (the export side uses it).
    ``vmtemplate`` (VM template text without disks) becomes VMTEMPLATE64."""
    from onetools.one.api import IMAGE
    from onetools.one.template import Template

    image = one.info(IMAGE, image_id)
    image_template = Template([("TYPE", IMAGE_TYPE_NAMES.get(image.int("TYPE", 0), "OS"))])
    dev_prefix = image.text("TEMPLATE/DEV_PREFIX")
    if dev_prefix:
        image_template.add("DEV_PREFIX", dev_prefix)
    app = Template([("NAME", name or image.name)])
    if description:
        app.add("DESCRIPTION", description)
    if version:
        app.add("VERSION", version)
    app.add("ORIGIN_ID", str(image_id))
    app.add("TYPE", "IMAGE")
    app.add("APPTEMPLATE64", encode64(template_text(image_template)))
    if vmtemplate:
        app.add("VMTEMPLATE64", encode64(vmtemplate))
    return template_text(app)


def options_template(name: str | None, description: str | None, image_id: int | None) -> str:
    """What ``create`` without a file builds from ``--name``/``--description``/``--image``
    (§1.3), values quoted (the original did not escape them)."""
    from onetools.one.template import Template

    app = Template()
    if name:
        app.add("NAME", name)
    if description:
        app.add("DESCRIPTION", description)
    if image_id is not None:
        app.add("ORIGIN_ID", str(image_id))
    app.add("TYPE", "IMAGE")
    return template_text(app)


def create(one: OneApi, market_id: int, template: str) -> int:
    """Allocate an app from its template text in a private market; the new ID.

    IMAGE apps need ORIGIN_ID (an image); VMTEMPLATE apps carry APPTEMPLATE64 and
    ``DISK=[NAME, APP]`` entries, SERVICE_TEMPLATE apps APPTEMPLATE64 and ``ROLE=[NAME, APP]``.
    """
    from onetools.one.template import parse

    parsed = parse(template)
    kind = (parsed.get("TYPE") or "IMAGE").upper()
    if kind not in ("IMAGE", "VMTEMPLATE", "SERVICE_TEMPLATE"):
        raise UsageError(f"Unknown app TYPE '{kind}' (IMAGE, VMTEMPLATE or SERVICE_TEMPLATE)")
    if not parsed.get("NAME"):
        raise UsageError("The app needs a NAME")
    if kind == "IMAGE" and not parsed.get("ORIGIN_ID"):
        raise UsageError("An IMAGE app needs the image it is made from (--image or ORIGIN_ID)")
    if kind != "IMAGE" and not parsed.get("ORIGIN_ID"):
        parsed.set("ORIGIN_ID", "-1")  # oned requires the attribute for every type
    _market(one, market_id)
    app_id = one.allocate_marketapp(template_text(parsed), market_id)
    if kind == "IMAGE":
        _import_file(one, app_id)
    return app_id


def _import_file(one: OneApi, app_id: int) -> None:
    """On the embedded store we are the market driver: copy the image file into the market
    (drivers/private.py); if that fails the app is deleted again and the error raised."""
    from onetools.market.drivers import private

    if not private.runs_here(one):
        return
    try:
        private.import_app(one, app_id)
    except BaseException:
        one.delete(MARKETAPP, app_id)
        raise


def vmtemplate_app_template(
    one: OneApi, template_id: int, name: str, disk_apps: Sequence[str] = ()
) -> str:
    """A VMTEMPLATE app's template from VM template ``template_id`` (§3.3, §6.1): the template
    without its DISKs in APPTEMPLATE64, NICs turned into auto NICs (their network is the source
    cloud's), and one ``DISK=[NAME, APP]`` per name in ``disk_apps`` (IMAGE apps)."""
    from onetools.one.api import TEMPLATE
    from onetools.one.template import Template

    source = one.info(TEMPLATE, template_id)
    body = Template()
    element = source.root.find("TEMPLATE")
    has_alias = element is not None and element.find("NIC_ALIAS") is not None
    network_keys = {"NETWORK", "NETWORK_ID", "NETWORK_UNAME", "SECURITY_GROUPS"}
    for child in element if element is not None else []:
        if child.tag == "DISK":
            continue
        if len(child):
            members = [(sub.tag, sub.text or "") for sub in child]
            if child.tag in ("NIC", "NIC_ALIAS"):
                auto = any(k == "NETWORK_MODE" and v.lower() == "auto" for k, v in members)
                if not auto and any(k in ("NETWORK", "NETWORK_ID") for k, _ in members):
                    members = [(k, v) for k, v in members if k not in network_keys]
                    # An auto NIC cannot have aliases; MARKET keeps the element non-empty.
                    if child.tag == "NIC":
                        members.append(("MARKET", "YES") if has_alias else ("NETWORK_MODE", "auto"))
            body.add(child.tag, members)
        else:
            body.add(child.tag, child.text or "")
    app = Template(
        [
            ("NAME", name),
            ("ORIGIN_ID", "-1"),
            ("TYPE", "VMTEMPLATE"),
            ("VERSION", one.version()),
            ("APPTEMPLATE64", encode64(template_text(body))),
        ]
    )
    for index, disk_app in enumerate(disk_apps):
        app.add("DISK", [("NAME", f"DISK_{index}"), ("APP", disk_app)])
    return template_text(app)


# -- changing -----------------------------------------------------------------------------------
def delete(one: OneApi, app_id: int) -> None:
    """Delete an app; on the embedded store its file or object goes first, and a failure
    there keeps the app (its error is raised)."""
    from onetools.market.drivers import private

    if private.runs_here(one):
        private.delete_app(one, app_id)
    one.delete(MARKETAPP, app_id)


def update(one: OneApi, app_id: int, template: str, append: bool = False) -> None:
    """Replace (or with ``append`` merge into) the app's template; oned keeps SOURCE, SIZE,
    MD5, FORMAT, REGTIME and ORIGIN_ID out of it."""
    from onetools.one.template import parse

    parsed = parse(template)
    for protected in ("SOURCE", "SIZE", "MD5", "FORMAT", "REGTIME", "ORIGIN_ID"):
        parsed.remove(protected)
    one.update(MARKETAPP, app_id, template_text(parsed), merge=append)


def rename(one: OneApi, app_id: int, name: str) -> None:
    if not name.strip():
        raise UsageError("The new name is empty")
    one.rename(MARKETAPP, app_id, name)


def chown(one: OneApi, app_id: int, uid: int = -1, gid: int = -1) -> None:
    """Change owner and/or group; refused for apps of public markets (monitoring owns them)."""
    if uid != -1:
        app = one.info(MARKETAPP, app_id)
        market = one.info(MARKET, app.int("MARKETPLACE_ID"))
        if market.text("MARKET_MAD") in PUBLIC_MADS:
            raise UsageError(
                f"App {app_id} belongs to the public marketplace {market.name}: its owner "
                "cannot change"
            )
    one.chown(MARKETAPP, app_id, uid, gid)


def chmod(one: OneApi, app_id: int, permissions: Permissions) -> None:
    one.chmod(MARKETAPP, app_id, permissions)


def enable(one: OneApi, app_id: int, enabled: bool) -> None:
    """READY ↔ DISABLED (apps in other states are left as they are, as oned does)."""
    one.enable(MARKETAPP, app_id, enabled)


def lock(one: OneApi, app_id: int, level: int = 1) -> None:
    """Lock at level 1 use, 2 manage, 3 admin or 4 all."""
    if level not in LOCK_LEVELS.values():
        raise UsageError(f"Invalid lock level {level} (1 use, 2 manage, 3 admin, 4 all)")
    one.lock(MARKETAPP, app_id, level)


def unlock(one: OneApi, app_id: int) -> None:
    one.unlock(MARKETAPP, app_id)


def summary(app: OneObject) -> dict[str, Any]:
    """The fields ``show`` prints, in its order (§1.5)."""
    lock_info = app.lock
    lock_names = {0: "None", 1: "Use", 2: "Manage", 3: "Admin", 4: "All"}
    return {
        "ID": app.id,
        "NAME": app.name,
        "TYPE": type_name(app),
        "USER": app.uname,
        "GROUP": app.gname,
        "MARKETPLACE": app.text("MARKETPLACE"),
        "STATE": STATE_SHORT.get(app.int("STATE", 0), "-"),
        "LOCK": lock_names.get(lock_info["LOCKED"], "-") if lock_info else "None",
        "SOURCE": app.text("SOURCE"),
        "MD5": app.text("MD5"),
        "PUBLISHER": app.text("TEMPLATE/PUBLISHER") or app.text("PUBLISHER"),
        "REGTIME": app.int("REGTIME", 0),
        "VERSION": app.text("VERSION"),
        "DESCRIPTION": app.text("DESCRIPTION"),
        "SIZE": size_text(app.text("SIZE")),
        "ORIGIN_ID": app.text("ORIGIN_ID"),
        "FORMAT": app.text("FORMAT"),
    }
