"""Providers: a cloud's credentials and location, kept in an OpenNebula document of type 102.

The document has the original's layout (``reference/oneprovision.md`` §3, §6.3;
``reference/xmlrpc.md`` §3.2)::

    <TEMPLATE>
      <NAME>aws-frankfurt</NAME>
      <PLAIN>{"provision_type": "metal", "provider": "aws"}</PLAIN>
      <PROVISION_BODY>{"provider": "aws", "connection": {...}, "registration_time": N,
          "name": "aws-frankfurt", "description": ..., "inputs": [...]}</PROVISION_BODY>
    </TEMPLATE>

``PROVISION_BODY`` is encrypted at rest by the server (oned's ``DOCUMENT_ENCRYPTED_ATTR``; the
embedded store encrypts its ``connection`` member) and read back with ``info(decrypt=True)``.

Secrets: every connection value except the location keys (``PUBLIC_CONNECTION_KEYS``:
region, zone, metro, facility, project) is a secret.  ``Provider.to_dict``/``to_xml``/
``display_connection`` mask them as ``********`` unless asked to decrypt, and no error message
or log line of this module contains a connection value.

Library functions take an ``OneApi`` and IDs; the CLI (``onetools.cli.oneprovider``) resolves
names and prints.  Errors are ``ProviderError`` (or the object layer's ``OneError``s), with the
original's texts where it had one (§1.5).
"""

from __future__ import annotations

import json
import time

from onetools.errors import FileParseError, OnetoolsError, failures_of
from onetools.one.api import DOC_PROVIDER, DOC_PROVISION, DOCUMENT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from onetools.one.api import OneApi, Permissions
    from onetools.one.xml import OneObject

#: What masked secrets look like in every output.
MASK = "********"

#: How the embedded store seals a stored connection: ``{"$encrypted": "<token>"}``
#: (``onetools.one.secrets``); a real oned encrypts the whole body instead.
SEALED_MARKER = "$encrypted"

#: Connection keys that name a location, not a credential: shown in clear.  Everything else
#: in ``connection`` is masked (also keys no driver knows: safest).
PUBLIC_CONNECTION_KEYS = frozenset({"region", "zone", "metro", "facility", "project"})


class Driver:
    """A provider type (``provider:`` in the YAML): its required connection keys."""

    __slots__ = ("listed", "name", "needs_connection", "required", "secrets")

    def __init__(
        self,
        name: str,
        required: tuple[str, ...],
        secrets: tuple[str, ...] = (),
        needs_connection: bool = True,
        listed: bool = True,
    ) -> None:
        self.name = name
        self.required = required
        #: the keys known to be credentials (documentation; masking covers every
        #: non-public key anyway)
        self.secrets = secrets
        self.needs_connection = needs_connection
        #: named in the "available providers" message
        self.listed = listed

    def __repr__(self) -> str:
        return f"Driver({self.name})"


#: Drivers and their required connection keys, as OpenNebula 6.10 (oneprovision.md §3.2).
DRIVERS: dict[str, Driver] = {
    driver.name: driver
    for driver in (
        Driver("aws", ("access_key", "secret_key", "region"), ("access_key", "secret_key")),
        Driver("digitalocean", ("token", "region"), ("token",)),
        # 6.8+: Equinix Metal by metro (6.2-6.6 used facility).
        Driver("equinix", ("project", "token", "metro"), ("token",)),
        # credentials: a JSON key file, stored base64-encoded.
        Driver("google", ("credentials", "project", "region", "zone"), ("credentials",)),
        Driver("onprem", (), (), needs_connection=False),
        Driver("vultr_metal", ("key", "region"), ("key",)),
        Driver("vultr_virtual", ("key", "region"), ("key",)),
        # The 6.0 name of Equinix Metal.  Not advertised (6.10 lists no such driver), but the
        # provider files OpenNebula 6.0 shipped use it, so they are still accepted.
        Driver("packet", ("project", "token", "facility"), ("token",), listed=False),
    )
}

#: The provider types named in the "Invalid provider" message.
AVAILABLE_DRIVERS = ", ".join(sorted(name for name, d in DRIVERS.items() if d.listed))


class ProviderError(OnetoolsError):
    """A provider template or update the rules refuse."""


def _debug(message: str, *args: object) -> None:
    """A DEBUG line (``-D``).  Never pass a connection value."""
    from onetools import log  # logging is loaded only by commands that change something

    log.get_logger("provider").debug(message, *args)


