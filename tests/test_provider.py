"""The provider library (``onetools.provision.provider``) on both object-layer backends:
every provider file OpenNebula shipped, one of our own per driver, the original's error texts,
the update rules, masking, Google credentials and locks."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED_DATA
from onetools.errors import FileParseError
from onetools.one.api import (
    DOC_PROVIDER,
    DOC_PROVISION,
    DOCUMENT,
    LOCK_ADMIN,
    OneApi,
    Permissions,
)
from onetools.one.errors import LockedError, NotFoundError
from onetools.one.local import LocalOne
from onetools.one.xml import OneObject
from onetools.provision.provider import (
    AVAILABLE_DRIVERS,
    DRIVERS,
    MASK,
    Provider,
    ProviderError,
    build_document,
    chgrp_providers,
    chmod_providers,
    chown_providers,
    create_provider,
    delete_provider,
    delete_providers,
    document_template,
    list_providers,
    load_template,
    mask_connection,
    show_provider,
    update_provider,
)

PROVISION_DATA = SHARED_DATA / "opennebula-provision"
SHIPPED = sorted(PROVISION_DATA.glob("*/*/*/providers/*/*.yml"))
SECRET = "s3cr3t-Zq9-DISTINCTIVE"


def exactly(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``."""
    return "^" + re.escape(message) + "$"


#: Our own provider for every driver, with SECRET in every credential.
OWN: dict[str, dict[str, Any]] = {
    "aws": {"access_key": SECRET, "secret_key": SECRET, "region": "eu-west-3"},
    "digitalocean": {"token": SECRET, "region": "fra1"},
    "equinix": {"project": "p-1", "token": SECRET, "metro": "da"},
    "google": {"credentials": "KEYFILE", "project": "p-2", "region": "us-c1", "zone": "us-c1-a"},
    "onprem": {},
    "vultr_metal": {"key": SECRET, "region": "fra"},
    "vultr_virtual": {"key": SECRET, "region": "ewr"},
    "packet": {"project": "p-3", "token": SECRET, "facility": "ams1"},
}


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    """A Google service-account key file whose private key is SECRET."""
    path = tmp_path / "google-key.json"
    path.write_text(json.dumps({"type": "service_account", "private_key": SECRET}))
    return path


def own_template(driver: str, keyfile: Path, name: str | None = None) -> dict[str, Any]:
    connection = dict(OWN[driver])
    if connection.get("credentials") == "KEYFILE":
        connection["credentials"] = str(keyfile)
    return {
        "name": name or f"own-{driver}",
        "description": f"our {driver}",
        "provider": driver,
        "connection": connection,
        "inputs": [{"name": "size", "type": "list", "options": ["a", "b"]}],
        "plain": {"provision_type": "virtual"},
    }


def shipped_text(path: Path, keyfile: Path) -> str:
    text = path.read_text()
    # Google's files carry a placeholder for the key file's path: point it at a real one.
    return text.replace("'JSON credentials file'", f"'{keyfile}'")


