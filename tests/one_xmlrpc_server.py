"""A test XML-RPC server that speaks oned's API over the embedded store (``LocalOne``).

It lets the remote implementation (``onetools.one.xmlrpc.XmlRpcOne``, the real pyone client)
run the same tests as the embedded one, and lets pyone's own API parse our XML.  What it
reproduces of oned (reference/xmlrpc.md):

* method names and parameter lists of §2 (``one.host.allocate(session, name, im, vm, cid)``...),
  parameters read by position, optional trailing ones only when present, surplus ignored;
* response arrays (§1.3): success ``[True, value, 0]``, failure
  ``[False, message, code, object_id, <i8>-1</i8>]``;
* XML-RPC faults where xmlrpc-c raises them while reading a parameter: too few parameters
  (``Not enough parameters``), a wrong type (``Parameter that is supposed to be integer is
  not``...), both with xmlrpc-c's type-error fault code -501; an unknown method -506;
* authentication of ``user:password`` against the store's users before anything else: the
  USER body keeps the sha256 hex of the password (core driver); a failure is AUTHENTICATION
  ``[<method>] User couldn't be authenticated, aborting call.``;
* LocalOne's typed errors back to codes; ``lock`` with ``test`` on a locked object is oned's
  ACTION ``[one.<obj>.lock] <epoch>`` (§3.4);
* ``<i8>`` both ways (Python reads it; ints beyond 32 bits are written as ``<i8>``) and
  ``<nil/>`` (allow_none), as xmlrpc-c does.

Not reproduced: every call runs as the store's session (oneadmin) whoever authenticated, so
permissions and ACLs of other users are not enforced; ``one.user.info(-1)`` and
``one.group.info(-1)`` do answer for the authenticated user.

The store's SQLite connection belongs to one thread: requests are served by a thread each
(keep-alive connections must not block each other) and run one at a time in a single store
thread, where the store is opened and closed.

``serve(home)`` starts a server on a free port of 127.0.0.1 and returns it running (``.url``,
``.password`` of oneadmin, ``.stop()``); the ``one_server`` fixture gives one per test.
Run ``python one_xmlrpc_server.py HOME`` to serve a store by hand (prints URL and password).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import sys
import threading
import traceback
import xmlrpc.client
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest

from onetools.one import api
from onetools.one.api import OneApi, Permissions
from onetools.one.errors import (
    ACTION,
    AUTHENTICATION,
    INTERNAL,
    XML_RPC_API,
    LockedError,
    OneError,
)
from onetools.one.xmlrpc import XmlRpcOne

VERSION = "6.10.0"
#: xmlrpc-c's fault codes (XMLRPC_TYPE_ERROR, XMLRPC_PARSE_ERROR, XMLRPC_NO_SUCH_METHOD_ERROR).
FAULT_TYPE = -501
FAULT_PARSE = -503
FAULT_NO_SUCH_METHOD = -506
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class I8(int):
    """An int written as ``<i8>`` whatever its size (the replication index of a failure)."""


class OneMarshaller(xmlrpc.client.Marshaller):
    """The standard marshaller, with ``<i8>`` for 64-bit ints instead of an OverflowError."""

    dispatch = dict(xmlrpc.client.Marshaller.dispatch)

    def dump_int(self, value: int, write: Callable[[str], Any]) -> None:
        tag = "int" if INT32_MIN <= value <= INT32_MAX and type(value) is not I8 else "i8"
        write(f"<value><{tag}>{int(value)}</{tag}></value>\n")

    dispatch[int] = dump_int
    dispatch[I8] = dump_int


def dump_response(value: Any | xmlrpc.client.Fault) -> bytes:
    """A ``<methodResponse>`` holding ``value`` (or the fault)."""
    marshaller = OneMarshaller("utf-8", allow_none=True)
    if isinstance(value, xmlrpc.client.Fault):
        body = "<fault>\n" + marshaller.dumps(value) + "</fault>\n"
    else:
        body = marshaller.dumps((value,))
    text = "<?xml version='1.0'?>\n<methodResponse>\n" + body + "</methodResponse>\n"
    return text.encode("utf-8", "xmlcharrefreplace")


# ---- the method table ----------------------------------------------------------------------
# A signature is the types read after the session: "i" int, "s" string, "b" boolean,
# "A" array; what follows "|" is read only when sent.

TYPE_NAMES = {"i": "integer", "s": "a string", "b": "boolean", "A": "an array"}


def _matches(kind: str, value: Any) -> bool:
    if kind == "i":
        return type(value) is int and INT32_MIN <= value <= INT32_MAX
    if kind == "b":
        return type(value) is bool
    if kind == "s":
        return type(value) is str
    return type(value) is list


def check_params(signature: str, params: Sequence[Any]) -> list[Any]:
    """The parameters a signature reads (raises the fault xmlrpc-c raises)."""
    required, _, optional = signature.partition("|")
    read: list[Any] = []
    for index, kind in enumerate(required + optional):
        if index >= len(params):
            if index < len(required):
                raise xmlrpc.client.Fault(FAULT_TYPE, "Not enough parameters")
            break
        value = params[index]
        if not _matches(kind, value):
            if kind == "i" and type(value) is int:
                word = "low" if value < INT32_MIN else "high"
                raise xmlrpc.client.Fault(FAULT_TYPE, f"Integer parameter too {word}")
            raise xmlrpc.client.Fault(
                FAULT_TYPE, f"Parameter that is supposed to be {TYPE_NAMES[kind]} is not"
            )
        read.append(value)
    return read


class Call:
    """One request being served: the store, the caller's uid and the parameters read."""

    __slots__ = ("args", "method", "store", "uid")

    def __init__(self, store: OneApi, uid: int, method: str, args: list[Any]) -> None:
        self.store = store
        self.uid = uid
        self.method = method
        self.args = args

    def arg(self, index: int, default: Any = None) -> Any:
        return self.args[index] if index < len(self.args) else default


