"""The remote side: ``XmlRpcOne`` (the real pyone client) and the test XML-RPC server.

What only the remote implementation has: authentication, endpoints that are dead, slow or not
OpenNebula, oned's wire format (response arrays, faults, ``<i8>``), endpoint and credential
resolution, and the proof that pyone's own API parses the XML we serve.  Behaviour shared
with the embedded store is in the contract suite (``test_one_contract.py``).
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from one_xmlrpc_server import OneXmlRpcServer, check_params, dump_response, serve
from onetools.errors import UsageError
from onetools.one import api, connect
from onetools.one.errors import (
    ACTION,
    AUTHENTICATION,
    NO_EXISTS,
    ApiError,
    AuthenticationError,
    EndpointError,
    LockedError,
    NotFoundError,
)
from onetools.one.xmlrpc import DEFAULT_TIMEOUT, XmlRpcOne, public_url, resolve_timeout

DOC_TEMPLATE = '<TEMPLATE><NAME>web</NAME><BODY><![CDATA[{"name": "web"}]]></BODY></TEMPLATE>'


@pytest.fixture
def one_server(tmp_path: Path) -> Iterator[OneXmlRpcServer]:
    with serve(tmp_path / "remote") as server:
        yield server


@pytest.fixture
def remote(one_server: OneXmlRpcServer) -> Iterator[XmlRpcOne]:
    client = XmlRpcOne(one_server.url, one_server.session)
    yield client
    client.close()


@pytest.fixture
def raw(one_server: OneXmlRpcServer) -> xmlrpc.client.ServerProxy:
    """The server through the standard library's client: what is really on the wire."""
    return xmlrpc.client.ServerProxy(one_server.url)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _FixedAnswer(http.server.BaseHTTPRequestHandler):
    status = 404
    content_type = "text/html"
    body = b"<html><body><h1>Not Found</h1></body></html>"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def fixed_server(status: int, content_type: str, body: bytes) -> http.server.HTTPServer:
    handler = type(
        "Answer", (_FixedAnswer,), {"status": status, "content_type": content_type, "body": body}
    )
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


# ---- authentication ------------------------------------------------------------------------
def test_wrong_password_is_an_authentication_error(one_server: OneXmlRpcServer) -> None:
    client = XmlRpcOne(one_server.url, "oneadmin:not-the-password")
    with pytest.raises(AuthenticationError) as info:
        client.version()
    assert str(info.value) == (
        "[one.system.version] User couldn't be authenticated, aborting call."
    )
    with pytest.raises(AuthenticationError):
        XmlRpcOne(one_server.url, "nobody:x").pool(api.HOST)
    with pytest.raises(AuthenticationError):
        XmlRpcOne(one_server.url, "no-colon-at-all").version()


def test_right_password_and_whoami(remote: XmlRpcOne) -> None:
    assert remote.version() == "6.10.0"
    me = remote.whoami()
    assert (me.uid, me.name, me.gid, me.is_admin) == (0, "oneadmin", 0, True)


def test_new_user_logs_in_with_its_password(one_server: OneXmlRpcServer, remote: XmlRpcOne) -> None:
    uid = remote.allocate_user("alice", "s3cret")
    alice = XmlRpcOne(one_server.url, "alice:s3cret")
    me = alice.whoami()
    assert (me.uid, me.name, me.gid, me.groups, me.is_admin) == (uid, "alice", 1, (1,), False)
    with pytest.raises(AuthenticationError):
        XmlRpcOne(one_server.url, "alice:oneadmin-password").whoami()
    remote.delete(api.USER, uid)
    with pytest.raises(AuthenticationError):  # no longer a user: the session is not cached
        alice.whoami()


def test_describe_names_endpoint_and_user_never_the_password(one_server: OneXmlRpcServer) -> None:
    client = XmlRpcOne(one_server.url, one_server.session)
    assert client.describe() == f"OpenNebula front-end {one_server.url} as oneadmin"
    assert one_server.password not in client.describe()
    assert client.backend_name == "xmlrpc"


