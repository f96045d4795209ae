"""``one``: the OpenNebula public marketplace (``GET <ENDPOINT>/appliance``, reference §7.1
and §9).

Fixes over the 6.0.0 driver (§10.1 item 8): an HTTP error is a failure, not output; numbers
and booleans in ``opennebula_template`` are kept (they made 6.0.0 drop VMTEMPLATE64); the URL
has no double slash; ``files[0].sha256`` is kept when the catalog gives one.
"""

from __future__ import annotations

import json

from onetools.market.drivers._catalog import (
    AppRecord,
    CatalogError,
    EntryRefused,
    MonitorResult,
    b64,
    check_checksum,
    check_integer,
    check_name,
    check_text,
    check_url,
    fetch_json,
    join_url,
    market_option,
    template_text,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_ENDPOINT = "https://marketplace.opennebula.io/"
#: The server sends JSON only to clients whose User-Agent contains "OpenNebula" (§9), and
#: filters by the X.Y after it.
USER_AGENT = "OpenNebula 6.10.0 (Market Driver; onetools)"


def monitor(market: Mapping[str, str]) -> MonitorResult:
    """The apps of the marketplace at the market's ``ENDPOINT``."""
    endpoint = market_option(market, "ENDPOINT", DEFAULT_ENDPOINT)
    url = join_url(endpoint, "appliance")
    data = fetch_json(url, {"User-Agent": USER_AGENT, "Accept": "application/json"})
    if not isinstance(data, dict) or not isinstance(data.get("appliances"), list):
        raise CatalogError(f"Cannot parse {url}: no 'appliances' list")
    result = MonitorResult()
    for index, entry in enumerate(data["appliances"]):
        key = f"#{index}"
        try:
            if not isinstance(entry, dict):
                raise EntryRefused("not an object")
            identifier = entry.get("_id")
            oid = identifier.get("$oid") if isinstance(identifier, dict) else identifier
            key = check_text(oid, "_id", limit=128)
            if not key or any(c in key for c in "/?#\\ "):
                raise EntryRefused("no usable _id")
            record = _record(endpoint, key, entry)
        except EntryRefused as exc:
            result.refuse(key, str(exc))
            continue
        if record is not None:
            result.add(record)
    return result


def _record(endpoint: str, oid: str, entry: dict[str, Any]) -> AppRecord | None:
    app_type = check_text(entry.get("type") or "IMAGE", "type").upper()
    if app_type not in ("IMAGE", "VMTEMPLATE", "SERVICE_TEMPLATE"):
        raise EntryRefused(f"type {app_type!r} is not IMAGE, VMTEMPLATE or SERVICE_TEMPLATE")
    link = join_url(endpoint, f"appliance/{oid}")
    tags = entry.get("tags") or []
    if not isinstance(tags, list):
        raise EntryRefused("tags is not a list")
    record = AppRecord(
        check_name(entry.get("name")),
        oid,
        check_url(join_url(link, "download/0"), "source"),
        app_type,
        image_format=check_text(entry.get("format"), "format", limit=32),
        version=check_text(entry.get("version"), "version", limit=128),
        description=check_text(entry.get("short_description"), "short_description", multiline=True),
        publisher=check_text(entry.get("publisher"), "publisher", limit=256),
        regtime=check_integer(entry.get("creation_time"), "creation_time"),
        tags=", ".join(check_text(tag, "tag", limit=128) for tag in tags),
        link=link,
        architecture=_architecture(entry.get("os-arch")),
        hypervisor=_hypervisor(entry.get("hypervisor")),
    )
    raw_template = entry.get("opennebula_template")
    if app_type == "IMAGE":
        files = entry.get("files") or []
        first = files[0] if isinstance(files, list) and files else {}
        if not isinstance(first, dict):
            raise EntryRefused("files[0] is not an object")
        size = check_integer(first.get("size"), "files[0].size")
        record.size_mb = -(-size // (1 << 20))
        checksum = first.get("checksum")
        if not isinstance(checksum, dict):
            checksum = {}
        record.md5 = check_checksum(first.get("md5") or checksum.get("md5"), "md5", 32)
        record.sha256 = check_checksum(first.get("sha256") or checksum.get("sha256"), "sha256", 64)
        image = {"DEV_PREFIX": first.get("dev_prefix"), "TYPE": first.get("type")}
        record.apptemplate64 = _b64_template(image)
        if raw_template:
            record.vmtemplate64 = _b64_template(_json_template(raw_template))
    elif app_type == "VMTEMPLATE":
        disks = entry.get("disks") or []
        if not isinstance(disks, list):
            raise EntryRefused("disks is not a list")
        # Disks name their image apps; the label is positional (6.0.0 used random hex,
        # which made every refresh look like a change).
        record.disks = [(f"DISK_{i}", check_name(app)) for i, app in enumerate(disks)]
        if raw_template:
            record.apptemplate64 = _b64_template(_json_template(raw_template))
    else:
        roles = entry.get("roles") or {}
        if not isinstance(roles, dict):
            raise EntryRefused("roles is not an object")
        record.roles = [(check_name(role), check_name(app)) for role, app in roles.items()]
        if raw_template:
            text = check_text(raw_template, "opennebula_template", multiline=True, limit=1 << 20)
            _json_template(text)  # must at least be JSON
            record.apptemplate64 = b64(text)
    return record


#: ``os-arch`` as OpenNebula names architectures ([HEAD] driver, §7.1).
_ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64", "": "all"}


def _architecture(value: object) -> str:
    text = check_text(value, "os-arch", limit=32).strip()
    return _ARCHITECTURES.get(text, text)


def _hypervisor(value: object) -> str:
    text = check_text(value, "hypervisor", limit=32).strip().lower()
    return "kvm" if text in ("", "all") else text


def _json_template(raw: object) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    text = check_text(raw, "opennebula_template", multiline=True, limit=1 << 20)
    try:
        value = json.loads(text)
    except ValueError:
        raise EntryRefused("opennebula_template is not JSON") from None
    if not isinstance(value, dict):
        raise EntryRefused("opennebula_template is not a JSON object")
    return value


def _b64_template(attributes: dict[str, Any]) -> str:
    text = template_text(attributes)
    return b64(text) if text else ""
