"""A Docker Registry HTTP API v2 client for ``docker://`` market apps, stdlib only.

What it does (and why it looks the way it does):

- ``parse_docker_url`` reads ``docker://[registry/]name[:tag|@digest][?key=value&...]``.  The
  query keys are a WHITELIST (``size``, ``filesystem``, ``format``, ``tag``, ``context``,
  ``distro``): docker_downloader.sh eval'ed every pair as a shell variable (onemarketapp.md
  §8.2, §10.1), so an unknown key here is an error, never a variable.
- A name without a registry is on Docker Hub (``registry-1.docker.io``), and a single-component
  name gets ``library/`` as the Docker CLI does.  Loopback registries (``localhost``,
  ``127.0.0.1``, ``[::1]``) are spoken to over plain HTTP, everything else over HTTPS.
- Token auth: a 401 with ``WWW-Authenticate: Bearer realm=..,service=..,scope=..`` makes us ask
  the realm for a token (anonymously unless credentials are given) and retry once.
- Manifests: Docker schema 2, OCI manifest, Docker manifest lists and OCI indexes (a platform is
  chosen, ``linux/amd64`` by default).  A manifest asked for by digest is verified (sha256 of
  the exact bytes); one larger than ``MAX_MANIFEST_BYTES`` is refused before it is parsed.  The
  ``Accept`` header is always sent: registry 2.8 down-converts to schema 1 without it.
- Blobs are streamed to disk with their sha256 (and size) checked; a bad one is deleted.
- Redirects are followed by hand (blob GETs are redirected to object storage on real
  registries): at most ``MAX_REDIRECTS``, a loop is an error, and the bearer token is dropped
  when the redirect leaves the registry's host (object storage rejects or must not see it).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from onetools.errors import OnetoolsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

DOCKER_HUB = "registry-1.docker.io"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_TOKEN_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = 60.0
DEFAULT_PLATFORM = "linux/amd64"
CHUNK = 1024 * 1024
# What a socket or a peer that does not speak HTTP properly raises (IncompleteRead, BadStatusLine
# are HTTPException but not OSError).
NETWORK_ERRORS = (OSError, http.client.HTTPException)

MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST)
INDEX_TYPES = (MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX)

# The query keys a docker:// URL may carry (onemarketapp.md §8.2); anything else is refused.
URL_KEYS = frozenset({"size", "filesystem", "format", "tag", "context", "distro"})

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class RegistryError(OnetoolsError):
    """A docker:// URL, a registry or what it sent cannot be used (one clear line)."""


@dataclass(frozen=True)
class ImageReference:
    """A parsed ``docker://`` URL: where the image is and the build options it carries."""

    registry: str  # host[:port]
    repository: str  # e.g. library/alpine
    reference: str  # a tag or a sha256: digest
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_digest(self) -> bool:
        return self.reference.startswith("sha256:")

    @property
    def plain_http(self) -> bool:
        """Loopback registries are spoken to without TLS, as Docker treats them as insecure."""
        if self.registry.startswith("["):  # [IPv6]:port
            host = self.registry[: self.registry.find("]") + 1]
        else:
            host = self.registry.split(":")[0]
        return host in LOOPBACK_HOSTS

    def __str__(self) -> str:
        separator = "@" if self.is_digest else ":"
        return f"{self.registry}/{self.repository}{separator}{self.reference}"