def test_every_shipped_file_is_found() -> None:
    names = {path.name for path in SHIPPED}
    assert len(SHIPPED) == 42 and {"onprem.yml", "packet-ams1.yml", "do-ams3.yml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(PROVISION_DATA)))
def test_shipped_provider_files_are_accepted(path: Path, one_api: OneApi, keyfile: Path) -> None:
    import yaml

    text = shipped_text(path, keyfile)
    oid = create_provider(one_api, text, path=str(path), now=1700000000)
    provider = show_provider(one_api, oid)
    source = yaml.safe_load(text)
    body = provider.body
    assert body is not None and provider.name == source["name"] == body["name"]
    assert body["provider"] == source["provider"] == provider.plain["provider"]
    assert body["registration_time"] == 1700000000
    assert body.get("description") == source.get("description")
    assert body.get("inputs") == source.get("inputs")
    assert "plain" not in body
    assert provider.plain == {**source.get("plain", {}), "provider": source["provider"]}
    connection = dict(source["connection"])
    if source["provider"] == "google":
        connection["credentials"] = base64.b64encode(keyfile.read_bytes()).decode()
    assert body["connection"] == connection


def test_own_provider_for_every_driver(one_api: OneApi, keyfile: Path) -> None:
    ids = {driver: create_provider(one_api, own_template(driver, keyfile)) for driver in OWN}
    assert set(DRIVERS) == set(OWN)
    listed = {p.name: p for p in list_providers(one_api)}
    assert set(listed) == {f"own-{d}" for d in OWN}
    for driver, oid in ids.items():
        provider = show_provider(one_api, oid)
        assert provider.document.int("TYPE") == DOC_PROVIDER
        assert provider.document.text("NAME") == f"own-{driver}"
        assert provider.driver == driver and provider.plain["provision_type"] == "virtual"
        assert listed[f"own-{driver}"].registration_time == provider.registration_time
        assert provider.registration_time is not None and provider.registration_time > 1.7e9
        shown = dict(provider.display_connection())
        clear = dict(provider.display_connection(decrypt=True))
        for key in DRIVERS[driver].secrets:
            assert shown[key] == MASK and clear[key] != MASK
        for key in ("region", "zone", "metro", "facility", "project"):
            if key in clear:
                assert shown[key] == clear[key] == str(OWN[driver][key])
    google = show_provider(one_api, ids["google"])
    key = base64.b64decode(google.connection["credentials"])
    assert json.loads(key)["private_key"] == SECRET


def test_the_document_layout(one_api: OneApi) -> None:
    oid = create_provider(one_api, own_template("aws", Path("unused")), now=1234)
    document = one_api.info(DOCUMENT, oid, decrypt=True)
    # oned moves NAME out of the template on allocate
    assert [child.tag for child in document.root.iterfind("TEMPLATE/*")] == [
        "PLAIN",
        "PROVISION_BODY",
    ]
    body = json.loads(document.text("TEMPLATE/PROVISION_BODY"))
    assert list(body)[:4] == ["provider", "connection", "registration_time", "name"]
    assert body["registration_time"] == 1234
    assert json.loads(document.text("TEMPLATE/PLAIN")) == {
        "provision_type": "virtual",
        "provider": "aws",
    }
    # The secret is not stored in clear (PLAIN never holds it; the body is encrypted).
    stored = one_api.info(DOCUMENT, oid).xml
    assert SECRET not in stored


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"provider": "aws", "connection": {}}, "Name not found"),
        ({"name": "  ", "provider": "aws", "connection": {}}, "Name not found"),
        ({"name": "x", "provider": "aws"}, "Connection info not found"),
        ({"name": "x", "provider": "aws", "connection": "text"}, "Connection info not found"),
        (
            {"name": "x", "provider": "azure", "connection": {}},
            "Invalid provider, available providers: aws, digitalocean, equinix, google, onprem, "
            "vultr_metal, vultr_virtual",
        ),
        ({"name": "x", "connection": {}}, "Invalid provider, available providers: aws, "),
        (
            {"name": "x", "provider": "aws", "connection": {"access_key": "a", "region": "r"}},
            "Missing provider connection attribute: 'secret_key'",
        ),
        (
            {"name": "x", "provider": "equinix", "connection": {"project": "p", "token": "t"}},
            "Missing provider connection attribute: 'metro'",
        ),
    ],
)
def test_create_errors(template: dict[str, Any], message: str) -> None:
    with pytest.raises(ProviderError) as caught:
        build_document(template)
    assert str(caught.value).startswith(message)


def test_the_available_providers_message() -> None:
    assert AVAILABLE_DRIVERS == (
        "aws, digitalocean, equinix, google, onprem, vultr_metal, vultr_virtual"
    )


@pytest.mark.parametrize("driver", [d for d in OWN if d != "onprem"])
def test_every_required_key_is_checked(driver: str) -> None:
    for key in DRIVERS[driver].required:
        connection = {k: v for k, v in OWN[driver].items() if k != key}
        with pytest.raises(
            ProviderError, match=exactly(f"Missing provider connection attribute: '{key}'")
        ):
            build_document({"name": "x", "provider": driver, "connection": connection})
        connection[key] = None
        with pytest.raises(ProviderError, match="Missing provider connection attribute"):
            build_document({"name": "x", "provider": driver, "connection": connection})


def test_onprem_needs_no_connection() -> None:
    name, body, plain = build_document({"name": "dc", "provider": "onprem"})
    assert (name, body["connection"], plain) == ("dc", {}, {"provider": "onprem"})


