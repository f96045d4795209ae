"""Typed errors of the object layer, one per OpenNebula error code (xmlrpc.md §1.4).

Both implementations raise these, with oned's message text, so commands and tests never look
at codes.  Each is a ``OnetoolsError`` (one ``ERROR : …`` line, exit 255 at the CLI).
"""

from __future__ import annotations

from onetools.errors import OnetoolsError

# OpenNebula's Request::ErrorCode values.
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
XML_RPC_API = 0x1000
INTERNAL = 0x2000
ALLOCATE = 0x4000
LOCKED = 0x8000


class OneError(OnetoolsError):
    """An error from OpenNebula (or the embedded store acting as oned)."""

    code = INTERNAL

    def __init__(self, message: str, object_id: int = -1) -> None:
        super().__init__(message)
        self.object_id = object_id


class AuthenticationError(OneError):
    code = AUTHENTICATION


class AuthorizationError(OneError):
    code = AUTHORIZATION


class NotFoundError(OneError):
    code = NO_EXISTS


class ActionError(OneError):
    code = ACTION


class ApiError(OneError):
    """A parameter oned rejects (``Incorrect filter_flag``, ``Wrong update type``)."""

    code = XML_RPC_API


class InternalError(OneError):
    code = INTERNAL


class AllocateError(OneError):
    code = ALLOCATE


class LockedError(OneError):
    """The object is locked.  oned reports it as AUTHORIZATION (a blocked operation) or ACTION
    (``lock`` with ``test``); both map here.  ``lock_time`` is the lock's epoch when known."""

    code = AUTHORIZATION

    def __init__(self, message: str, object_id: int = -1, lock_time: int | None = None) -> None:
        super().__init__(message, object_id)
        self.lock_time = lock_time


class EndpointError(OneError):
    """The front-end cannot be reached or answered something that is not XML-RPC."""

    code = 0xF002  # the Ruby client's EXML_RPC_CALL


class OneTimeout(OneError):
    """Waiting for an object's state took longer than allowed."""


BY_CODE: dict[int, type[OneError]] = {
    AUTHENTICATION: AuthenticationError,
    AUTHORIZATION: AuthorizationError,
    NO_EXISTS: NotFoundError,
    ACTION: ActionError,
    XML_RPC_API: ApiError,
    INTERNAL: InternalError,
    ALLOCATE: AllocateError,
    LOCKED: LockedError,
}


def from_code(code: int, message: str, object_id: int = -1) -> OneError:
    """The typed error for an OpenNebula error code (unknown codes are ``InternalError``)."""
    return BY_CODE.get(code, InternalError)(message, object_id)