def parse_docker_url(url: str) -> ImageReference:
    """Parse ``docker://[registry/]name[:tag|@digest][?key=value&...]`` (§8.2, whitelisted)."""
    if not url.startswith("docker://"):
        raise RegistryError(f"not a docker:// URL: {url!r}")
    rest = url[len("docker://") :]
    image, _, query = rest.partition("?")
    options: dict[str, str] = {}
    if query:
        for pair in query.split("&"):
            if not pair:
                continue
            key, equal, value = pair.partition("=")
            key = urllib.parse.unquote(key)
            if key not in URL_KEYS:
                allowed = ", ".join(sorted(URL_KEYS))
                raise RegistryError(f"unknown docker:// URL parameter {key!r} (allowed: {allowed})")
            if not equal or not value:
                raise RegistryError(f"docker:// URL parameter {key!r} has no value")
            options[key] = urllib.parse.unquote(value)
    if not image:
        raise RegistryError(f"no image name in {url!r}")
    registry = DOCKER_HUB
    first, slash, remainder = image.partition("/")
    # Docker's rule: the first component is a registry when it looks like a host.
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry = DOCKER_HUB if first in ("docker.io", "index.docker.io") else first
        image = remainder
    reference = ""
    if "@" in image:
        image, _, reference = image.partition("@")
        if not DIGEST_RE.match(reference):
            raise RegistryError(f"bad digest {reference!r} (only sha256:<64 hex> is accepted)")
    else:
        last_slash = image.rfind("/")
        colon = image.rfind(":")
        if colon > last_slash:
            image, reference = image[:colon], image[colon + 1 :]
            if not TAG_RE.match(reference):
                raise RegistryError(f"bad tag {reference!r}")
    query_tag = options.get("tag")
    if query_tag is not None:
        if not TAG_RE.match(query_tag):
            raise RegistryError(f"bad tag {query_tag!r}")
        if reference and reference != query_tag:
            raise RegistryError(f"the URL names {reference!r} and tag={query_tag!r}: pick one")
        reference = query_tag
    if registry == DOCKER_HUB and "/" not in image:
        image = f"library/{image}"
    if not NAME_RE.match(image):
        raise RegistryError(f"bad image name {image!r}")
    return ImageReference(registry, image, reference or "latest", options)