# ---- endpoints that are not a working oned -------------------------------------------------
def test_dead_endpoint_fails_quickly_naming_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/RPC2"
    start = time.monotonic()
    with pytest.raises(EndpointError) as info:
        XmlRpcOne(url, "oneadmin:secret-password").pool(api.HOST)
    assert time.monotonic() - start < 5
    assert url in str(info.value)
    assert "connection refused" in str(info.value)
    assert "secret-password" not in str(info.value)


def test_unknown_host_is_an_endpoint_error() -> None:
    with pytest.raises(EndpointError, match="unknown host"):
        XmlRpcOne("http://no-such-host.invalid:2633/RPC2", "a:b", timeout=10).version()


def test_password_in_the_url_is_never_shown() -> None:
    url = f"http://admin:url-password@127.0.0.1:{closed_port()}/RPC2"
    client = XmlRpcOne(url, "oneadmin:x")
    with pytest.raises(EndpointError) as info:
        client.version()
    assert "url-password" not in str(info.value)
    assert "url-password" not in client.describe()
    assert public_url(url) == url.replace("admin:url-password@", "")


@pytest.mark.parametrize(
    ("status", "content_type", "body", "reason"),
    [
        (404, "text/html", b"<html><body>Not Found</body></html>", "HTTP 404"),
        (500, "text/plain", b"boom", "HTTP 500"),
        (200, "text/html", b"<html><body><p>Welcome to nginx!</body></html>", "not XML-RPC"),
        (200, "text/plain", b"hello", "not XML-RPC"),
    ],
)
def test_http_errors_and_non_xmlrpc_answers(
    status: int, content_type: str, body: bytes, reason: str
) -> None:
    server = fixed_server(status, content_type, body)
    url = f"http://127.0.0.1:{server.server_address[1]}/RPC2"
    try:
        with pytest.raises(EndpointError) as info:
            XmlRpcOne(url, "oneadmin:pw").version()
    finally:
        server.shutdown()
        server.server_close()
    assert url in str(info.value)
    assert reason in str(info.value)


def test_xmlrpc_answer_that_is_not_oneds_array() -> None:
    # A well-formed XML-RPC response, but a bare string instead of [ok, value, code].
    server = fixed_server(200, "text/xml", dump_response("6.10.0"))
    url = f"http://127.0.0.1:{server.server_address[1]}/RPC2"
    try:
        with pytest.raises(EndpointError, match="not an OpenNebula response array"):
            XmlRpcOne(url, "oneadmin:pw").version()
    finally:
        server.shutdown()
        server.server_close()


def test_silent_endpoint_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/RPC2"
        start = time.monotonic()
        with pytest.raises(EndpointError, match=r"no answer within 0\.5 s"):
            XmlRpcOne(url, "oneadmin:pw", timeout=0.5).version()
        assert time.monotonic() - start < 5


def test_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_timeout(None, {}) == DEFAULT_TIMEOUT
    assert resolve_timeout(None, {"ONE_XMLRPC_TIMEOUT": "7"}) == 7
    assert resolve_timeout(3, {"ONE_XMLRPC_TIMEOUT": "7"}) == 3  # the explicit value wins
    for bad in ("soon", "0", "-2"):
        with pytest.raises(UsageError, match="ONE_XMLRPC_TIMEOUT"):
            resolve_timeout(None, {"ONE_XMLRPC_TIMEOUT": bad})
    monkeypatch.setenv("ONE_XMLRPC_TIMEOUT", "12")
    assert XmlRpcOne("http://127.0.0.1:1/RPC2", "a:b").timeout == 12
    assert XmlRpcOne("http://127.0.0.1:1/RPC2", "a:b", timeout=2).timeout == 2


def test_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(EndpointError, match="http:// or https://"):
        XmlRpcOne("localhost:2633", "a:b")


# ---- the wire: response arrays, faults, <i8> ------------------------------------------------
def test_success_array_has_three_elements(
    one_server: OneXmlRpcServer, raw: xmlrpc.client.ServerProxy
) -> None:
    assert raw.one.system.version(one_server.session) == [True, "6.10.0", 0]
    ok, pool_xml, code = raw.one.hostpool.info(one_server.session)
    assert (ok, code) == (True, 0)
    assert pool_xml == "<HOST_POOL></HOST_POOL>"
    ok, new_id, code = raw.one.cluster.allocate(one_server.session, "c1")
    assert (ok, new_id, code) == (True, 100, 0)