# -- reading and writing documents --------------------------------------------------------------
def _json_object(text: str | None) -> dict[str, Any] | None:
    """``text`` parsed when it is a JSON object, else None (ciphertext, empty, garbage)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _dumps(value: Any) -> str:
    # default=str: YAML dates and the like become strings rather than failing.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def document_template(name: str | None, body: Mapping[str, Any], plain: Mapping[str, Any]) -> str:
    """The ``<TEMPLATE>`` XML of allocate (with ``name``) and update (``name=None``: oned
    moves NAME out of the template on allocate, and update type 0 replaces the whole
    template, so both other parts are always written)."""
    head = f"<NAME>{_escape(name)}</NAME>" if name is not None else ""
    return (
        f"<TEMPLATE>{head}"
        f"<PLAIN>{_cdata(_dumps(plain))}</PLAIN>"
        f"<PROVISION_BODY>{_cdata(_dumps(body))}</PROVISION_BODY></TEMPLATE>"
    )


def is_clear_connection(connection: Any) -> bool:
    """Whether ``connection`` is a readable mapping, not a sealed (encrypted) value."""
    return isinstance(connection, dict) and set(connection) != {SEALED_MARKER}


def mask_connection(connection: Any) -> Any:
    """The connection with every secret value replaced by ``MASK``; a connection that is not
    a readable mapping (ciphertext) is masked whole."""
    if connection is None:
        return None
    if not is_clear_connection(connection):
        return MASK
    return {
        key: value if key in PUBLIC_CONNECTION_KEYS else MASK for key, value in connection.items()
    }


class Provider:
    """A provider document with its parsed body and plain section.

    ``body`` is None when it could not be read in clear (a real oned returns ciphertext to
    users outside the oneadmin group).
    """

    __slots__ = ("body", "document", "plain")

    def __init__(
        self, document: OneObject, body: dict[str, Any] | None, plain: dict[str, Any]
    ) -> None:
        self.document = document
        self.body = body
        self.plain = plain

    @classmethod
    def from_document(cls, document: OneObject) -> Provider:
        body = _json_object(document.text("TEMPLATE/PROVISION_BODY"))
        plain = _json_object(document.text("TEMPLATE/PLAIN")) or {}
        return cls(document, body, plain)

    @property
    def id(self) -> int:
        return self.document.id

    @property
    def name(self) -> str:
        return self.document.name

    @property
    def driver(self) -> str:
        """The provider type (``aws``, ``onprem``…)."""
        value = (self.body or {}).get("provider") or self.plain.get("provider") or ""
        return str(value)

    @property
    def registration_time(self) -> int | None:
        value = (self.body or {}).get("registration_time")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def connection(self) -> Any:
        return (self.body or {}).get("connection")

    @property
    def connection_in_clear(self) -> bool:
        """Whether the body's connection is a readable mapping (not ciphertext)."""
        return is_clear_connection(self.connection)

    def shown_body(self, decrypt: bool = False) -> Any:
        """The body as printed: connection secrets masked unless ``decrypt``; ``MASK`` for a
        body that cannot be read."""
        if self.body is None:
            return MASK
        if decrypt:
            return self.body
        shown = dict(self.body)
        if "connection" in shown:
            shown["connection"] = mask_connection(shown["connection"])
        return shown

    def display_connection(self, decrypt: bool = False) -> list[tuple[str, str]]:
        """(key, value) pairs for ``show``'s CONNECTION INFORMATION."""
        connection = self.connection if decrypt else mask_connection(self.connection)
        if is_clear_connection(connection):
            return [(str(k), "" if v is None else str(v)) for k, v in connection.items()]
        return [] if connection is None else [("connection", MASK)]

    def to_xml(self, decrypt: bool = False) -> str:
        """The document's XML with ``PROVISION_BODY`` as printed (``-x``)."""
        import xml.etree.ElementTree as ET

        root = ET.fromstring(self.document.xml)
        element = root.find("TEMPLATE/PROVISION_BODY")
        if element is not None:
            shown = self.shown_body(decrypt)
            element.text = shown if isinstance(shown, str) else _dumps(shown)
        return ET.tostring(root, encoding="unicode")

    def to_dict(self, decrypt: bool = False) -> dict[str, Any]:
        """``{"DOCUMENT": {...}}`` with ``PROVISION_BODY`` as a JSON object (``-j``/``-y``);
        ``PLAIN`` stays a JSON string, as the original prints it."""
        data = self.document.to_dict()
        template = data["DOCUMENT"].get("TEMPLATE")
        if isinstance(template, dict) and "PROVISION_BODY" in template:
            template["PROVISION_BODY"] = self.shown_body(decrypt)
        return data

    def __repr__(self) -> str:
        return f"Provider({self.id}, {self.name!r}, {self.driver})"


