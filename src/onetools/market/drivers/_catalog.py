"""What every catalog monitor shares: the app record, bounded HTTP fetches, and the checks that
keep catalog content from reaching the store unvetted.

A catalog is data from someone else's server: it is parsed, never executed, and every value
that becomes part of an app template is checked here first.  A hostile *entry* (a name oned
would refuse, control characters, a value that would add attributes to the template) is
dropped with one warning; a hostile *response* (too big, a redirect loop, not JSON, a dead
server) is a ``CatalogError``, and the caller keeps the apps it had.
"""

from __future__ import annotations

import base64
import re

from onetools.errors import OnetoolsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

#: The largest catalog response read (the real public marketplace listing is ~250 KB, the
#: linuxcontainers images.json a few MB).  Bigger is refused, not truncated.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Redirects followed per request (the reference server redirects once).
MAX_REDIRECTS = 5
#: Seconds for connect and for each read.
TIMEOUT = 30.0
#: Pages followed for paginated APIs (Docker Hub, registry catalogs).
MAX_PAGES = 50
#: Apps accepted from one catalog.
MAX_APPS = 10_000

#: Characters oned refuses in names (``PoolObjectSQL::name_is_valid``, xmlrpc.md §1.5).
FORBIDDEN_NAME_CHARS = frozenset("&|:\\\";/'#{}$<>")
MAX_NAME_LENGTH = 128
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")
#: Template attribute names accepted from a catalog's VM template.
_ATTRIBUTE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")

APP_TYPES = ("IMAGE", "VMTEMPLATE", "SERVICE_TEMPLATE")


class CatalogError(OnetoolsError):
    """The catalog could not be fetched or parsed; nothing was changed."""


class EntryRefused(ValueError):
    """One catalog entry is unusable; it is skipped with a warning."""


class AppRecord:
    """One app as a monitor reports it (the monitor contract's ``APP`` template, reference
    §7): ``origin`` is the catalog's stable key for it (an appliance id, a product key, a
    repository name) used to match it across refreshes."""

    __slots__ = (
        "apptemplate64",
        "architecture",
        "description",
        "disks",
        "format",
        "hypervisor",
        "link",
        "md5",
        "name",
        "origin",
        "publisher",
        "regtime",
        "roles",
        "sha256",
        "size_mb",
        "source",
        "tags",
        "type",
        "version",
        "vmtemplate64",
    )

    def __init__(
        self,
        name: str,
        origin: str,
        source: str = "",
        app_type: str = "IMAGE",
        *,
        md5: str = "",
        sha256: str = "",
        size_mb: int = 0,
        image_format: str = "",
        version: str = "",
        description: str = "",
        publisher: str = "",
        regtime: int = 0,
        tags: str = "",
        link: str = "",
        apptemplate64: str = "",
        vmtemplate64: str = "",
        disks: list[tuple[str, str]] | None = None,
        roles: list[tuple[str, str]] | None = None,
        architecture: str = "",
        hypervisor: str = "",
    ) -> None:
        self.name = name
        self.origin = origin
        self.source = source
        self.type = app_type
        self.md5 = md5
        self.sha256 = sha256
        self.size_mb = size_mb
        self.format = image_format
        self.version = version
        self.description = description
        self.publisher = publisher
        self.regtime = regtime
        self.tags = tags
        self.link = link
        self.apptemplate64 = apptemplate64
        self.vmtemplate64 = vmtemplate64
        self.disks = disks or []
        self.roles = roles or []
        self.architecture = architecture
        self.hypervisor = hypervisor

    def attributes(self) -> dict[str, Any]:
        """The app template as a mapping (empty values left out, as the drivers do)."""
        values: dict[str, Any] = {
            "TYPE": self.type,
            "SOURCE": self.source,
            "MD5": self.md5,
            "SHA256": self.sha256,
            "SIZE": str(self.size_mb),
            "FORMAT": self.format,
            "VERSION": self.version,
            "DESCRIPTION": self.description,
            "PUBLISHER": self.publisher,
            "REGTIME": str(self.regtime) if self.regtime else "",
            "TAGS": self.tags,
            "LINK": self.link,
            "APPTEMPLATE64": self.apptemplate64,
            "VMTEMPLATE64": self.vmtemplate64,
            "ARCHITECTURE": self.architecture,
            "HYPERVISOR": self.hypervisor,
        }
        result: dict[str, Any] = {key: value for key, value in values.items() if value}
        if self.disks:
            result["DISK"] = [{"NAME": n, "APP": a} for n, a in self.disks]
        if self.roles:
            result["ROLE"] = [{"NAME": n, "APP": a} for n, a in self.roles]
        return result

    def fingerprint(self) -> str:
        """What decides whether a stored app needs an update (oned: VERSION, MD5 or SOURCE;
        here every field, so a changed description or template is picked up too)."""
        import json

        return json.dumps({"NAME": self.name, **self.attributes()}, sort_keys=True)

    def __repr__(self) -> str:
        return f"AppRecord({self.name!r}, {self.origin!r})"