@dataclass(frozen=True)
class Descriptor:
    """A blob named by a manifest."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class ImageManifest:
    """A single-platform image manifest and its decoded config."""

    digest: str
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def _descriptor(data: object, what: str) -> Descriptor:
    if not isinstance(data, dict):
        raise RegistryError(f"{what} is not an object")
    media_type, digest, size = data.get("mediaType", ""), data.get("digest"), data.get("size")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise RegistryError(f"{what} has an unsupported digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"{what} has a bad size {size!r}")
    return Descriptor(str(media_type), digest, size)


def _split_platform(platform: str) -> tuple[str, str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise RegistryError(f"bad platform {platform!r} (expected os/arch[/variant])")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


class RegistryClient:
    """Talks to one registry: token auth, manifests, blobs.  One instance per image pull."""

    def __init__(
        self,
        registry: str,
        *,
        plain_http: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.base = f"{'http' if plain_http else 'https'}://{registry}"
        self.timeout = timeout
        self.credentials = credentials
        self._token: str | None = None

    # -- HTTP -------------------------------------------------------------------------------
    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryError(f"cannot follow {url!r}: not an http(s) URL")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.netloc, timeout=self.timeout)
        else:
            connection = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
        return connection, path

    def _get(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """GET following redirects by hand; the caller closes the response."""
        seen: set[str] = set()
        registry_host = urllib.parse.urlsplit(self.base).netloc
        current_headers = dict(headers)
        for _hop in range(MAX_REDIRECTS + 1):
            if url in seen:
                raise RegistryError(f"redirect loop at {url}")
            seen.add(url)
            connection, path = self._connect(url)
            try:
                connection.request("GET", path, headers=current_headers)
                response = connection.getresponse()
            except NETWORK_ERRORS as error:
                connection.close()
                raise RegistryError(f"cannot reach {url}: {error}") from None
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                response.close()
                connection.close()
                if not location:
                    raise RegistryError(f"redirect without a Location from {url}")
                url = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(url).netloc != registry_host:
                    current_headers.pop("Authorization", None)
                continue
            return response
        raise RegistryError(f"more than {MAX_REDIRECTS} redirects from {self.base}")

    def _registry_get(self, path: str, accept: str = "") -> http.client.HTTPResponse:
        """GET a registry path, doing the Bearer token dance once on a 401."""
        headers = {"User-Agent": "onetools"}
        if accept:
            headers["Accept"] = accept
        for attempt in range(2):
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            response = self._get(self.base + path, headers)
            if response.status != 401 or attempt == 1:
                return response
            challenge = response.getheader("WWW-Authenticate", "")
            _read(response, 64 * 1024, f"{self.registry} challenge")
            response.close()
            self._token = self._fetch_token(challenge)
        raise AssertionError("unreachable")

    def _fetch_token(self, challenge: str) -> str:
        scheme, _, params_text = challenge.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise RegistryError(
                f"{self.registry} asks for {scheme or 'unknown'} authentication; "
                "only Bearer tokens are supported"
            )
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{self.registry} sent a token realm that is not a URL: {realm!r}")
        query = urllib.parse.urlencode(
            {k: v for k, v in params.items() if k in ("service", "scope")}
        )
        headers = {"User-Agent": "onetools"}
        if self.credentials:
            user_pass = ":".join(self.credentials).encode()
            headers["Authorization"] = "Basic " + base64.b64encode(user_pass).decode()
        response = self._get(realm + ("&" if "?" in realm else "?") + query, headers)
        try:
            body = _read(response, MAX_TOKEN_BYTES + 1, f"token server {realm}")
            status = response.status
        finally:
            response.close()
        if status != 200:
            raise RegistryError(f"token server {realm} answered {status}")
        try:
            answer = json.loads(body)
        except ValueError:
            raise RegistryError(f"token server {realm} sent something that is not JSON") from None
        token = (
            answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        )
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token server {realm} sent no token")
        return token

    def _fail(self, response: http.client.HTTPResponse, what: str) -> RegistryError:
        body = _read(response, 64 * 1024, what)
        response.close()
        detail = ""
        try:
            errors = json.loads(body).get("errors") or []
            detail = ": " + "; ".join(
                f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors
            )
        except (ValueError, AttributeError):
            pass
        if response.status == 401:
            return RegistryError(f"{what}: not authorized by {self.registry}{detail}")
        return RegistryError(f"{what}: {self.registry} answered {response.status}{detail}")

    # -- manifests ----------------------------------------------------------------------------
    def _fetch_manifest_bytes(self, repository: str, reference: str) -> tuple[bytes, str]:
        what = f"manifest {repository}:{reference}"
        accept = ", ".join(MANIFEST_TYPES + INDEX_TYPES)
        response = self._registry_get(f"/v2/{repository}/manifests/{reference}", accept)
        if response.status != 200:
            raise self._fail(response, what)
        try:
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
                raise RegistryError(f"{what} is {length} bytes, over {MAX_MANIFEST_BYTES}")
            try:
                body = response.read(MAX_MANIFEST_BYTES + 1)
            except NETWORK_ERRORS as error:
                raise RegistryError(f"{what}: read failed: {error}") from None
            if len(body) > MAX_MANIFEST_BYTES:
                raise RegistryError(f"{what} is over {MAX_MANIFEST_BYTES} bytes")
            media_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
        finally:
            response.close()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if DIGEST_RE.match(reference) and digest != reference:
            raise RegistryError(f"{what}: the registry sent a manifest whose digest is {digest}")
        return body, media_type

    def manifest(
        self, repository: str, reference: str, platform: str = DEFAULT_PLATFORM
    ) -> ImageManifest:
        """The image manifest for ``reference``, resolving an index to ``platform``."""
        want_os, want_arch, want_variant = _split_platform(platform)
        body, media_type = self._fetch_manifest_bytes(repository, reference)
        document = _load_json(body, f"manifest {repository}:{reference}")
        media_type = str(document.get("mediaType") or media_type)
        if media_type in INDEX_TYPES or (not media_type and "manifests" in document):
            entries = document.get("manifests")
            if not isinstance(entries, list):
                raise RegistryError(f"index {repository}:{reference} has no manifests list")
            chosen = None
            for entry in entries:
                entry_platform = entry.get("platform") if isinstance(entry, dict) else None
                if not isinstance(entry_platform, dict):
                    continue
                if (
                    entry_platform.get("os") == want_os
                    and entry_platform.get("architecture") == want_arch
                    and (not want_variant or entry_platform.get("variant") == want_variant)
                ):
                    chosen = _descriptor(entry, f"index {repository}:{reference} entry")
                    break
            if chosen is None:
                raise RegistryError(f"{repository}:{reference} has no image for {platform}")
            body, media_type = self._fetch_manifest_bytes(repository, chosen.digest)
            document = _load_json(body, f"manifest {repository}@{chosen.digest}")
            media_type = str(document.get("mediaType") or media_type)
        if media_type not in MANIFEST_TYPES and not (
            not media_type and document.get("schemaVersion") == 2 and "layers" in document
        ):
            raise RegistryError(
                f"{repository}:{reference} has an unsupported manifest type {media_type!r}"
            )
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise RegistryError(f"manifest {repository}:{reference} has no layers list")
        return ImageManifest(
            digest="sha256:" + hashlib.sha256(body).hexdigest(),
            media_type=media_type or MEDIA_OCI_MANIFEST,
            config=_descriptor(document.get("config"), "manifest config"),
            layers=tuple(_descriptor(layer, "manifest layer") for layer in layers),
        )

    def tags(self, repository: str) -> list[str]:
        """The repository's tags (``/v2/<name>/tags/list``)."""
        response = self._registry_get(f"/v2/{repository}/tags/list")
        if response.status != 200:
            raise self._fail(response, f"tags of {repository}")
        try:
            body = _read(response, MAX_MANIFEST_BYTES + 1, f"tags of {repository}")
        finally:
            response.close()
        tags = _load_json(body, f"tags of {repository}").get("tags")
        return [str(tag) for tag in tags] if isinstance(tags, list) else []

    # -- blobs --------------------------------------------------------------------------------
    def fetch_blob(
        self,
        repository: str,
        blob: Descriptor,
        destination: Path,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Stream a blob to ``destination``, checking its size and sha256; removed if bad."""
        what = f"blob {blob.digest[:19]}"
        response = self._registry_get(f"/v2/{repository}/blobs/{blob.digest}")
        if response.status != 200:
            raise self._fail(response, what)
        hasher = hashlib.sha256()
        received = 0
        try:
            with open(destination, "wb") as output:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except NETWORK_ERRORS as error:
                        raise RegistryError(f"{what}: read failed: {error}") from None
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > blob.size:
                        raise RegistryError(
                            f"{what} is larger than the {blob.size} bytes announced"
                        )
                    hasher.update(chunk)
                    output.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
            if received != blob.size:
                raise RegistryError(f"{what}: got {received} of {blob.size} bytes")
            actual = "sha256:" + hasher.hexdigest()
            if actual != blob.digest:
                raise RegistryError(f"{what}: content digest is {actual}, not {blob.digest}")
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
        finally:
            response.close()
        return destination

    def fetch_config(self, repository: str, blob: Descriptor) -> dict[str, object]:
        """The image config JSON (small; size-limited like a manifest)."""
        if blob.size > MAX_MANIFEST_BYTES:
            raise RegistryError(f"image config is {blob.size} bytes, over {MAX_MANIFEST_BYTES}")
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            path = self.fetch_blob(repository, blob, Path(scratch) / "config.json")
            return _load_json(path.read_bytes(), "image config")


def _read(response: http.client.HTTPResponse, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of a response; a network failure is one RegistryError line."""
    try:
        return response.read(limit)
    except NETWORK_ERRORS as error:
        raise RegistryError(f"{what}: read failed: {error}") from None


def _has_zstd() -> bool:
    import tarfile

    return "zst" in getattr(tarfile.TarFile, "OPEN_METH", {})


def _load_json(body: bytes, what: str) -> dict[str, object]:
    try:
        document = json.loads(body)
    except ValueError:
        raise RegistryError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return document


@dataclass(frozen=True)
class PulledImage:
    """An image on disk: its manifest, config and layer files (in order, lowest first)."""

    reference: ImageReference
    manifest: ImageManifest
    config: dict[str, object]
    layers: tuple[tuple[Descriptor, Path], ...]


def pull(
    reference: ImageReference,
    directory: Path,
    *,
    platform: str = DEFAULT_PLATFORM,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Callable[[int], None] | None = None,
    max_layer_bytes: int | None = None,
) -> PulledImage:
    """Download an image's config and layers into ``directory`` (verified).

    With ``max_layer_bytes`` an image whose layers add up to more is refused before any layer
    is downloaded (the sizes are the manifest's, and each blob is held to its size).
    """
    client = RegistryClient(reference.registry, plain_http=reference.plain_http, timeout=timeout)
    manifest = client.manifest(reference.repository, reference.reference, platform)
    total = sum(layer.size for layer in manifest.layers)
    if max_layer_bytes is not None and total > max_layer_bytes:
        raise RegistryError(
            f"{reference}: its layers are {total} bytes, over the {max_layer_bytes} allowed"
        )
    config = client.fetch_config(reference.repository, manifest.config)
    for layer in manifest.layers:
        # tarfile reads plain, gzip, bzip2 and xz tars; zstd layers need Python 3.14's zstd.
        if "zstd" in layer.media_type and not _has_zstd():
            raise RegistryError(f"layer {layer.digest[:19]} is zstd-compressed: not supported")
    layers = []
    for index, layer in enumerate(manifest.layers):
        path = directory / f"layer-{index:03d}"
        client.fetch_blob(reference.repository, layer, path, progress)
        layers.append((layer, path))
    return PulledImage(reference, manifest, config, tuple(layers))