def test_failure_array_has_five_elements_and_an_i8(one_server: OneXmlRpcServer) -> None:
    request = xmlrpc.client.dumps((one_server.session, 42), "one.host.info").encode()
    with urllib.request.urlopen(one_server.url, request, timeout=10) as answer:
        wire = answer.read().decode()
    assert "<i8>-1</i8>" in wire
    (response,), _ = xmlrpc.client.loads(wire)
    assert response == [False, "[one.host.info] Error getting host [42].", NO_EXISTS, 42, -1]


def test_wrong_password_on_the_wire(raw: xmlrpc.client.ServerProxy) -> None:
    response = raw.one.hostpool.info("oneadmin:wrong")
    assert response[:3] == [
        False,
        "[one.hostpool.info] User couldn't be authenticated, aborting call.",
        AUTHENTICATION,
    ]
    assert len(response) == 5
    # authentication comes first: bad parameters of an unauthenticated call are not looked at
    assert raw.one.host.info("oneadmin:wrong", "not an int")[2] == AUTHENTICATION


@pytest.mark.parametrize(
    ("method", "params", "fault"),
    [
        ("one.host.info", (), "Not enough parameters"),
        ("one.host.info", ("S",), "Not enough parameters"),
        ("one.host.allocate", ("S", "node1", "kvm", "kvm"), "Not enough parameters"),
        ("one.documentpool.info", ("S", -2, -1, -1), "Not enough parameters"),
        ("one.host.info", ("S", "3"), "Parameter that is supposed to be integer is not"),
        ("one.host.info", ("S", True), "Parameter that is supposed to be integer is not"),
        ("one.image.enable", ("S", 0, 1), "Parameter that is supposed to be boolean is not"),
        ("one.cluster.allocate", ("S", 7), "Parameter that is supposed to be a string is not"),
        ("one.host.info", (5, 0), "Parameter that is supposed to be a string is not"),
    ],
)
def test_too_few_parameters_or_wrong_types_are_faults(
    one_server: OneXmlRpcServer,
    raw: xmlrpc.client.ServerProxy,
    method: str,
    params: tuple[Any, ...],
    fault: str,
) -> None:
    params = tuple(one_server.session if p == "S" else p for p in params)
    with pytest.raises(xmlrpc.client.Fault) as info:
        getattr(raw, method)(*params)
    assert info.value.faultCode == -501
    assert info.value.faultString == fault


def _post(url: str, body: str) -> Any:
    with urllib.request.urlopen(url, body.encode(), timeout=10) as answer:
        return xmlrpc.client.loads(answer.read())[0][0]


def test_i8_parameters_are_read_as_xmlrpc_c_reads_them(one_server: OneXmlRpcServer) -> None:
    def host_info(value: str) -> Any:
        return _post(
            one_server.url,
            "<?xml version='1.0'?><methodCall><methodName>one.host.info</methodName><params>"
            f"<param><value><string>{one_server.session}</string></value></param>"
            f"<param><value>{value}</value></param></params></methodCall>",
        )

    assert host_info("<i8>5</i8>")[:3] == [False, "[one.host.info] Error getting host [5].", 1024]
    with pytest.raises(xmlrpc.client.Fault, match="Integer parameter too high"):
        host_info(f"<i8>{2**40}</i8>")
    with pytest.raises(xmlrpc.client.Fault, match="supposed to be integer"):
        host_info("<nil/>")


def test_a_body_that_is_not_a_call_is_a_fault(one_server: OneXmlRpcServer) -> None:
    with pytest.raises(xmlrpc.client.Fault) as info:
        _post(one_server.url, "<methodCall><params></methodCall>")
    assert info.value.faultCode == -503


def test_unknown_method_is_a_fault(
    one_server: OneXmlRpcServer, raw: xmlrpc.client.ServerProxy
) -> None:
    with pytest.raises(xmlrpc.client.Fault) as info:
        raw.one.host.enable(one_server.session, 0, True)  # 6.x has one.host.status instead
    assert info.value.faultCode == -506