def test_names_are_unique(one_api: OneApi, keyfile: Path) -> None:
    create_provider(one_api, own_template("aws", keyfile, name="edge"))
    with pytest.raises(ProviderError, match=exactly("Provider edge already exists")):
        create_provider(one_api, own_template("vultr_metal", keyfile, name="edge"))
    assert [p.name for p in list_providers(one_api)] == ["edge"]


def test_yaml_errors_name_the_line_not_the_secret() -> None:
    text = f"name: x\nprovider: aws\nconnection:\n  secret_key: '{SECRET}\n  region: [\n"
    with pytest.raises(FileParseError) as caught:
        load_template(text, "p.yml")
    assert caught.value.path == "p.yml" and caught.value.line is not None
    assert SECRET not in str(caught.value) and caught.value.__cause__ is None
    with pytest.raises(FileParseError, match="must be a YAML mapping"):
        load_template("- a\n- b\n")


def test_google_credentials(tmp_path: Path, keyfile: Path) -> None:
    base = {"name": "g", "provider": "google"}
    connection = {"project": "p", "region": "r", "zone": "z"}
    for missing in (str(tmp_path / "none.json"), "JSON credentials file", SECRET):
        with pytest.raises(ProviderError, match="Google credentials file not found") as caught:
            build_document({**base, "connection": {**connection, "credentials": missing}})
        assert SECRET not in str(caught.value)
    not_json = tmp_path / "key.txt"
    not_json.write_text(SECRET)
    with pytest.raises(ProviderError, match="not a JSON key file") as caught:
        build_document({**base, "connection": {**connection, "credentials": str(not_json)}})
    assert SECRET not in str(caught.value)
    _, body, _ = build_document({**base, "connection": {**connection, "credentials": str(keyfile)}})
    encoded = body["connection"]["credentials"]
    assert base64.b64decode(encoded) == keyfile.read_bytes()
    # The key's JSON itself, or already encoded (a body copied from another provider).
    inline = keyfile.read_text()
    _, body, _ = build_document({**base, "connection": {**connection, "credentials": inline}})
    assert base64.b64decode(body["connection"]["credentials"]).decode() == inline
    _, body, _ = build_document({**base, "connection": {**connection, "credentials": encoded}})
    assert body["connection"]["credentials"] == encoded


def test_masking_in_every_form(one_api: OneApi, keyfile: Path) -> None:
    oid = create_provider(one_api, own_template("aws", keyfile))
    provider = show_provider(one_api, oid)
    for decrypt in (False, True):
        xml = provider.to_xml(decrypt)
        data = json.dumps(provider.to_dict(decrypt))
        assert (SECRET in xml) is decrypt and (SECRET in data) is decrypt
    data = provider.to_dict()
    body = data["DOCUMENT"]["TEMPLATE"]["PROVISION_BODY"]
    assert body["connection"] == {"access_key": MASK, "secret_key": MASK, "region": "eu-west-3"}
    assert isinstance(data["DOCUMENT"]["TEMPLATE"]["PLAIN"], str)  # as the original: a string
    listed = list_providers(one_api, decrypt=True)
    assert listed[0].connection["secret_key"] == SECRET
    assert mask_connection({"$encrypted": "token"}) == MASK
    assert mask_connection({"token": 1, "zone": "z", "extra": "e"}) == {
        "token": MASK,
        "zone": "z",
        "extra": MASK,
    }


def test_an_unreadable_body_is_masked_whole() -> None:
    from onetools.one.xml import OneObject

    xml = (
        "<DOCUMENT><ID>4</ID><NAME>p</NAME><TYPE>102</TYPE><TEMPLATE><NAME>p</NAME>"
        '<PLAIN>{"provider":"aws"}</PLAIN><PROVISION_BODY>Q2lwaGVydGV4dA==</PROVISION_BODY>'
        "</TEMPLATE></DOCUMENT>"
    )
    provider = Provider.from_document(OneObject(DOCUMENT, xml))
    assert provider.body is None and provider.driver == "aws"
    assert provider.registration_time is None
    assert provider.to_dict()["DOCUMENT"]["TEMPLATE"]["PROVISION_BODY"] == MASK
    assert "Q2lwaGVydGV4dA" not in provider.to_xml()


