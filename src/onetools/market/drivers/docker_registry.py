"""``docker_registry``: the repositories of a private Docker Registry v2 (6.2-6.8, reference
§7.4 "Related").

``BASE_URL`` is the registry (``http://127.0.0.1:5000``).  ``GET /v2/_catalog`` lists the
repositories (paginated through the ``Link: <…>; rel="next"`` header, same host only);
``GET /v2/<name>/tags/list`` the tags; one app per repository and tag, whose SOURCE is
``docker://<host>/<name>:<tag>?size=…`` (the host part is what C's docker:// downloader pulls
from).  ``SSL=no`` is not a URL rewrite (the 6.2 bug): the scheme of BASE_URL decides.
"""

from __future__ import annotations

import re
import urllib.parse

from onetools.market.drivers._catalog import (
    MAX_PAGES,
    AppRecord,
    CatalogError,
    EntryRefused,
    MonitorResult,
    fetch,
    market_int,
    market_option,
    safe_name,
)
from onetools.market.drivers._container import APPTEMPLATE64, VMTEMPLATE64

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

#: Repository names and tags as the distribution spec allows them.
_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def monitor(market: Mapping[str, str]) -> MonitorResult:
    """One app per repository:tag of the registry at ``BASE_URL``."""
    base = market_option(market, "BASE_URL", "")
    if not base:
        raise CatalogError("The docker_registry market has no BASE_URL")
    parsed = urllib.parse.urlsplit(base)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CatalogError(f"BASE_URL {base!r} is not an http(s) URL")
    origin = f"{parsed.scheme}://{parsed.netloc}"
    size = market_int(market, "IMAGE_SIZE_MB", 2048)
    filesystem = market_option(market, "FILESYSTEM", "ext4")
    image_format = market_option(market, "FORMAT", "raw")
    result = MonitorResult()
    for repository in _paged(origin, "/v2/_catalog?n=100", "repositories"):
        if not isinstance(repository, str) or not _REPOSITORY.match(repository):
            result.refuse(str(repository), "not a valid repository name")
            continue
        quoted = urllib.parse.quote(repository, safe="/")
        for tag in _paged(origin, f"/v2/{quoted}/tags/list?n=100", "tags"):
            key = f"{repository}:{tag}"
            if not isinstance(tag, str) or not _TAG.match(tag):
                result.refuse(key, "not a valid tag")
                continue
            try:
                result.add(
                    AppRecord(
                        safe_name(key),
                        key,
                        f"docker://{parsed.netloc}/{repository}:{tag}"
                        f"?size={size}&filesystem={filesystem}&format={image_format}",
                        "IMAGE",
                        size_mb=size,
                        image_format=image_format,
                        version=tag,
                        description=f"{repository}:{tag} from {parsed.netloc}",
                        publisher=parsed.netloc,
                        link=f"{origin}/v2/{quoted}/tags/list",
                        apptemplate64=APPTEMPLATE64,
                        vmtemplate64=VMTEMPLATE64,
                    )
                )
            except EntryRefused as exc:
                result.refuse(key, str(exc))
    return result


def _paged(origin: str, path: str, field: str) -> list[Any]:
    """The ``field`` list of a paginated registry endpoint, all pages."""
    import json

    items: list[Any] = []
    url: str | None = origin + path
    for _page in range(MAX_PAGES):
        if url is None:
            return items
        body, headers = fetch(url, {"Accept": "application/json"})
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise CatalogError(f"Cannot parse {url}: not JSON") from None
        values = data.get(field) if isinstance(data, dict) else None
        if values is None:
            values = []  # a repository without tags lists "tags": null
        if not isinstance(values, list):
            raise CatalogError(f"Cannot parse {url}: '{field}' is not a list")
        items += values
        match = _NEXT.search(headers.get("link", ""))
        if match is None:
            url = None
        else:
            following = urllib.parse.urljoin(url, match.group(1))
            if not following.startswith(origin + "/"):
                raise CatalogError(f"{url}: the next page is on another host")
            url = following
    raise CatalogError(f"{origin}{path} lists more than {MAX_PAGES} pages")