def _provider_document(one: OneApi, oid: int, decrypt: bool = False) -> OneObject:
    """``info`` of ``oid``, refusing documents that are not providers."""
    document = one.info(DOCUMENT, oid, decrypt=decrypt)
    doc_type = document.int("TYPE")
    if doc_type != DOC_PROVIDER:
        from onetools.one.errors import NotFoundError

        raise NotFoundError(
            f"Error getting document [{oid}]: not a provider (document type {doc_type})", oid
        )
    return document


def show_provider(one: OneApi, oid: int) -> Provider:
    """The provider ``oid``, body decrypted (printing masks it unless told otherwise)."""
    return Provider.from_document(_provider_document(one, oid, decrypt=True))


def list_providers(one: OneApi, decrypt: bool = False) -> list[Provider]:
    """Every provider the session sees, in ID order.

    The pool's bodies are used when they parse (the embedded store encrypts only their
    ``connection`` member, so the table needs no key); otherwise (a real oned returns
    ciphertext) each document is read with ``info(decrypt=True)``.  With ``decrypt`` every
    connection is read in clear too (what ``-x``/``-j``/``-y`` print, masked or not), so the
    output is the same on both backends.
    """
    from onetools.one.errors import NotFoundError

    providers: list[Provider] = []
    for document in one.pool(DOCUMENT, doc_type=DOC_PROVIDER):
        if document.int("TYPE", DOC_PROVIDER) != DOC_PROVIDER:
            continue
        provider = Provider.from_document(document)
        if provider.body is None or (decrypt and not provider.connection_in_clear):
            try:
                provider = Provider.from_document(one.info(DOCUMENT, document.id, decrypt=True))
            except NotFoundError:  # deleted since the pool was read
                continue
        providers.append(provider)
    return providers


def provider_names(one: OneApi) -> list[OneObject]:
    """The provider documents of the pool, for name lookups (no body needed)."""
    return [
        document
        for document in one.pool(DOCUMENT, doc_type=DOC_PROVIDER)
        if document.int("TYPE", DOC_PROVIDER) == DOC_PROVIDER
    ]


# -- create -------------------------------------------------------------------------------------
def load_template(text: str, path: str | None = None) -> dict[str, Any]:
    """Parse a provider YAML.  Error messages carry the problem and its line but never the
    offending text: it may be a credential."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        # from None: the YAML error's own text quotes the line, which may hold a secret
        raise FileParseError(f"Invalid YAML: {exc.problem or 'syntax error'}", path, line) from None
    except yaml.YAMLError:
        raise FileParseError("Invalid YAML", path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FileParseError("A provider template must be a YAML mapping", path)
    return data


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _check_connection_keys(driver: Driver, connection: Any) -> None:
    if not driver.needs_connection:
        return
    if not isinstance(connection, dict):
        raise ProviderError("Connection info not found")
    for key in driver.required:
        if _missing(connection.get(key)):
            raise ProviderError(f"Missing provider connection attribute: '{key}'")


def _google_credentials(value: Any) -> str:
    """The content of a Google key for the document, base64-encoded.

    ``value`` is normally the path of the JSON key file (read now: the file need not exist
    later).  Also accepted: the key's JSON itself, or that JSON already base64-encoded (a
    body copied from another provider).  The value is never quoted in errors.
    """
    import base64
    import os

    text = str(value).strip()
    content: bytes | None = None
    if not text.startswith("{") and "\n" not in text and len(text) < 4096:
        path = os.path.expanduser(text)
        if os.path.isfile(path):
            try:
                with open(path, "rb") as handle:
                    content = handle.read()
            except OSError as exc:
                raise ProviderError(
                    f"Cannot read the Google credentials file: {exc.strerror}"
                ) from None
            if _json_object(content.decode("utf-8", errors="replace")) is None:
                raise ProviderError("The Google credentials file is not a JSON key file")
            return base64.b64encode(content).decode("ascii")
    if text.startswith("{"):
        if _json_object(text) is None:
            raise ProviderError("The Google credentials are not valid JSON")
        return base64.b64encode(text.encode("utf-8")).decode("ascii")
    try:
        decoded = base64.b64decode(text, validate=True)
    except ValueError:
        decoded = b""
    if decoded and _json_object(decoded.decode("utf-8", errors="replace")) is not None:
        return text
    raise ProviderError(
        "Google credentials file not found: connection 'credentials' must be the path of a "
        "readable JSON key file"
    )


def _identity(template: Mapping[str, Any]) -> tuple[str, Driver]:
    """The name and driver of a template, checked in the original's order (§1.5)."""
    name_value = template.get("name")
    if _missing(name_value) or isinstance(name_value, (dict, list)):
        raise ProviderError("Name not found")
    driver_name = template.get("provider")
    if driver_name != "onprem" and not isinstance(template.get("connection"), dict):
        raise ProviderError("Connection info not found")
    driver = DRIVERS.get(driver_name) if isinstance(driver_name, str) else None
    if driver is None:
        raise ProviderError(f"Invalid provider, available providers: {AVAILABLE_DRIVERS}")
    return str(name_value).strip(), driver