def test_surplus_parameters_are_ignored(
    one_server: OneXmlRpcServer, raw: xmlrpc.client.ServerProxy
) -> None:
    assert raw.one.hostpool.info(one_server.session, -2, -1, -1)[0] is True
    assert raw.one.system.version(one_server.session, "extra") == [True, "6.10.0", 0]


def test_fault_reaches_the_client_as_api_error(remote: XmlRpcOne) -> None:
    with pytest.raises(ApiError, match=r"\[one.host.enable\].*fault -506"):
        remote.call("host.enable", 0, True)
    with pytest.raises(ApiError, match="Not enough parameters"):
        remote.call("host.allocate", "node1")


def test_user_info_minus_one_is_the_caller(
    one_server: OneXmlRpcServer, raw: xmlrpc.client.ServerProxy
) -> None:
    ok, user_xml, _ = raw.one.user.info(one_server.session, -1)
    assert ok is True
    assert user_xml.startswith("<USER><ID>0</ID>")
    assert "<NAME>oneadmin</NAME>" in user_xml


def test_lock_test_on_a_locked_object_is_oneds_action_error(
    one_server: OneXmlRpcServer, raw: xmlrpc.client.ServerProxy, remote: XmlRpcOne
) -> None:
    doc = remote.allocate_document(DOC_TEMPLATE, api.DOC_SERVICE_TEMPLATE)
    before = int(time.time())
    assert raw.one.document.lock(one_server.session, doc, 3, True) == [True, doc, 0]
    ok, message, code, object_id, _i8 = raw.one.document.lock(one_server.session, doc, 3, True)
    assert (ok, code, object_id) == (False, ACTION, doc)
    assert message.split(" ")[0] == "[one.document.lock]"
    assert before <= int(message.split(" ")[1]) <= time.time()  # the Ruby client reads word 2
    with pytest.raises(LockedError) as info:
        remote.lock(api.DOCUMENT, doc, api.LOCK_ADMIN, test=True)
    assert info.value.lock_time == int(message.split(" ")[1])


def test_blocked_operation_on_a_locked_object_is_a_locked_error(remote: XmlRpcOne) -> None:
    doc = remote.allocate_document(DOC_TEMPLATE, api.DOC_SERVICE_TEMPLATE)
    remote.lock(api.DOCUMENT, doc, api.LOCK_USE)
    with pytest.raises(LockedError, match="is locked"):
        remote.rename(api.DOCUMENT, doc, "other")
    remote.unlock(api.DOCUMENT, doc)
    assert remote.rename(api.DOCUMENT, doc, "other") == doc


def test_check_params_reads_optional_parameters_only_when_sent() -> None:
    assert check_params("i|b", [3]) == [3]
    assert check_params("i|b", [3, True, "surplus"]) == [3, True]
    with pytest.raises(xmlrpc.client.Fault, match="boolean"):
        check_params("i|b", [3, 1])


# ---- endpoint and credential resolution, backend choice ------------------------------------
def _home(tmp_path: Path, endpoint: str | None = None, auth: str | None = None) -> Path:
    home = tmp_path / "home"
    (home / ".one").mkdir(parents=True, exist_ok=True)
    if endpoint is not None:
        (home / ".one" / "one_endpoint").write_text(endpoint + "\n")
    if auth is not None:
        (home / ".one" / "one_auth").write_text(auth + "\n")
    return home


def test_endpoint_resolution_order(tmp_path: Path) -> None:
    home = _home(tmp_path, endpoint="http://from-file:2633/RPC2")
    env = {"HOME": str(home), "ONE_XMLRPC": " http://from-env:2633/RPC2 "}
    assert connect.resolve_endpoint("http://option/RPC2", env) == "http://option/RPC2"
    assert connect.resolve_endpoint(None, env) == "http://from-env:2633/RPC2"
    assert connect.resolve_endpoint(None, {"HOME": str(home)}) == "http://from-file:2633/RPC2"
    assert connect.resolve_endpoint(None, {"HOME": str(_home(tmp_path / "empty"))}) is None


