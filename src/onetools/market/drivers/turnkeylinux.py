"""``turnkeylinux``: TurnKey Linux container templates (6.0.0-6.8, reference §7.6).

``ENDPOINT`` (default ``https://mirror.turnkeylinux.org/turnkeylinux/images/proxmox/``, https
where 6.0.0 used plain HTTP) is an autoindex page.  The file links are read with the stdlib
HTML parser (no scraping of the ``<pre>`` text layout): each
``debian-<N>-turnkey-<app>_<version>-<rev>_amd64.tar.gz`` becomes one app, the newest
version of each ``<app>`` on the newest Debian; ``.hash`` files and Debian < 9 are skipped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from onetools.market.drivers._catalog import (
    AppRecord,
    CatalogError,
    EntryRefused,
    MonitorResult,
    b64,
    fetch,
    join_url,
    market_int,
    market_option,
    safe_name,
)
from onetools.market.drivers._container import VMTEMPLATE64

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_ENDPOINT = "https://mirror.turnkeylinux.org/turnkeylinux/images/proxmox/"
_FILE = re.compile(
    r"^debian-(?P<debian>\d+)-turnkey-(?P<app>[a-z0-9][a-z0-9-]*)_(?P<version>[0-9][0-9.]*)"
    r"-(?P<revision>\d+)_amd64\.tar\.gz$"
)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value:
                    self.links.append(value)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def monitor(market: Mapping[str, str]) -> MonitorResult:
    """The newest template of each TurnKey app listed at ``ENDPOINT``."""
    endpoint = market_option(market, "ENDPOINT", DEFAULT_ENDPOINT)
    size = market_int(market, "IMAGE_SIZE_MB", 5120)
    filesystem = market_option(market, "FILESYSTEM", "ext4")
    image_format = market_option(market, "FORMAT", "raw")
    body, _headers = fetch(endpoint)
    parser = _Links()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
    except Exception as exc:  # html.parser raises assorted errors on broken markup
        raise CatalogError(f"Cannot parse {endpoint}: {exc}") from None
    newest: dict[str, tuple[tuple[int, ...], str, re.Match[str]]] = {}
    result = MonitorResult()
    for link in parser.links:
        name = link.rsplit("/", 1)[-1]
        if name.endswith(".hash") or not name.endswith(".tar.gz"):
            continue
        match = _FILE.match(name)
        if match is None:
            result.refuse(name[:80], "not a turnkey template file name")
            continue
        if int(match["debian"]) < 9:
            continue
        key = (int(match["debian"]), *_version_key(match["version"]), int(match["revision"]))
        if match["app"] not in newest or key > newest[match["app"]][0]:
            newest[match["app"]] = (key, name, match)
    for app, (_key, name, match) in sorted(newest.items()):
        url = join_url(endpoint, name)
        try:
            result.add(
                AppRecord(
                    safe_name(f"{app} - LXD"),
                    app,
                    f"lxd://{url}?size={size}&filesystem={filesystem}&format={image_format}",
                    "IMAGE",
                    size_mb=size,
                    image_format=image_format,
                    version=f"{match['version']}-{match['revision']}",
                    description=f"Based on debian-{match['debian']}",
                    publisher="turnkeylinux.org",
                    link=endpoint,
                    apptemplate64=b64('DRIVER="raw"\n'),
                    vmtemplate64=VMTEMPLATE64,
                )
            )
        except EntryRefused as exc:
            result.refuse(app, str(exc))
    return result