def build_document(
    template: Mapping[str, Any], now: int | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Validate a provider template (without the uniqueness check) and build the document's
    parts: ``(name, body, plain)``."""
    name, driver = _identity(template)
    connection = template.get("connection")
    if connection is None:
        connection = {}
    _check_connection_keys(driver, connection)
    if not isinstance(connection, dict):
        raise ProviderError("Connection info not found")
    connection = dict(connection)
    if driver.name == "google":
        connection["credentials"] = _google_credentials(connection["credentials"])
    plain_value = template.get("plain")
    if plain_value is not None and not isinstance(plain_value, dict):
        raise ProviderError("plain must be a mapping")
    plain = dict(plain_value or {})
    plain["provider"] = driver.name
    body: dict[str, Any] = {
        "provider": driver.name,
        "connection": connection,
        "registration_time": int(time.time()) if now is None else now,
        "name": name,
    }
    for key, value in template.items():
        if key not in body and key != "plain":
            body[key] = value
    return name, body, plain


def create_provider(
    one: OneApi, source: str | Mapping[str, Any], path: str | None = None, now: int | None = None
) -> int:
    """Validate a provider (YAML text or mapping) and allocate its document; its ID.

    ``path`` names the file in YAML errors.  Names are unique among the providers the
    session sees (``Provider <name> already exists``).
    """
    template = load_template(source, path) if isinstance(source, str) else dict(source)
    name, _ = _identity(template)
    if any(document.name == name for document in provider_names(one)):
        raise ProviderError(f"Provider {name} already exists")
    name, body, plain = build_document(template, now)
    _debug("Allocating provider document '%s' (driver %s)", name, body["provider"])
    return one.allocate_document(document_template(name, body, plain), DOC_PROVIDER)


# -- update -------------------------------------------------------------------------------------
def parse_body(text: str, path: str | None = None) -> dict[str, Any]:
    """A body or plain section given as JSON text (an edited file).  The error names the
    line and column, never the text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"Invalid JSON: {exc.msg} (column {exc.colno})"
        raise FileParseError(message, path, exc.lineno) from None
    if not isinstance(value, dict):
        raise FileParseError("A JSON object is expected", path)
    return value


def _restore_masked(new: Any, old: Any) -> Any:
    """Masked values written back (an edited copy of ``show -j``) keep the stored secret."""
    if new == MASK:
        return old
    if not isinstance(new, dict):
        return new
    old_map = old if isinstance(old, dict) else {}
    restored = {}
    for key, value in new.items():
        if value == MASK:
            if key not in old_map:
                raise ProviderError(
                    f"Connection attribute '{key}' is the mask {MASK}: give its value"
                )
            value = old_map[key]
        restored[key] = value
    return restored


def check_body_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The new body if the update rules allow it: same top-level keys; ``provider`` and
    ``name`` unchanged; the driver's connection keys still there.  Masked values keep the
    stored ones; a changed Google ``credentials`` is read as at create."""
    if set(new) != set(old):
        raise ProviderError("Keys can not be changed")
    for key in ("provider", "name"):
        if new.get(key) != old.get(key):
            raise ProviderError(f"`{key}` can not be changed")
    body = dict(new)
    if "connection" in body:
        body["connection"] = _restore_masked(body["connection"], old.get("connection"))
    driver = DRIVERS.get(str(body.get("provider")))
    if driver is not None:
        _check_connection_keys(driver, body.get("connection"))
    old_connection = old.get("connection")
    if driver is not None and driver.name == "google" and isinstance(old_connection, dict):
        # A new key file named in an update is read as at create.
        credentials = body["connection"]["credentials"]
        if credentials != old_connection.get("credentials"):
            body["connection"] = {
                **body["connection"],
                "credentials": _google_credentials(credentials),
            }
    return body


def update_provider(
    one: OneApi,
    oid: int,
    new: str | Mapping[str, Any],
    plain: bool = False,
    edited_from: Mapping[str, Any] | None = None,
) -> bool:
    """Replace the provider's body (or, with ``plain``, its PLAIN section) under the
    document's lock.  ``new`` is JSON text or a mapping.  Returns whether anything changed
    (nothing is written otherwise).  The PLAIN ``provider`` is always the body's.

    ``edited_from`` is the section as it was when the user started editing: if it changed
    since (someone else updated it), nothing is written, rather than losing that update.
    """
    data = parse_body(new) if isinstance(new, str) else dict(new)
    _provider_document(one, oid)  # a wrong type is refused before locking it
    with one.synchronize(DOCUMENT, oid):
        current = show_provider(one, oid)
        if current.body is None or not current.connection_in_clear:
            raise ProviderError(
                f"Provider {oid}: the body cannot be decrypted (reading provider connections "
                "needs a user of the oneadmin group)"
            )
        if edited_from is not None and edited_from != (current.plain if plain else current.body):
            raise ProviderError(
                f"Provider {oid} was updated by someone else while it was edited: nothing "
                "written (run the update again)"
            )
        if plain:
            body = current.body
            new_plain = dict(data)
            new_plain["provider"] = current.driver
        else:
            body = check_body_update(current.body, data)
            new_plain = current.plain
        if body == current.body and new_plain == current.plain:
            return False
        _debug("Updating provider document %d", oid)
        one.update(DOCUMENT, oid, document_template(None, body, new_plain))
    return True


# -- delete, ownership, permissions -------------------------------------------------------------
def _provisions_using(one: OneApi, name: str) -> list[int]:
    """IDs of the provisions (documents of type 103) whose body names provider ``name``."""
    users: list[int] = []
    for document in one.pool(DOCUMENT, doc_type=DOC_PROVISION):
        if document.int("TYPE", DOC_PROVISION) != DOC_PROVISION:
            continue
        body = _json_object(document.text("TEMPLATE/BODY")) or _json_object(
            document.text("TEMPLATE/PROVISION_BODY")
        )
        if body is None:
            full = one.info(DOCUMENT, document.id, decrypt=True)
            body = _json_object(full.text("TEMPLATE/BODY")) or _json_object(
                full.text("TEMPLATE/PROVISION_BODY")
            )
        if body is not None and body.get("provider") == name:
            users.append(document.id)
    return users


def delete_provider(one: OneApi, oid: int) -> None:
    """Delete a provider no provision uses, under its lock."""
    document = _provider_document(one, oid)
    with one.synchronize(DOCUMENT, oid):
        users = _provisions_using(one, document.name)
        if users:
            raise ProviderError(
                f"Provider can not be deleted, it is used by provision with ID: {users[0]}"
            )
        _debug("Deleting provider document %d", oid)
        one.delete(DOCUMENT, oid)


def delete_providers(one: OneApi, ids: Iterable[int]) -> dict[int, OnetoolsError]:
    """``delete_provider`` on each ID; the failures by ID (the others are deleted)."""
    return failures_of(ids, lambda oid: delete_provider(one, oid))


def chown_provider(one: OneApi, oid: int, uid: int = -1, gid: int = -1) -> None:
    """Change the owner and/or group (``-1`` keeps one) under the lock."""
    _provider_document(one, oid)
    with one.synchronize(DOCUMENT, oid):
        _debug("Changing owner/group of provider document %d to %d/%d", oid, uid, gid)
        one.chown(DOCUMENT, oid, uid, gid)


def chown_providers(
    one: OneApi, ids: Iterable[int], uid: int = -1, gid: int = -1
) -> dict[int, OnetoolsError]:
    """``chown_provider`` on each ID; the failures by ID."""
    return failures_of(ids, lambda oid: chown_provider(one, oid, uid, gid))


def chgrp_providers(one: OneApi, ids: Iterable[int], gid: int) -> dict[int, OnetoolsError]:
    """Change the group of each provider; the failures by ID."""
    return chown_providers(one, ids, -1, gid)


def chmod_provider(one: OneApi, oid: int, permissions: Permissions) -> None:
    """Set the permission bits under the lock."""
    _provider_document(one, oid)
    with one.synchronize(DOCUMENT, oid):
        _debug("Changing permissions of provider document %d to %s", oid, permissions.octet())
        one.chmod(DOCUMENT, oid, permissions)


def chmod_providers(
    one: OneApi, ids: Iterable[int], permissions: Permissions
) -> dict[int, OnetoolsError]:
    """``chmod_provider`` on each ID; the failures by ID."""
    return failures_of(ids, lambda oid: chmod_provider(one, oid, permissions))