def test_update_rules(one_api: OneApi, keyfile: Path) -> None:
    oid = create_provider(one_api, own_template("aws", keyfile))
    body = show_provider(one_api, oid).body
    assert body is not None
    with pytest.raises(ProviderError, match=exactly("Keys can not be changed")):
        update_provider(one_api, oid, {**body, "extra": 1})
    with pytest.raises(ProviderError, match=exactly("Keys can not be changed")):
        update_provider(one_api, oid, {k: v for k, v in body.items() if k != "inputs"})
    with pytest.raises(ProviderError, match=exactly("`provider` can not be changed")):
        update_provider(one_api, oid, {**body, "provider": "google"})
    with pytest.raises(ProviderError, match=exactly("`name` can not be changed")):
        update_provider(one_api, oid, {**body, "name": "other"})
    without_region = {k: v for k, v in body["connection"].items() if k != "region"}
    with pytest.raises(ProviderError, match="Missing provider connection attribute: 'region'"):
        update_provider(one_api, oid, {**body, "connection": without_region})
    assert show_provider(one_api, oid).body == body  # nothing was written

    assert update_provider(one_api, oid, json.dumps(body)) is False  # unchanged: no update
    changed = {**body, "description": "moved", "connection": {**body["connection"], "region": "x"}}
    assert update_provider(one_api, oid, json.dumps(changed)) is True
    after = show_provider(one_api, oid)
    assert after.body == changed
    assert after.plain == {"provision_type": "virtual", "provider": "aws"}  # PLAIN kept
    assert after.name == "own-aws"
    assert [child.tag for child in after.document.root.iterfind("TEMPLATE/*")] == [
        "PLAIN",
        "PROVISION_BODY",
    ]

    # Edited from a copy someone else has updated since: refused, nothing lost.
    stale = {**changed, "description": "stale edit"}
    with pytest.raises(ProviderError, match="updated by someone else"):
        update_provider(one_api, oid, stale, edited_from=body)
    assert show_provider(one_api, oid).body == changed
    assert update_provider(one_api, oid, stale, edited_from=changed) is True
    changed = stale

    # A masked copy (show -j) written back keeps the stored secrets.
    masked = after.to_dict()["DOCUMENT"]["TEMPLATE"]["PROVISION_BODY"]
    masked["connection"]["region"] = "y"
    assert update_provider(one_api, oid, masked) is True
    connection = show_provider(one_api, oid).connection
    assert connection == {"access_key": SECRET, "secret_key": SECRET, "region": "y"}


def test_google_key_replaced_by_update(one_api: OneApi, keyfile: Path, tmp_path: Path) -> None:
    oid = create_provider(one_api, own_template("google", keyfile))
    body = show_provider(one_api, oid).body
    assert body is not None
    new_key = tmp_path / "new-key.json"
    new_key.write_text(json.dumps({"type": "service_account", "private_key": "new"}))
    connection = {**body["connection"], "credentials": str(new_key)}
    assert update_provider(one_api, oid, {**body, "connection": connection}) is True
    stored = show_provider(one_api, oid).connection["credentials"]
    assert base64.b64decode(stored) == new_key.read_bytes()
    connection["credentials"] = str(tmp_path / "missing.json")
    with pytest.raises(ProviderError, match="Google credentials file not found"):
        update_provider(one_api, oid, {**body, "connection": connection})


def test_plain_update_keeps_the_provider(one_api: OneApi, keyfile: Path) -> None:
    oid = create_provider(one_api, own_template("digitalocean", keyfile))
    before = show_provider(one_api, oid)
    update_provider(one_api, oid, {"provision_type": "metal", "provider": "aws"}, plain=True)
    after = show_provider(one_api, oid)
    assert after.plain == {"provision_type": "metal", "provider": "digitalocean"}
    assert after.body == before.body


def _provision(one: OneApi, name: str, provider: str) -> int:
    body = json.dumps({"name": name, "provider": provider, "state": 3})
    template = f"<TEMPLATE><NAME>{name}</NAME><BODY><![CDATA[{body}]]></BODY></TEMPLATE>"
    return one.allocate_document(template, DOC_PROVISION)


def test_delete_refuses_providers_in_use(one_api: OneApi, keyfile: Path) -> None:
    used = create_provider(one_api, own_template("aws", keyfile, name="used"))
    free = create_provider(one_api, own_template("aws", keyfile, name="free"))
    _provision(one_api, "other", "someone-else")
    pid = _provision(one_api, "edge", "used")
    with pytest.raises(
        ProviderError,
        match=exactly(f"Provider can not be deleted, it is used by provision with ID: {pid}"),
    ):
        delete_provider(one_api, used)
    failures = delete_providers(one_api, [used, free, 999])
    assert set(failures) == {used, 999} and isinstance(failures[999], NotFoundError)
    assert [p.id for p in list_providers(one_api)] == [used]
    one_api.delete(DOCUMENT, pid)
    delete_provider(one_api, used)
    assert list_providers(one_api) == []


