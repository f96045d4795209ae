"""Encryption at rest of documents' ``PROVISION_BODY`` in the embedded store.

The store acts as an oned with ``DOCUMENT_ENCRYPTED_ATTR = "PROVISION_BODY"`` (xmlrpc.md §3.3),
with one difference that keeps listings key-free: when the value is a JSON object (a provider
or provision body), only its ``connection`` member (the cloud credentials) is encrypted and
replaced by ``{"$encrypted": "<token>"}``, so names, provider types and states stay readable in
``pool()``; any other value is encrypted whole as ``"$encrypted:<token>"``.

Cipher: AES-256-GCM (``cryptography``, imported only when a value is sealed or opened); the key
is 32 random bytes in ``<home>/one.key`` (mode 0600, created on first use); a token is the
URL-safe base64 of nonce (12 bytes) + ciphertext + tag; the associated data is the document id,
so a sealed value copied into another document does not open.  Error messages name the key
file, never the secret.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from onetools.one.errors import InternalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ENCRYPTED_ATTRIBUTE = "PROVISION_BODY"
#: The member of a JSON object value that is sealed, per template attribute.  oned encrypts
#: only ``PROVISION_BODY``; the store also seals a provision's Terraform data (``BODY`` of a
#: type-103 document: ``tf``, whose state can hold what the cloud returned about its servers),
#: which oned keeps in clear.  A ``BODY`` that is not a JSON object is never encrypted.
SECRET_MEMBERS: dict[str, str] = {ENCRYPTED_ATTRIBUTE: "connection", "BODY": "tf"}
MARKER = "$encrypted"
PREFIX = MARKER + ":"
KEY_BYTES = 32
NONCE_BYTES = 12


class KeyFile:
    """The store's key, read (or created) on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: bytes | None = None

    def load(self, create: bool) -> bytes:
        """The key; with ``create`` a missing key file is made (atomically, mode 0600)."""
        if self._key is not None:
            return self._key
        try:
            key = self.path.read_bytes()
        except FileNotFoundError:
            if not create:
                raise InternalError(
                    f"Cannot decrypt {ENCRYPTED_ATTRIBUTE}: the key file {self.path} is missing"
                ) from None
            key = self._create()
        except OSError as exc:
            raise InternalError(f"Cannot read the key file {self.path}: {exc.strerror}") from None
        if len(key) != KEY_BYTES:
            raise InternalError(
                f"The key file {self.path} is damaged ({len(key)} bytes, {KEY_BYTES} expected)"
            )
        self._key = key
        return key

    def _create(self) -> bytes:
        # Written under a temporary name and hard-linked into place: two processes creating
        # the key at once end up with the same one (the loser reads the winner's).
        key = os.urandom(KEY_BYTES)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, self.path)
        except FileExistsError:
            key = self.path.read_bytes()
        finally:
            temporary.unlink(missing_ok=True)
        return key


def _aad(document_id: int) -> bytes:
    return str(document_id).encode()


def encrypt(clear: str, key: bytes, document_id: int) -> str:
    """A token for ``clear``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, clear.encode(), _aad(document_id))
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt(token: str, key: bytes, document_id: int, key_path: Path) -> str:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        raw = base64.urlsafe_b64decode(token.encode())
        clear = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(document_id))
    except (InvalidTag, ValueError):
        raise InternalError(
            f"Cannot decrypt {ENCRYPTED_ATTRIBUTE} of document {document_id} with the key "
            f"{key_path} (wrong or replaced key file, or damaged value)"
        ) from None
    return clear.decode()


def _as_object(value: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def is_sealed(value: str, attribute: str = ENCRYPTED_ATTRIBUTE) -> bool:
    """Whether ``value`` is already in the stored (encrypted) form."""
    if attribute == ENCRYPTED_ATTRIBUTE and value.startswith(PREFIX):
        return True
    parsed = _as_object(value)
    if parsed is None:
        return False
    member = parsed.get(SECRET_MEMBERS[attribute])
    return isinstance(member, dict) and set(member) == {MARKER}


def needs_key(value: str, attribute: str = ENCRYPTED_ATTRIBUTE) -> bool:
    """Whether sealing ``value`` encrypts anything (a JSON object without the secret member
    has nothing secret, and needs no key)."""
    if is_sealed(value, attribute):
        return False
    parsed = _as_object(value)
    if parsed is None:
        return attribute == ENCRYPTED_ATTRIBUTE
    return SECRET_MEMBERS[attribute] in parsed


def seal(value: str, keys: KeyFile, document_id: int, attribute: str = ENCRYPTED_ATTRIBUTE) -> str:
    """The stored form of a clear ``attribute`` value (values already sealed are kept: oned
    would encrypt them a second time)."""
    if not needs_key(value, attribute):
        return value
    parsed = _as_object(value)
    if parsed is None:
        return PREFIX + encrypt(value, keys.load(create=True), document_id)
    member = SECRET_MEMBERS[attribute]
    clear = json.dumps(parsed[member], separators=(",", ":"))
    parsed[member] = {MARKER: encrypt(clear, keys.load(create=True), document_id)}
    return json.dumps(parsed, separators=(",", ":"))


def unseal(
    value: str, keys: KeyFile, document_id: int, attribute: str = ENCRYPTED_ATTRIBUTE
) -> str:
    """The clear form of a stored ``attribute`` value (a JSON body comes back compact)."""
    if attribute == ENCRYPTED_ATTRIBUTE and value.startswith(PREFIX):
        return decrypt(value[len(PREFIX) :], keys.load(create=False), document_id, keys.path)
    if not is_sealed(value, attribute):
        return value
    parsed = _as_object(value)
    assert parsed is not None  # is_sealed parsed it
    member = SECRET_MEMBERS[attribute]
    token = str(parsed[member][MARKER])
    clear = decrypt(token, keys.load(create=False), document_id, keys.path)
    parsed[member] = json.loads(clear)
    return json.dumps(parsed, separators=(",", ":"))