def test_credential_resolution_order(tmp_path: Path) -> None:
    home = _home(tmp_path, auth="homeuser:homepass")
    auth_file = tmp_path / "auth"
    auth_file.write_text("envuser:envpass\n\n")
    env = {"HOME": str(home), "ONE_AUTH": str(auth_file)}
    assert connect.resolve_secret("u", "p", env) == "u:p"
    assert connect.resolve_secret(None, None, env) == "envuser:envpass"
    assert connect.resolve_secret(None, None, {"HOME": str(home)}) == "homeuser:homepass"
    # ONE_AUTH naming a missing file falls through to ~/.one/one_auth
    missing = {"HOME": str(home), "ONE_AUTH": str(tmp_path / "missing")}
    assert connect.resolve_secret(None, None, missing) == "homeuser:homepass"
    with pytest.raises(UsageError, match="ONE_AUTH file not present"):
        connect.resolve_secret(None, None, {"HOME": str(_home(tmp_path / "empty"))})


def test_connect_picks_the_front_end_when_an_endpoint_is_known(
    one_server: OneXmlRpcServer, tmp_path: Path
) -> None:
    home = _home(tmp_path, endpoint=one_server.url, auth=one_server.session)
    one = connect.connect(env={"HOME": str(home)})
    try:
        assert isinstance(one, XmlRpcOne)
        assert one.endpoint == one_server.url
        assert one.whoami().name == "oneadmin"
    finally:
        one.close()


def test_connect_picks_the_embedded_store_without_endpoint(tmp_path: Path) -> None:
    from onetools.one.local import LocalOne

    home = _home(tmp_path)
    store_home = tmp_path / "store"
    one = connect.connect(env={"HOME": str(home), "ONETOOLS_HOME": str(store_home)})
    try:
        assert isinstance(one, LocalOne)
        assert one.backend_name == "embedded"
    finally:
        one.close()


# ---- same shapes on both backends; pyone parses our XML ------------------------------------
def _populate(one: api.OneApi) -> dict[str, int]:
    cluster = one.allocate_cluster("c1")
    ids = {
        api.CLUSTER: cluster,
        api.HOST: one.allocate_host("node1", "kvm", "kvm", cluster),
        api.DATASTORE: one.allocate_datastore("NAME = ds1\nDS_MAD = fs\nTM_MAD = ssh", -1),
        api.VNET: one.allocate_vnet(
            'NAME = net1\nVN_MAD = bridge\nAR = [ TYPE = "IP4", IP = "10.0.0.1", SIZE = 4 ]', -1
        ),
        api.IMAGE: one.allocate_image("NAME = img1\nPATH = /tmp/a.qcow2", 1),
        api.TEMPLATE: one.allocate_template("NAME = t1\nCPU = 1\nMEMORY = 128"),
        api.VNTEMPLATE: one.allocate_vntemplate("NAME = vt1\nVN_MAD = bridge"),
        api.DOCUMENT: one.allocate_document(DOC_TEMPLATE, api.DOC_SERVICE_TEMPLATE),
        api.MARKET: one.allocate_market(
            "NAME = m1\nMARKET_MAD = http\nBASE_URL = http://f/\nPUBLIC_DIR = /var/www"
        ),
    }
    ids[api.MARKETAPP] = one.allocate_marketapp(
        "NAME = app1\nORIGIN_ID = -1\nTYPE = VMTEMPLATE\nAPPTEMPLATE64 = Q1BVPTE=", ids[api.MARKET]
    )
    one.lock(api.DOCUMENT, ids[api.DOCUMENT], api.LOCK_ADMIN)
    return ids


def test_to_dict_is_the_same_on_both_backends(
    one_server: OneXmlRpcServer, remote: XmlRpcOne
) -> None:
    ids = _populate(remote)
    for kind, oid in ids.items():
        embedded = one_server.in_store(lambda store, k=kind, i=oid: store.info(k, i))
        assert remote.info(kind, oid).to_dict() == embedded.to_dict(), kind
        assert remote.info(kind, oid).xml == embedded.xml, kind
    for kind in (api.HOST, api.DATASTORE, api.IMAGE, api.MARKETAPP):
        remote_pool = [obj.to_dict() for obj in remote.pool(kind)]
        embedded_pool = one_server.in_store(lambda store, k=kind: store.pool(k))
        assert remote_pool == [obj.to_dict() for obj in embedded_pool], kind
    documents = remote.pool(api.DOCUMENT, doc_type=api.DOC_SERVICE_TEMPLATE)
    assert [doc.id for doc in documents] == [ids[api.DOCUMENT]]
    assert remote.pool(api.DOCUMENT, doc_type=api.DOC_PROVIDER) == []