Handler = Callable[[Call], Any]
METHODS: dict[str, tuple[str, Handler]] = {}


def method(name: str, signature: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        METHODS[name] = (signature, handler)
        return handler

    return register


def pool_xml(kind: str, objects: Sequence[Any]) -> str:
    root = api.POOL_ROOT[kind]
    return f"<{root}>" + "".join(obj.xml for obj in objects) + f"</{root}>"


def _update_type(call: Call) -> bool:
    update_type = call.arg(2, 0)
    if update_type not in (0, 1):
        raise _Failure(XML_RPC_API, f"[{call.method}] Wrong update type")
    return bool(update_type)


class _Failure(Exception):
    """A failure oned builds itself (not from a store error)."""

    def __init__(self, code: int, message: str, object_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.object_id = object_id


def _register_generic(kind: str, operations: str) -> None:
    """The §1.7 shapes of ``kind`` named in ``operations`` (space separated)."""
    prefix = f"one.{kind}"
    wanted = set(operations.split())
    if "info" in wanted:
        signature = "i|bb" if kind == api.TEMPLATE else "i|b"
        decrypt_index = 2 if kind == api.TEMPLATE else 1  # template: (id, extended, decrypt)
        method(f"{prefix}.info", signature)(
            lambda c: c.store.info(kind, c.args[0], bool(c.arg(decrypt_index, False))).xml
        )
    if "update" in wanted:
        method(f"{prefix}.update", "is|i")(
            lambda c: c.store.update(kind, c.args[0], c.args[1], merge=_update_type(c))
        )
    if "delete" in wanted:
        if kind == api.IMAGE:
            method(f"{prefix}.delete", "i|b")(
                lambda c: c.store.delete(kind, c.args[0], force=bool(c.arg(1, False)))
            )
        elif kind == api.TEMPLATE:
            method(f"{prefix}.delete", "i|b")(
                lambda c: c.store.delete(kind, c.args[0], recursive=bool(c.arg(1, False)))
            )
        else:
            method(f"{prefix}.delete", "i")(lambda c: c.store.delete(kind, c.args[0]))
    if "rename" in wanted:
        method(f"{prefix}.rename", "is")(lambda c: c.store.rename(kind, c.args[0], c.args[1]))
    if "chown" in wanted:
        method(f"{prefix}.chown", "iii")(
            lambda c: c.store.chown(kind, c.args[0], c.args[1], c.args[2])
        )
    if "chmod" in wanted:
        method(f"{prefix}.chmod", "i" + "i" * 9 + ("|b" if kind == api.TEMPLATE else ""))(
            lambda c: c.store.chmod(kind, c.args[0], Permissions(c.args[1:10]))
        )
    if "lock" in wanted:
        method(f"{prefix}.lock", "ii|b")(
            lambda c: c.store.lock(kind, c.args[0], c.args[1], test=bool(c.arg(2, False)))
        )
        method(f"{prefix}.unlock", "i")(lambda c: c.store.unlock(kind, c.args[0]))
    if "enable" in wanted:
        method(f"{prefix}.enable", "ib")(lambda c: c.store.enable(kind, c.args[0], c.args[1]))
    if "pool" in wanted:
        pool_method = f"one.{kind}pool.info"
        if kind in api.UNFILTERED_POOLS:
            method(pool_method, "")(lambda c: pool_xml(kind, c.store.pool(kind)))
        elif kind == api.DOCUMENT:
            method(pool_method, "iiii")(
                lambda c: pool_xml(kind, c.store.pool(kind, *c.args[:3], doc_type=c.args[3]))
            )
        else:
            method(pool_method, "iii")(lambda c: pool_xml(kind, c.store.pool(kind, *c.args[:3])))


OWNED = "info update delete rename chown chmod pool"
_register_generic(api.CLUSTER, "info update delete rename pool")
_register_generic(api.HOST, "info update delete rename pool")
_register_generic(api.DATASTORE, OWNED + " enable")
_register_generic(api.VNET, OWNED + " lock")
_register_generic(api.IMAGE, OWNED + " lock enable")
_register_generic(api.TEMPLATE, OWNED + " lock")
_register_generic(api.VNTEMPLATE, OWNED + " lock")
_register_generic(api.DOCUMENT, OWNED + " lock")
_register_generic(api.MARKET, OWNED + " enable")
_register_generic(api.MARKETAPP, OWNED + " lock enable")
_register_generic(api.USER, "update delete pool")
_register_generic(api.GROUP, "update delete pool")

method("one.cluster.allocate", "s")(lambda c: c.store.allocate_cluster(c.args[0]))
method("one.host.allocate", "sssi")(lambda c: c.store.allocate_host(*c.args))
method("one.host.status", "ii")(lambda c: c.store.host_status(*c.args))
method("one.datastore.allocate", "si")(lambda c: c.store.allocate_datastore(*c.args))
method("one.vn.allocate", "si")(lambda c: c.store.allocate_vnet(*c.args))
method("one.vn.add_ar", "is")(lambda c: c.store.vnet_add_ar(*c.args))
method("one.vn.rm_ar", "ii|b")(lambda c: c.store.vnet_rm_ar(*c.args))
# 6.10: the third argument is no_check_capacity (xmlrpc.md §2.5).
method("one.image.allocate", "si|b")(lambda c: c.store.allocate_image(*c.args))
method("one.template.allocate", "s")(lambda c: c.store.allocate_template(c.args[0]))
method("one.vntemplate.allocate", "s")(lambda c: c.store.allocate_vntemplate(c.args[0]))
method("one.document.allocate", "si")(lambda c: c.store.allocate_document(*c.args))
method("one.market.allocate", "s")(lambda c: c.store.allocate_market(c.args[0]))
method("one.marketapp.allocate", "si")(lambda c: c.store.allocate_marketapp(*c.args))
method("one.user.allocate", "sss|A")(
    lambda c: c.store.allocate_user(c.args[0], c.args[1], c.args[2], c.arg(3, []))
)
method("one.template.clone", "is|b")(
    lambda c: c.store.clone(api.TEMPLATE, c.args[0], c.args[1], bool(c.arg(2, False)))
)
_register_generic(api.VM, "info update rename")
method("one.vm.allocate", "s|b")(lambda c: c.store.allocate_vm(c.args[0], bool(c.arg(1, False))))
# oned reads the action name first, then the VM id
method("one.vm.action", "si")(lambda c: c.store.vm_action(c.args[1], c.args[0]))
method("one.vm.disksaveas", "iis|si")(
    lambda c: c.store.vm_disksaveas(c.args[0], c.args[1], c.args[2], c.arg(3, ""), c.arg(4, -1))
)


@method("one.vmpool.info", "iiii|s")
def _vm_pool(call: Call) -> str:
    if call.args[3] != api.VM_STATE_NOT_DONE:
        raise _Failure(XML_RPC_API, f"[{call.method}] test server: only state -1 is served")
    return pool_xml(api.VM, call.store.pool(api.VM, *call.args[:3]))


@method("one.vm.recover", "ii")
def _vm_recover(call: Call) -> int:
    if call.args[1] != 3:  # 3: delete
        raise _Failure(ACTION, f"[{call.method}] test server: only operation 3 (delete)")
    return call.store.delete(api.VM, call.args[0])


method("one.user.chgrp", "ii")(lambda c: c.store.chown(api.USER, c.args[0], -1, c.args[1]))
method("one.group.allocate", "s")(lambda c: c.store.allocate_group(c.args[0]))
method("one.system.version", "")(lambda c: c.store.version())

for _member in ("host", "datastore", "vnet"):
    _kind = {"host": api.HOST, "datastore": api.DATASTORE, "vnet": api.VNET}[_member]
    method(f"one.cluster.add{_member}", "ii")(
        lambda c, k=_kind: c.store.cluster_add(c.args[0], k, c.args[1])
    )
    method(f"one.cluster.del{_member}", "ii")(
        lambda c, k=_kind: c.store.cluster_remove(c.args[0], k, c.args[1])
    )


@method("one.user.info", "i|b")
def _user_info(call: Call) -> str:
    oid = call.uid if call.args[0] == -1 else call.args[0]
    return call.store.info(api.USER, oid, bool(call.arg(1, False))).xml


@method("one.group.info", "i|b")
def _group_info(call: Call) -> str:
    oid = call.store.info(api.USER, call.uid).gid if call.args[0] == -1 else call.args[0]
    return call.store.info(api.GROUP, oid, bool(call.arg(1, False))).xml


# ---- the server ----------------------------------------------------------------------------
def password_hash(password: str) -> str:
    """What a core-driver USER body keeps as PASSWORD."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


class OneDispatcher:
    """Authenticates, reads parameters, calls the store, builds oned's response array."""

    def __init__(self, store: OneApi) -> None:
        self.store = store
        self._sessions: dict[str, int] = {}  # session string -> uid, cleared on user changes

    def dispatch(self, name: str, params: Sequence[Any]) -> Any:
        if name not in METHODS:
            raise xmlrpc.client.Fault(FAULT_NO_SUCH_METHOD, f"Method '{name}' not defined")
        signature, handler = METHODS[name]
        session = check_params("s", params)[0]
        uid = self._authenticate(session)
        if uid is None:
            message = f"[{name}] User couldn't be authenticated, aborting call."
            return [False, message, AUTHENTICATION, -1, I8(-1)]
        args = check_params(signature, params[1:])
        if name.startswith("one.user.") and not name.endswith(".info"):
            self._sessions.clear()
        try:
            value = handler(Call(self.store, uid, name, args))
        except _Failure as failure:
            return [False, failure.message, failure.code, failure.object_id, I8(-1)]
        except LockedError as exc:
            if name.endswith(".lock") and exc.lock_time is not None:
                # oned's answer to lock(test=True) on a locked object (§3.4)
                return [False, f"[{name}] {exc.lock_time}", ACTION, exc.object_id, I8(-1)]
            return [False, exc.message, exc.code, exc.object_id, I8(-1)]
        except OneError as exc:
            return [False, exc.message, exc.code, exc.object_id, I8(-1)]
        except Exception as exc:  # a bug in the store: say so loudly, as INTERNAL
            traceback.print_exc(file=sys.stderr)
            return [False, f"[{name}] test server: {exc!r}", INTERNAL, -1, I8(-1)]
        return [True, value, 0]

    def _authenticate(self, session: str) -> int | None:
        if session in self._sessions:
            return self._sessions[session]
        name, colon, password = session.partition(":")
        if not colon:
            return None
        for user in self.store.pool(api.USER):
            if user.name != name:
                continue
            enabled = user.text("ENABLED", "1") == "1"
            if enabled and user.text("PASSWORD") == password_hash(password):
                self._sessions[session] = user.id
                return user.id
            return None
        return None


class _RequestHandler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2", "/")
    protocol_version = "HTTP/1.1"  # keep-alive, as oned's xmlrpc-c (Abyss) server
    timeout = 60  # an idle kept-alive connection is dropped after this

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read their own output."""


class _HttpServer(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class OneXmlRpcServer:
    """A running test server: ``url``, ``password`` (oneadmin's), ``home``; ``stop()``."""

    def __init__(
        self,
        home: Path,
        password: str | None = None,
        store_factory: Callable[[Path], OneApi] | None = None,
    ) -> None:
        if store_factory is None:
            from onetools.one.local import LocalOne

            store_factory = LocalOne
        self.home = Path(home)
        self.password = password if password is not None else secrets.token_hex(12)
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="one-store")
        self.store: OneApi = self._run(lambda: store_factory(self.home))
        self._run(self._set_oneadmin_password)
        self.dispatcher = OneDispatcher(self.store)
        self._http = _HttpServer(
            ("127.0.0.1", 0),
            requestHandler=_RequestHandler,
            logRequests=False,
            allow_none=True,
            encoding="utf-8",
        )
        self._http._marshaled_dispatch = self._marshaled_dispatch  # type: ignore[method-assign]
        host, port = self._http.server_address[:2]
        self.url = f"http://{host}:{port}/RPC2"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._stopped = False
        self._thread.start()

    @property
    def session(self) -> str:
        return f"oneadmin:{self.password}"

    def _run(self, function: Callable[[], Any]) -> Any:
        return self._store_thread.submit(function).result()

    def in_store(self, function: Callable[[OneApi], Any]) -> Any:
        """``function(store)`` run in the store's thread (the only one that may use it)."""
        return self._run(lambda: function(self.store))

    def _set_oneadmin_password(self) -> None:
        """The store bootstraps oneadmin with a random password nobody knows: give it ours.
        OneApi has no password change, so the USER body is rewritten in user_pool (the
        OpenNebula schema), where oned keeps it."""
        body = self.store.info(api.USER, 0).xml  # (LocalOne creates its database on first use)
        database = self.home / "one.db"
        if not database.is_file():  # another store (store_factory): it knows its passwords
            return
        body = re.sub(
            r"<PASSWORD>[^<]*</PASSWORD>",
            f"<PASSWORD>{password_hash(self.password)}</PASSWORD>",
            body,
            count=1,
        )
        connection = sqlite3.connect(database, timeout=30)
        try:
            with connection:
                connection.execute("UPDATE user_pool SET body = ? WHERE oid = 0", (body,))
        finally:
            connection.close()

    def _marshaled_dispatch(
        self, data: bytes, dispatch_method: Any = None, path: Any = None
    ) -> bytes:
        try:
            params, name = xmlrpc.client.loads(data)
        except Exception as exc:  # not an XML-RPC call at all
            return dump_response(
                xmlrpc.client.Fault(FAULT_PARSE, f"Call XML not a proper XML-RPC call: {exc}")
            )
        try:
            response = self._run(lambda: self.dispatcher.dispatch(name or "", params))
        except xmlrpc.client.Fault as fault:
            return dump_response(fault)
        return dump_response(response)

    def stop(self) -> None:
        """Stop serving and close the store (again: nothing)."""
        if self._stopped:
            return
        self._stopped = True
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)
        try:
            self._run(self.store.close)
        finally:
            self._store_thread.shutdown(wait=True)

    def __enter__(self) -> OneXmlRpcServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    home: Path,
    password: str | None = None,
    store_factory: Callable[[Path], OneApi] | None = None,
) -> OneXmlRpcServer:
    """Serve the embedded store in ``home`` (created if new) on a free port of 127.0.0.1;
    ``store_factory(home)`` opens another ``OneApi`` instead of ``LocalOne``."""
    return OneXmlRpcServer(home, password, store_factory)