# -- checks -------------------------------------------------------------------------------------
def check_name(name: object) -> str:
    """``name`` as oned accepts it, else ``EntryRefused`` saying why."""
    if not isinstance(name, str) or not name.strip():
        raise EntryRefused("no name")
    text = name.strip()
    if _CONTROL_OR_NEWLINE.search(text):
        raise EntryRefused(f"name {text!r} has control characters")
    bad = sorted({c for c in text if c in FORBIDDEN_NAME_CHARS})
    if bad:
        raise EntryRefused(f"name {text!r} has characters oned refuses: {' '.join(bad)}")
    if len(text) > MAX_NAME_LENGTH:
        raise EntryRefused(f"name {text[:40]!r}... is longer than {MAX_NAME_LENGTH} characters")
    return text


def safe_name(text: str) -> str:
    """A name built by a driver from structured identifiers (``library/alpine``,
    ``debian:12``): separators oned refuses become ``_``; control characters are still
    refused (they are never part of a legitimate identifier)."""
    if _CONTROL_OR_NEWLINE.search(text):
        raise EntryRefused(f"name {text!r} has control characters")
    return check_name("".join("_" if c in FORBIDDEN_NAME_CHARS else c for c in text))


def check_text(value: object, field: str, multiline: bool = False, limit: int = 65536) -> str:
    """A catalog text value: a string (numbers are accepted and turned into text), without
    control characters (newlines only where ``multiline``), at most ``limit`` characters."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise EntryRefused(f"{field} is not text")
    text = str(value)
    if multiline:  # Windows line ends are line ends (a real appliance description has them)
        text = text.replace("\r\n", "\n")
    pattern = _CONTROL if multiline else _CONTROL_OR_NEWLINE
    if pattern.search(text):
        raise EntryRefused(f"{field} has control characters")
    if len(text) > limit:
        raise EntryRefused(f"{field} is longer than {limit} characters")
    return text


def check_url(value: object, field: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """A URL with one of ``schemes`` and no whitespace or quotes."""
    text = check_text(value, field, limit=4096)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in schemes:
        raise EntryRefused(f"{field} {text[:60]!r} is not a {'/'.join(schemes)} URL")
    if any(c.isspace() or c in "\"'<>\\" for c in text):
        raise EntryRefused(f"{field} {text[:60]!r} has characters not allowed in a URL")
    return text


def check_checksum(value: object, field: str, length: int) -> str:
    """A hex digest of ``length`` characters, lower-cased; empty when absent."""
    if value in (None, ""):
        return ""
    text = check_text(value, field).lower()
    if len(text) != length or any(c not in "0123456789abcdef" for c in text):
        raise EntryRefused(f"{field} is not a {length}-digit hex digest")
    return text


def check_integer(value: object, field: str) -> int:
    """A non-negative integer (numbers given as text are accepted)."""
    if value in (None, ""):
        return 0
    if isinstance(value, bool):
        raise EntryRefused(f"{field} is not a number")
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        raise EntryRefused(f"{field} is not a number") from None
    if number < 0:
        raise EntryRefused(f"{field} is negative")
    return number


def b64(text: str) -> str:
    """Base64 of UTF-8 text (APPTEMPLATE64, VMTEMPLATE64)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def template_text(attributes: Mapping[str, Any]) -> str:
    """Template text for a mapping whose keys were checked: string values are quoted, a
    mapping is a vector, a list of mappings repeats the vector.  Values of any JSON type
    become text (the 6.0.0 driver dropped the whole template on a number, §10.1 item 8)."""
    from onetools.one.template import render

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "YES" if value else "NO"
        return check_text(value, "template value", multiline=True)

    rendered: dict[str, Any] = {}
    for key, value in attributes.items():
        name = str(key).upper()
        if not _ATTRIBUTE.match(name):
            raise EntryRefused(f"template attribute {str(key)[:40]!r} is not a valid name")
        if isinstance(value, dict):
            rendered[name] = _vector(value)
        elif isinstance(value, list):
            if all(isinstance(item, dict) for item in value):
                rendered[name] = [_vector(item) for item in value]
            else:
                raise EntryRefused(f"template attribute {name} is a list of non-vectors")
        elif value is None or value == "":
            continue
        else:
            rendered[name] = scalar(value)
    return render(rendered)


def _vector(values: Mapping[str, Any]) -> dict[str, str]:
    vector: dict[str, str] = {}
    for key, value in values.items():
        name = str(key).upper()
        if not _ATTRIBUTE.match(name):
            raise EntryRefused(f"template attribute {str(key)[:40]!r} is not a valid name")
        if isinstance(value, (dict, list)):
            raise EntryRefused(f"template attribute {name} nests too deep")
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            vector[name] = "YES" if value else "NO"
        else:
            vector[name] = check_text(value, "template value", multiline=True)
    return vector


