"""``dockerhub``: repositories of a Docker Hub namespace (reference §7.4).

``ENDPOINT`` is the repositories listing of any namespace (default the official images,
``https://hub.docker.com/v2/repositories/library/``); pages are followed through ``next``
(at most ``MAX_PAGES``, and only on the same host).  Fixes over 6.0.0: no synthetic MD5 (Hub
gives no file checksum: the app has none), namespaces other than ``library/``.
"""

from __future__ import annotations

import urllib.parse

from onetools.market.drivers._catalog import (
    MAX_PAGES,
    AppRecord,
    CatalogError,
    EntryRefused,
    MonitorResult,
    check_text,
    fetch_json,
    market_int,
    market_option,
    safe_name,
)
from onetools.market.drivers._container import APPTEMPLATE64, VMTEMPLATE64

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_ENDPOINT = "https://hub.docker.com/v2/repositories/library/"
USER_AGENT = "OpenNebula 6.10.0 (onetools)"


def monitor(market: Mapping[str, str]) -> MonitorResult:
    """The repositories listed at the market's ``ENDPOINT``."""
    endpoint = market_option(market, "ENDPOINT", DEFAULT_ENDPOINT)
    size = market_int(market, "IMAGE_SIZE_MB", 2048)
    filesystem = market_option(market, "FILESYSTEM", "ext4")
    image_format = market_option(market, "FORMAT", "raw")
    parsed = urllib.parse.urlsplit(endpoint)
    # .../v2/repositories/<namespace>/ → the namespace images are pulled from.
    segments = [s for s in parsed.path.split("/") if s]
    namespace = segments[-1] if len(segments) >= 3 else "library"
    url: str | None = endpoint + ("&" if "?" in endpoint else "?") + "page_size=100"
    result = MonitorResult()
    pages = 0
    while url:
        pages += 1
        if pages > MAX_PAGES:
            raise CatalogError(f"{endpoint} lists more than {MAX_PAGES} pages")
        data = fetch_json(url, {"User-Agent": USER_AGENT})
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise CatalogError(f"Cannot parse {url}: no 'results' list")
        for entry in data["results"]:
            key = str(entry.get("name")) if isinstance(entry, dict) else "?"
            try:
                result.add(_record(namespace, entry, size, filesystem, image_format))
            except EntryRefused as exc:
                result.refuse(key, str(exc))
        following = data.get("next")
        if following and not isinstance(following, str):
            raise CatalogError(f"Cannot parse {url}: 'next' is not a URL")
        if following and urllib.parse.urlsplit(following).netloc != parsed.netloc:
            raise CatalogError(f"{url}: the next page is on another host ({following[:80]})")
        url = following or None
    return result


def _record(namespace: str, entry: Any, size: int, filesystem: str, image_format: str) -> AppRecord:
    if not isinstance(entry, dict):
        raise EntryRefused("not an object")
    repository = check_text(entry.get("name"), "name", limit=255)
    if not repository or any(not (c.isalnum() or c in "._-") for c in repository):
        raise EntryRefused(f"repository name {repository[:60]!r} is not a Docker name")
    image = repository if namespace == "library" else f"{namespace}/{repository}"
    link = (
        f"https://hub.docker.com/_/{repository}"
        if namespace == "library"
        else f"https://hub.docker.com/r/{image}"
    )
    return AppRecord(
        safe_name(image if namespace != "library" else repository),
        image,
        f"docker://{image}?size={size}&filesystem={filesystem}&format={image_format}",
        "IMAGE",
        size_mb=size,
        image_format=image_format,
        version=check_text(entry.get("last_updated"), "last_updated", limit=64)[:10] or "1.0",
        description=check_text(entry.get("description"), "description", limit=4096),
        publisher="hub.docker.com",
        regtime=_date(entry.get("last_updated")),
        link=link,
        apptemplate64=APPTEMPLATE64,
        vmtemplate64=VMTEMPLATE64,
    )


def _date(value: object) -> int:
    """The date part of an ISO time as epoch seconds UTC (0 when there is none)."""
    import calendar
    import time

    try:
        return calendar.timegm(time.strptime(str(value)[:10], "%Y-%m-%d"))
    except ValueError:
        return 0
