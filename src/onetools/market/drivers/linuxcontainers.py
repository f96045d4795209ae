"""``linuxcontainers``: root file systems from a simplestreams server (reference §7.5 [HEAD]).

Reads ``<ENDPOINT>/streams/v1/index.json`` for the path of the ``images`` product list
(default ``streams/v1/images.json``), then that list; no HTML scraping (§10.1 item 8).
Products are keyed ``distro:release:arch:variant``; only variant ``default`` and arch
amd64/arm64 are kept, and the newest version (largest build key, not JSON order) that has
``root.tar.xz`` (or ``rootfs.tar.xz``, what distrobuilder servers name it).  Its sha256 is
the app's checksum.
"""

from __future__ import annotations

from onetools.market.drivers._catalog import (
    AppRecord,
    CatalogError,
    EntryRefused,
    MonitorResult,
    b64,
    check_checksum,
    check_integer,
    check_text,
    fetch_json,
    join_url,
    market_int,
    market_option,
    safe_name,
    template_text,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_ENDPOINT = "https://images.linuxcontainers.org"
ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}
ROOTFS_ITEMS = ("root.tar.xz", "rootfs.tar.xz")


def monitor(market: Mapping[str, str]) -> MonitorResult:
    """The root file systems the market's ``ENDPOINT`` publishes."""
    endpoint = market_option(market, "ENDPOINT", DEFAULT_ENDPOINT)
    size = market_int(market, "IMAGE_SIZE_MB", 2048)
    filesystem = market_option(market, "FILESYSTEM", "ext4")
    image_format = market_option(market, "FORMAT", "raw")
    images_path = _images_path(endpoint)
    data = fetch_json(join_url(endpoint, images_path))
    products = data.get("products") if isinstance(data, dict) else None
    if not isinstance(products, dict):
        raise CatalogError(f"Cannot parse {join_url(endpoint, images_path)}: no 'products'")
    result = MonitorResult()
    for key, product in products.items():
        try:
            record = _record(endpoint, str(key), product, size, filesystem, image_format, market)
        except EntryRefused as exc:
            result.refuse(str(key), str(exc))
            continue
        if record is not None:
            result.add(record)
    return result


def _images_path(endpoint: str) -> str:
    """The ``images`` product list's path from the stream index (its ``path``)."""
    index = fetch_json(join_url(endpoint, "streams/v1/index.json"))
    entries = index.get("index") if isinstance(index, dict) else None
    if not isinstance(entries, dict):
        raise CatalogError(f"Cannot parse {join_url(endpoint, 'streams/v1/index.json')}: no index")
    for entry in entries.values():
        if isinstance(entry, dict) and entry.get("datatype") == "image-downloads":
            path = entry.get("path")
            if isinstance(path, str) and path.endswith(".json") and ".." not in path:
                return path.lstrip("/")
    return "streams/v1/images.json"


def _record(
    endpoint: str,
    key: str,
    product: Any,
    size: int,
    filesystem: str,
    image_format: str,
    market: Mapping[str, str],
) -> AppRecord | None:
    parts = key.split(":")
    if len(parts) != 4 or not isinstance(product, dict):
        return None  # another key scheme (incus VM images): not a container catalog entry
    distro, release, arch, variant = parts
    if variant != "default" or arch not in ARCHES:
        return None
    versions = product.get("versions")
    if not isinstance(versions, dict) or not versions:
        return None
    for build in sorted(versions, reverse=True):
        items = versions[build].get("items") if isinstance(versions[build], dict) else None
        if not isinstance(items, dict):
            continue
        item = next((items[n] for n in ROOTFS_ITEMS if isinstance(items.get(n), dict)), None)
        if item is None:
            continue
        path = check_text(item.get("path"), "path", limit=1024)
        if not path or ".." in path.split("/") or path.startswith("/") or "?" in path:
            raise EntryRefused(f"item path {path[:60]!r} is not a relative path")
        name = safe_name(f"{distro}_{release}" + (" (aarch64)" if arch == "arm64" else ""))
        url = join_url(endpoint, path)
        if any(c.isspace() or c in "\"'<>\\&?" for c in url):
            raise EntryRefused("its URL has characters not allowed")
        source = f"lxd://{url}?size={size}&filesystem={filesystem}&format={image_format}"
        vm_template = {
            "SCHED_REQUIREMENTS": f"HYPERVISOR=lxc & ARCH={ARCHES[arch]}",
            "CPU": market_option(market, "CPU", "1"),
            "VCPU": market_option(market, "VCPU", "2"),
            "MEMORY": market_option(market, "MEMORY", "768"),
            "LXC_UNPRIVILEGED": _unprivileged(market),
            "HYPERVISOR": "lxc",
            "CONTEXT": CONTEXT,
        }
        check_integer(item.get("size"), "size")  # a negative or non-number size: refused
        return AppRecord(
            name,
            key,
            source,
            "IMAGE",
            sha256=check_checksum(item.get("sha256"), "sha256", 64),
            size_mb=size,
            image_format=image_format,
            version=check_text(build, "version", limit=64),
            description=f"Downloaded from {endpoint}",
            publisher=endpoint,
            regtime=_build_time(build),
            link=url,
            apptemplate64=b64('DRIVER="raw"\n'),
            vmtemplate64=b64(template_text(vm_template)),
            tags=check_text(product.get("os"), "os", limit=64),
            architecture=ARCHES[arch],
            hypervisor="lxc",
        )
    return None


CONTEXT = {"NETWORK": "YES", "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]", "SET_HOSTNAME": "$NAME"}


def _unprivileged(market: Mapping[str, str]) -> str:
    return "no" if market_option(market, "PRIVILEGED", "no").lower() == "yes" else "yes"


def _build_time(build: str) -> int:
    """``20240101_12:00`` (or ``202401011200``) as epoch seconds UTC; 0 when not a date."""
    import calendar
    import time

    for pattern in ("%Y%m%d_%H:%M", "%Y%m%d%H%M"):
        try:
            return calendar.timegm(time.strptime(build, pattern))
        except ValueError:
            continue
    return 0