class ServedClient(XmlRpcOne):
    """``XmlRpcOne`` on its own test server; closing the client stops the server."""

    def __init__(self, server: OneXmlRpcServer) -> None:
        super().__init__(server.url, server.session)
        self.server = server

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.stop()


def served_client(home: Path) -> ServedClient:
    """The remote backend of the contract suite: pyone's client, a server, ``LocalOne(home)``."""
    return ServedClient(serve(home))


def place_vm(one: OneApi, vm_id: int, host_id: int, system_datastore_id: int = 0) -> None:
    """``LocalOne.place_vm`` (what scheduler and deploy do) on the store behind ``one``: the
    embedded store itself, or the one a ``ServedClient``'s server wraps."""
    if isinstance(one, ServedClient):
        one.server.in_store(
            lambda store: _as_local(store).place_vm(vm_id, host_id, system_datastore_id)
        )
    else:
        _as_local(one).place_vm(vm_id, host_id, system_datastore_id)


def _as_local(store: OneApi) -> Any:
    from onetools.one.local import LocalOne

    assert isinstance(store, LocalOne)
    return store


@pytest.fixture
def one_server(tmp_path: Path) -> Iterator[OneXmlRpcServer]:
    """A test XML-RPC server over a fresh store in ``tmp_path / "remote"``."""
    server = serve(tmp_path / "remote")
    try:
        yield server
    finally:
        server.stop()


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: one_xmlrpc_server.py HOME", file=sys.stderr)
        return 2
    server = serve(Path(argv[0]))
    print(f"ONE_XMLRPC={server.url}\nONE_AUTH line: {server.session}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