def test_pyone_parses_the_servers_xml(one_server: OneXmlRpcServer, remote: XmlRpcOne) -> None:
    import pyone

    ids = _populate(remote)
    one = pyone.OneServer(one_server.url, one_server.session)
    hosts = one.hostpool.info()
    assert [(h.ID, h.NAME, h.CLUSTER_ID) for h in hosts.HOST] == [
        (ids[api.HOST], "node1", ids[api.CLUSTER])
    ]
    assert hosts.HOST[0].TEMPLATE["IM_MAD"] == "kvm"
    assert [c.NAME for c in one.clusterpool.info().CLUSTER] == ["default", "c1"]
    assert [d.NAME for d in one.datastorepool.info().DATASTORE] == [
        "system",
        "default",
        "files",
        "ds1",
    ]
    assert one.vn.info(ids[api.VNET]).NAME == "net1"
    assert [i.NAME for i in one.imagepool.info(-2, -1, -1).IMAGE] == ["img1"]
    assert one.template.info(ids[api.TEMPLATE]).TEMPLATE["MEMORY"] == "128"
    assert one.vntemplate.info(ids[api.VNTEMPLATE]).NAME == "vt1"
    document = one.documentpool.info(-2, -1, -1, api.DOC_SERVICE_TEMPLATE).DOCUMENT[0]
    assert (document.NAME, int(document.TYPE), document.LOCK.LOCKED) == ("web", 101, 3)
    assert [m.NAME for m in one.marketpool.info().MARKETPLACE][-1] == "m1"
    app = one.marketapp.info(ids[api.MARKETAPP])
    assert app.NAME == "app1"
    assert ids[api.MARKET] == app.MARKETPLACE_ID
    assert app.TYPE == 2
    assert one.user.info(-1).NAME == "oneadmin"
    with pytest.raises(pyone.OneNoExistsException):
        one.host.info(999)


class _RecordingStore:
    """LocalOne that remembers the capacity flag image allocations arrive with, and claims
    to be ``version``: the flag's meaning flipped in 6.10 (xmlrpc.md §2.5)."""

    def __new__(cls, home: Path, version: str) -> Any:
        from onetools.one.local import LocalOne

        class Recording(LocalOne):
            flags: list[bool] = []

            def version(self) -> str:
                return version

            def allocate_image(
                self, template: str, datastore_id: int, no_check_capacity: bool = False
            ) -> int:
                self.flags.append(no_check_capacity)
                return super().allocate_image(template, datastore_id, no_check_capacity)

        return Recording(home)


@pytest.mark.parametrize(("version", "sent"), [("6.10.0", True), ("6.8.2", False)])
def test_image_capacity_flag_follows_the_server_version(
    tmp_path: Path, version: str, sent: bool
) -> None:
    with serve(tmp_path / "h", store_factory=lambda home: _RecordingStore(home, version)) as server:
        client = XmlRpcOne(server.url, server.session)
        client.allocate_image("NAME = a\nPATH = /tmp/a.qcow2", 1)
        client.allocate_image("NAME = b\nPATH = /tmp/b.qcow2", 1, no_check_capacity=True)
        # omitted (= check) when the caller wants the check; "skip it" as that version reads it
        assert server.in_store(lambda store: store.flags) == [False, sent]


def test_not_found_through_the_client(remote: XmlRpcOne) -> None:
    with pytest.raises(NotFoundError) as info:
        remote.info(api.HOST, 77)
    assert info.value.object_id == 77
    assert str(info.value) == "[one.host.info] Error getting host [77]."


def test_importing_the_module_imports_neither_pyone_nor_requests() -> None:
    import subprocess
    import sys

    code = (
        "import sys, onetools.one.xmlrpc, onetools.one.connect; "
        "print(sorted(m for m in ('pyone', 'requests') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