def verify_template(record: AppRecord) -> None:
    """Refuse ``record`` unless its template text parses back to exactly its own attributes:
    whatever quoting trick a value plays, it cannot add or change an attribute."""
    from onetools.one.template import parse, render

    attributes = record.attributes()
    try:
        parsed = parse(render(attributes))
    except Exception as exc:  # the parser's own error type: any failure refuses the entry
        raise EntryRefused(f"its template does not parse: {exc}") from None
    names = [key for key, _ in parsed.attributes]
    expected = []
    for key, value in attributes.items():
        expected += [key] * (len(value) if isinstance(value, list) else 1)
    if names != expected:
        raise EntryRefused("its values would add attributes to the app template")
    for key, value in attributes.items():
        if not isinstance(value, list) and parsed.get(key) != value:
            raise EntryRefused(f"its {key} does not survive quoting")


# -- fetching -----------------------------------------------------------------------------------
def fetch(
    url: str,
    headers: Mapping[str, str] | None = None,
    limit: int = MAX_RESPONSE_BYTES,
    timeout: float = TIMEOUT,
) -> tuple[bytes, Mapping[str, str]]:
    """GET ``url``: the body (at most ``limit`` bytes, else ``CatalogError``) and the response
    headers.  Only http(s); at most ``MAX_REDIRECTS`` redirects, each to http(s); any
    network or HTTP failure is one ``CatalogError`` naming the URL."""
    import http.client
    import urllib.error
    import urllib.request

    if not url.lower().startswith(("http://", "https://")):
        raise CatalogError(f"Cannot fetch {url}: only http and https URLs are monitored")

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = MAX_REDIRECTS
        max_repeats = 2

        def redirect_request(self, req, fp, code, msg, hdrs, newurl):  # type: ignore[no-untyped-def]
            if not newurl.lower().startswith(("http://", "https://")):
                raise CatalogError(f"Cannot fetch {url}: redirected to a non-HTTP URL")
            return super().redirect_request(req, fp, code, msg, hdrs, newurl)

    # No proxy handler from the environment is skipped on purpose: http_proxy is honoured as
    # the original drivers do (§7.1); loopback test servers are reached directly.
    opener = urllib.request.build_opener(Redirects())
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with opener.open(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise CatalogError(
                    f"Cannot fetch {url}: the response is {int(declared)} bytes, "
                    f"more than the {limit} allowed"
                )
            body = response.read(limit + 1)
            if len(body) > limit:
                raise CatalogError(
                    f"Cannot fetch {url}: the response is more than the {limit} bytes allowed"
                )
            return body, {k.lower(): v for k, v in response.headers.items()}
    except CatalogError:
        raise
    except urllib.error.HTTPError as exc:
        if exc.code in (301, 302, 303, 307, 308):
            raise CatalogError(
                f"Cannot fetch {url}: too many redirects (more than {MAX_REDIRECTS})"
            ) from None
        raise CatalogError(f"Cannot fetch {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise CatalogError(f"Cannot fetch {url}: {exc.reason}") from None
    except TimeoutError:
        raise CatalogError(f"Cannot fetch {url}: no answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise CatalogError(f"Cannot fetch {url}: {exc}") from None


def fetch_json(url: str, headers: Mapping[str, str] | None = None) -> Any:
    """``fetch`` and parse as JSON (``CatalogError`` when it is not JSON)."""
    import json

    body, _headers = fetch(url, headers)
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CatalogError(f"Cannot parse {url}: not JSON ({exc})") from None


def join_url(base: str, path: str) -> str:
    """``base`` and ``path`` with exactly one ``/`` between them (no ``//appliance``)."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def market_option(market: Mapping[str, str], key: str, default: str) -> str:
    """A market template attribute, or ``default`` when absent or empty."""
    value = market.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else default


def market_int(market: Mapping[str, str], key: str, default: int) -> int:
    """A positive integer market attribute (``IMAGE_SIZE_MB``); a bad one is a ``CatalogError``
    (it is the market's configuration, not catalog content)."""
    text = market_option(market, key, str(default))
    if not text.isdigit() or int(text) <= 0:
        raise CatalogError(f"Market attribute {key}={text!r} is not a positive integer")
    return int(text)


class MonitorResult:
    """The apps a monitor found and one warning per entry it refused."""

    __slots__ = ("apps", "warnings")

    def __init__(self) -> None:
        self.apps: list[AppRecord] = []
        self.warnings: list[str] = []

    def add(self, record: AppRecord) -> None:
        """Keep ``record`` if its template is sound, else warn; duplicate origins and names
        keep the first (a catalog that repeats itself must not make two apps)."""
        try:
            verify_template(record)
        except EntryRefused as exc:
            self.refuse(record.origin, str(exc))
            return
        if any(app.origin == record.origin for app in self.apps):
            self.refuse(record.origin, "it repeats an entry already listed")
            return
        if any(app.name == record.name for app in self.apps):
            self.refuse(record.origin, f"its name {record.name!r} is already used in the catalog")
            return
        if len(self.apps) >= MAX_APPS:
            raise CatalogError(f"The catalog lists more than {MAX_APPS} apps")
        self.apps.append(record)

    def refuse(self, entry: str, reason: str) -> None:
        self.warnings.append(f"Catalog entry {entry[:80]!r} skipped: {reason}")