def test_other_documents_are_not_providers(one_api: OneApi) -> None:
    pid = _provision(one_api, "edge", "aws")
    for action in (
        lambda: show_provider(one_api, pid),
        lambda: delete_provider(one_api, pid),
        lambda: update_provider(one_api, pid, {}),
    ):
        with pytest.raises(NotFoundError, match="not a provider"):
            action()
    assert list_providers(one_api) == []


def test_locked_providers_are_refused(one_api: OneApi, keyfile: Path) -> None:
    oid = create_provider(one_api, own_template("vultr_virtual", keyfile))
    body = show_provider(one_api, oid).body
    assert body is not None
    one_api.lock(DOCUMENT, oid, LOCK_ADMIN)
    with pytest.raises(LockedError, match="Object is locked"):
        update_provider(one_api, oid, {**body, "description": "new"})
    with pytest.raises(LockedError, match="Object is locked"):
        delete_provider(one_api, oid)
    assert isinstance(
        chmod_providers(one_api, [oid], Permissions.from_octet("600"))[oid], LockedError
    )
    one_api.unlock(DOCUMENT, oid)
    assert update_provider(one_api, oid, {**body, "description": "new"}) is True
    assert show_provider(one_api, oid).document.lock is None  # released afterwards


def test_owner_group_and_permissions(one_api: OneApi, keyfile: Path) -> None:
    oid = create_provider(one_api, own_template("aws", keyfile))
    uid = one_api.allocate_user("alice", "pw")
    gid = one_api.allocate_group("edge")
    assert chown_providers(one_api, [oid], uid, gid) == {}
    document = show_provider(one_api, oid).document
    assert (document.uid, document.gid) == (uid, gid)
    assert chgrp_providers(one_api, [oid], 0) == {}
    assert show_provider(one_api, oid).document.gid == 0
    assert chmod_providers(one_api, [oid], Permissions.from_octet("640")) == {}
    permissions = show_provider(one_api, oid).document.permissions
    assert permissions is not None and permissions.octet() == "640"


def test_document_template_escapes() -> None:
    xml = document_template("a<&>b", {"k": "x]]>y"}, {"provider": "aws"})
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    assert root.findtext("NAME") == "a<&>b"
    assert json.loads(root.findtext("PROVISION_BODY") or "") == {"k": "x]]>y"}


class CiphertextPool(LocalOne):
    """The embedded store as a real oned answers: ``PROVISION_BODY`` is ciphertext unless
    ``info`` is asked to decrypt (xmlrpc.md §3.3)."""

    def _hide(self, document: OneObject) -> OneObject:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(document.xml)
        body = root.find("TEMPLATE/PROVISION_BODY")
        if body is not None:
            body.text = base64.b64encode((body.text or "").encode()).decode()
        return OneObject(document.kind, ET.tostring(root, encoding="unicode"))

    def info(self, kind: str, oid: int, decrypt: bool = False) -> OneObject:
        self.infos.append((oid, decrypt))
        document = super().info(kind, oid, decrypt)
        return document if decrypt else self._hide(document)

    def pool(self, kind: str, *args: Any, **kwargs: Any) -> list[OneObject]:
        return [self._hide(document) for document in super().pool(kind, *args, **kwargs)]


def test_listing_reads_ciphertext_bodies_one_by_one(tmp_path: Path, keyfile: Path) -> None:
    with CiphertextPool(tmp_path / "home") as one:  # type: ignore[call-arg]
        one.infos = []  # type: ignore[attr-defined]
        first = create_provider(one, own_template("aws", keyfile), now=111)
        second = create_provider(one, own_template("onprem", keyfile), now=222)
        one.infos.clear()  # type: ignore[attr-defined]
        providers = list_providers(one)
        assert [(p.id, p.registration_time) for p in providers] == [(first, 111), (second, 222)]
        assert one.infos == [(first, True), (second, True)]  # type: ignore[attr-defined]
        assert providers[0].connection["secret_key"] == SECRET
        assert SECRET not in json.dumps(providers[0].to_dict())
