"""The ``OneApi`` contract: what every backend must do as oned does (reference/xmlrpc.md).

Only the interface (``onetools.one.api``) and the typed errors are used here, so the same tests
run on every backend of the ``one_api`` fixture (``tests/one_fixtures.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onetools.one import api
from onetools.one.api import OneApi, Permissions
from onetools.one.errors import (
    ActionError,
    AllocateError,
    ApiError,
    AuthorizationError,
    InternalError,
    LockedError,
    NotFoundError,
    OneError,
)
from onetools.one.template import render

DEFAULT_PERMS = Permissions.from_octet("600")


def _image(one: OneApi, name: str = "img1", datastore: int = 1) -> int:
    return one.allocate_image(f'NAME = "{name}"\nPATH = "/nonexistent/{name}.qcow2"', datastore)


def _market(one: OneApi, name: str = "m1") -> int:
    return one.allocate_market(
        render({"NAME": name, "MARKET_MAD": "http", "BASE_URL": "http://f/", "PUBLIC_DIR": "/srv"})
    )


# ---- system ---------------------------------------------------------------------------------
def test_version_and_whoami(one_api: OneApi) -> None:
    assert one_api.version() == "6.10.0"
    me = one_api.whoami()
    assert (me.uid, me.name, me.gid) == (0, "oneadmin", 0)
    assert me.is_admin and 0 in me.groups
    assert one_api.describe()
    assert one_api.info(api.USER, -1).name == "oneadmin"


def test_first_start_objects(one_api: OneApi) -> None:
    assert [(c.id, c.name) for c in one_api.pool(api.CLUSTER)] == [(0, "default")]
    datastores = one_api.pool(api.DATASTORE)
    assert [(d.id, d.name, d.int("TYPE")) for d in datastores] == [
        (0, "system", 1),
        (1, "default", 0),
        (2, "files", 2),
    ]
    assert one_api.info(api.CLUSTER, 0).ids("DATASTORES") == [0, 1, 2]
    assert all(d.ids("CLUSTERS") == [0] for d in datastores)
    markets = one_api.pool(api.MARKET)
    assert [(m.id, m.name, m.text("MARKET_MAD")) for m in markets] == [
        (0, "OpenNebula Public", "one"),
        (1, "Linux Containers", "linuxcontainers"),
    ]
    assert [g.id for g in one_api.pool(api.GROUP)] == [0, 1]


# ---- allocate and read back -----------------------------------------------------------------
def test_allocate_every_kind(one_api: OneApi) -> None:
    one = one_api
    cluster = one.allocate_cluster("c1")
    assert cluster == 100
    host = one.allocate_host("node1", "kvm", "kvm", -1)
    datastore = one.allocate_datastore('NAME = "ds1"\nDS_MAD = "fs"\nTM_MAD = "ssh"', -1)
    assert datastore == 100
    vnet = one.allocate_vnet('NAME = "net1"\nVN_MAD = "bridge"', -1)
    image = _image(one)
    template = one.allocate_template(f'NAME = "t1"\nCPU = 1\nDISK = [ IMAGE_ID = {image} ]')
    vntemplate = one.allocate_vntemplate('NAME = "vt1"\nVN_MAD = "bridge"')
    document = one.allocate_document('NAME = "web"\nBODY = "{}"', api.DOC_SERVICE_TEMPLATE)
    market = _market(one)
    assert market == 100
    app = one.allocate_marketapp(
        'NAME = "app1"\nORIGIN_ID = "-1"\nTYPE = "VMTEMPLATE"\nAPPTEMPLATE64 = "Q1BVPTE="', market
    )
    group = one.allocate_group("g1")
    assert group == 100
    user = one.allocate_user("u1", "secret", group_ids=[group])

    c = one.info(api.CLUSTER, cluster)
    assert c.name == "c1" and set(c.template()) == {"RESERVED_CPU", "RESERVED_MEM"}
    assert c.permissions is None

    h = one.info(api.HOST, host)
    assert (h.name, h.int("STATE"), h.int("CLUSTER_ID"), h.text("CLUSTER")) == (
        "node1",
        0,
        0,
        "default",
    )
    assert h.text("IM_MAD") == "kvm" and h.template()["VM_MAD"] == "kvm"
    assert one.info(api.CLUSTER, 0).ids("HOSTS") == [host]

    d = one.info(api.DATASTORE, datastore)
    assert (d.text("DS_MAD"), d.text("TM_MAD"), d.int("TYPE")) == ("fs", "ssh", 0)
    assert d.text("BASE_PATH") == f"/var/lib/one//datastores/{datastore}"
    assert d.template()["TYPE"] == "IMAGE_DS" and d.ids("CLUSTERS") == [0]

    v = one.info(api.VNET, vnet)
    assert v.text("BRIDGE") == f"onebr{vnet}" and v.text("VN_MAD") == "bridge"
    assert "0" in v.template()["SECURITY_GROUPS"].split(",")
    assert "NAME" not in v.template()

    i = one.wait_image_ready(image, timeout=10, interval=0.1)
    assert (i.int("DATASTORE_ID"), i.text("DATASTORE")) == (1, "default")
    assert i.template()["DEV_PREFIX"] == "sd"
    assert image in one.info(api.DATASTORE, 1).ids("IMAGES")

    t = one.info(api.TEMPLATE, template)
    assert t.template() == {"CPU": "1", "DISK": {"IMAGE_ID": str(image)}}
    assert one.info(api.VNTEMPLATE, vntemplate).template() == {"VN_MAD": "bridge"}

    doc = one.info(api.DOCUMENT, document)
    assert (doc.name, doc.int("TYPE"), doc.template()) == ("web", 101, {"BODY": "{}"})

    m = one.info(api.MARKET, market)
    assert m.ids("MARKETPLACEAPPS") == [app]
    a = one.info(api.MARKETAPP, app)
    assert (a.int("MARKETPLACE_ID"), a.text("MARKETPLACE"), a.int("TYPE"), a.int("STATE")) == (
        market,
        "m1",
        2,
        1,
    )
    assert a.text("APPTEMPLATE64") == "Q1BVPTE=" and "ORIGIN_ID" not in a.template()

    u = one.info(api.USER, user)
    assert (u.name, u.gid, u.ids("GROUPS"), u.text("AUTH_DRIVER")) == ("u1", group, [group], "core")
    assert u.text("PASSWORD") != "secret"
    assert one.info(api.GROUP, group).ids("USERS") == [user]

    for kind, oid in (
        (api.DATASTORE, datastore),
        (api.VNET, vnet),
        (api.IMAGE, image),
        (api.TEMPLATE, template),
        (api.VNTEMPLATE, vntemplate),
        (api.DOCUMENT, document),
        (api.MARKET, market),
        (api.MARKETAPP, app),
    ):
        obj = one.info(kind, oid)
        assert obj.id == oid
        assert (obj.uid, obj.gid, obj.uname, obj.gname) == (0, 0, "oneadmin", "oneadmin"), kind
        assert obj.permissions == DEFAULT_PERMS, kind


def test_ids_are_sequential_per_pool(one_api: OneApi) -> None:
    assert [one_api.allocate_template(f"NAME = t{i}") for i in range(3)] == [0, 1, 2]
    assert one_api.allocate_cluster("a") == 100 and one_api.allocate_cluster("b") == 101


def test_document_without_name(one_api: OneApi) -> None:
    oid = one_api.allocate_document('BODY = "{}"', api.DOC_SERVICE)
    assert one_api.info(api.DOCUMENT, oid).name == f"document-{oid}"


def test_template_text_and_xml_forms(one_api: OneApi) -> None:
    text = one_api.allocate_template(
        'NAME = "t1"\n# a comment\nDESCRIPTION = "say \\"hi\\""\nDISK = [ IMAGE_ID = 1 ]\n'
        "DISK = [ IMAGE_ID = 2 ]\n"
    )
    tmpl = one_api.info(api.TEMPLATE, text).template()
    assert tmpl["DESCRIPTION"] == 'say "hi"'
    assert tmpl["DISK"] == [{"IMAGE_ID": "1"}, {"IMAGE_ID": "2"}]
    xml = one_api.allocate_template("<TEMPLATE><NAME>t2</NAME><CPU>2</CPU></TEMPLATE>")
    assert one_api.info(api.TEMPLATE, xml).template() == {"CPU": "2"}
    with pytest.raises(InternalError, match=r"one\.template\.allocate.*Parse error"):
        one_api.allocate_template('NAME = "t3"\nBROKEN')


# ---- names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "a/b", "x" * 129, "semi;colon", "quote'"])
def test_invalid_names(one_api: OneApi, name: str) -> None:
    with pytest.raises(OneError, match="Invalid NAME"):
        one_api.allocate_cluster(name)


def test_control_characters_never_reach_a_body(one_api: OneApi) -> None:
    # (over XML-RPC they cannot even be sent: the call itself is refused)
    with pytest.raises(OneError):
        one_api.allocate_cluster("bad\x07name")
    oid = one_api.allocate_template("NAME = t")
    with pytest.raises(OneError):
        one_api.rename(api.TEMPLATE, oid, "bad\x01")
    assert one_api.info(api.TEMPLATE, oid).name == "t"


def test_name_uniqueness(one_api: OneApi) -> None:
    one = one_api
    cluster = one.allocate_cluster("c1")
    with pytest.raises(InternalError, match=f"NAME is already taken by CLUSTER {cluster}\\."):
        one.allocate_cluster("c1")
    host = one.allocate_host("h1", "kvm", "kvm")
    with pytest.raises(InternalError, match=f"NAME is already taken by HOST {host}"):
        one.allocate_host("h1", "kvm", "kvm")
    with pytest.raises(InternalError, match="NAME is already taken by DATASTORE 1"):
        one.allocate_datastore('NAME = "default"\nDS_MAD = fs\nTM_MAD = ssh')
    net = one.allocate_vnet("NAME = n1\nVN_MAD = bridge")
    with pytest.raises(InternalError, match=f"NAME is already taken by NET {net}\\."):
        one.allocate_vnet("NAME = n1\nVN_MAD = bridge")
    image = _image(one, "i1")
    with pytest.raises(AllocateError, match=f"NAME is already taken by IMAGE {image}\\."):
        _image(one, "i1")
    template = one.allocate_template("NAME = t1")
    with pytest.raises(InternalError, match=f"NAME is already taken by TEMPLATE {template}\\."):
        one.allocate_template("NAME = t1")
    vnt = one.allocate_vntemplate("NAME = vt1\nVN_MAD = bridge")
    with pytest.raises(InternalError, match=f"NAME is already taken by VN TEMPLATE {vnt}\\."):
        one.allocate_vntemplate("NAME = vt1\nVN_MAD = bridge")
    market = _market(one)
    with pytest.raises(InternalError, match=f"NAME is already taken by MARKETPLACE {market}$"):
        _market(one)
    app_text = "NAME = a1\nORIGIN_ID = -1\nTYPE = VMTEMPLATE"
    app = one.allocate_marketapp(app_text, market)
    with pytest.raises(InternalError, match=f"NAME is already taken by MARKETPLACEAPP {app}$"):
        one.allocate_marketapp(app_text, market)
    # documents are never checked
    first = one.allocate_document("NAME = same", api.DOC_PROVIDER)
    second = one.allocate_document("NAME = same", api.DOC_PROVIDER)
    assert first != second


def test_rename(one_api: OneApi) -> None:
    one = one_api
    first = one.allocate_template("NAME = a")
    second = one.allocate_template("NAME = b")
    assert one.rename(api.TEMPLATE, first, "c") == first
    assert one.info(api.TEMPLATE, first).name == "c"
    with pytest.raises(ActionError, match="cannot be renamed to b because it collides with"):
        one.rename(api.TEMPLATE, first, "b")
    with pytest.raises(ActionError, match="Invalid NAME"):
        one.rename(api.TEMPLATE, second, "x|y")
    assert [t.name for t in one.pool(api.TEMPLATE)] == ["c", "b"]
    cluster = one.allocate_cluster("c1")
    host = one.allocate_host("h1", "kvm", "kvm", cluster)
    one.rename(api.CLUSTER, cluster, "c2")
    assert one.info(api.HOST, host).text("CLUSTER") == "c2"
    one.rename(api.DATASTORE, 1, "images")
    image = _image(one)
    assert one.info(api.IMAGE, image).text("DATASTORE") == "images"
    doc = one.allocate_document("NAME = d1", api.DOC_SERVICE)
    one.allocate_document("NAME = d2", api.DOC_SERVICE)
    one.rename(api.DOCUMENT, doc, "d2")  # no collision check for documents
    assert one.info(api.DOCUMENT, doc).name == "d2"


# ---- update ---------------------------------------------------------------------------------
def test_update_replace_and_merge(one_api: OneApi) -> None:
    one = one_api
    oid = one.allocate_template("NAME = t\nCPU = 1\nMEMORY = 128\nDISK = [ IMAGE_ID = 1 ]")
    one.update(
        api.TEMPLATE,
        oid,
        "MEMORY = 256\nDISK = [ IMAGE_ID = 2 ]\nDISK = [ IMAGE_ID = 3 ]",
        merge=True,
    )
    assert one.info(api.TEMPLATE, oid).template() == {
        "CPU": "1",
        "DISK": [{"IMAGE_ID": "2"}, {"IMAGE_ID": "3"}],
        "MEMORY": "256",
    }
    one.update(api.TEMPLATE, oid, "VCPU = 2")
    assert one.info(api.TEMPLATE, oid).template() == {"VCPU": "2"}
    assert one.info(api.TEMPLATE, oid).name == "t"
    with pytest.raises(InternalError, match="Parse error"):
        one.update(api.TEMPLATE, oid, "A = [ B = 1")
    with pytest.raises(
        NotFoundError,
        match=r"\[one.template.update\] Error getting virtual machine template \[99\]",
    ):
        one.update(api.TEMPLATE, 99, "A = 1")


def test_template_values_sorted_and_exact(one_api: OneApi) -> None:
    oid = one_api.allocate_template('NAME = t\nZETA = "z"\nALPHA = "a <&> ]]> b"\nMID = ""')
    obj = one_api.info(api.TEMPLATE, oid)
    assert [child.tag for child in obj.root.find("TEMPLATE")] == ["ALPHA", "MID", "ZETA"]  # type: ignore[union-attr]
    assert obj.template()["ALPHA"] == "a <&> ]]> b"


# ---- ownership and permissions --------------------------------------------------------------
def test_chown_chgrp_chmod(one_api: OneApi) -> None:
    one = one_api
    group = one.allocate_group("g1")
    user = one.allocate_user("u1", "pw", group_ids=[group])
    oid = one.allocate_template("NAME = t")
    one.chown(api.TEMPLATE, oid, user, -1)
    obj = one.info(api.TEMPLATE, oid)
    assert (obj.uid, obj.uname, obj.gid, obj.gname) == (user, "u1", 0, "oneadmin")
    one.chown(api.TEMPLATE, oid, -1, group)
    obj = one.info(api.TEMPLATE, oid)
    assert (obj.uid, obj.gid, obj.gname) == (user, group, "g1")
    assert [t.id for t in one.pool(api.TEMPLATE, user)] == [oid]
    assert one.pool(api.TEMPLATE, api.FILTER_MINE) == []
    with pytest.raises(NotFoundError, match=r"Error getting user \[77\]"):
        one.chown(api.TEMPLATE, oid, 77, -1)
    with pytest.raises(NotFoundError, match=r"Error getting group \[77\]"):
        one.chown(api.TEMPLATE, oid, -1, 77)

    one.chmod(api.TEMPLATE, oid, Permissions.from_octet("640"))
    assert one.info(api.TEMPLATE, oid).permissions == Permissions.from_octet("640")
    one.chmod(api.TEMPLATE, oid, Permissions([-1, -1, 1, -1, -1, -1, 1, -1, -1]))
    assert one.info(api.TEMPLATE, oid).permissions == Permissions.from_octet("744")


def test_chown_name_collision_per_owner(one_api: OneApi) -> None:
    one = one_api
    user = one.allocate_user("u1", "pw")
    mine = one.allocate_template("NAME = same")
    theirs = one.allocate_template("NAME = other")
    one.chown(api.TEMPLATE, theirs, user, -1)
    one.rename(api.TEMPLATE, theirs, "same")  # unique per owner: allowed
    with pytest.raises(ActionError):
        one.chown(api.TEMPLATE, mine, user, -1)


def test_user_group_membership(one_api: OneApi) -> None:
    one = one_api
    g1, g2 = one.allocate_group("g1"), one.allocate_group("g2")
    with pytest.raises(InternalError, match="NAME is already taken by GROUP"):
        one.allocate_group("g1")
    user = one.allocate_user("u1", "pw", group_ids=[g1, g2])
    obj = one.info(api.USER, user)
    assert (obj.gid, obj.ids("GROUPS")) == (g1, [g1, g2])
    assert one.info(api.GROUP, g2).ids("USERS") == [user]
    plain = one.allocate_user("u2", "pw")
    assert one.info(api.USER, plain).gid == 1
    assert one.info(api.GROUP, 1).ids("USERS") == [plain]
    with pytest.raises(InternalError, match="NAME is already taken by USER"):
        one.allocate_user("u1", "pw")
    with pytest.raises(ActionError, match="has users"):
        one.delete(api.GROUP, g1)
    one.delete(api.USER, user)
    assert one.info(api.GROUP, g1).ids("USERS") == []
    one.delete(api.GROUP, g1)
    with pytest.raises(ActionError, match="System Groups"):
        one.delete(api.GROUP, 1)


# ---- delete ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "message_name"),
    [
        (api.TEMPLATE, "virtual machine template"),
        (api.VNTEMPLATE, "virtual network template"),
        (api.DOCUMENT, "document"),
        (api.VNET, "virtual network"),
        (api.IMAGE, "image"),
    ],
)
def test_delete_then_not_found(one_api: OneApi, kind: str, message_name: str) -> None:
    one = one_api
    make = {
        api.TEMPLATE: lambda: one.allocate_template("NAME = x"),
        api.VNTEMPLATE: lambda: one.allocate_vntemplate("NAME = x\nVN_MAD = bridge"),
        api.DOCUMENT: lambda: one.allocate_document("NAME = x", api.DOC_PROVIDER),
        api.VNET: lambda: one.allocate_vnet("NAME = x\nVN_MAD = bridge"),
        api.IMAGE: lambda: _image(one, "x"),
    }
    oid = make[kind]()
    assert one.delete(kind, oid) == oid
    with pytest.raises(NotFoundError) as caught:
        one.info(kind, oid)
    assert str(caught.value.message) == f"[one.{kind}.info] Error getting {message_name} [{oid}]."
    with pytest.raises(NotFoundError, match=rf"\[one.{kind}.delete\]"):
        one.delete(kind, oid)
    assert oid not in [o.id for o in one.pool(kind, doc_type=api.DOC_PROVIDER)]


def test_delete_rules_of_containers(one_api: OneApi) -> None:
    one = one_api
    with pytest.raises(ActionError, match=r"System Clusters \(ID < 100\) cannot be deleted"):
        one.delete(api.CLUSTER, 0)
    cluster = one.allocate_cluster("c1")
    host = one.allocate_host("h1", "kvm", "kvm", cluster)
    with pytest.raises(ActionError, match=f"Cluster {cluster} is not empty, it contains 1 hosts"):
        one.delete(api.CLUSTER, cluster)
    one.delete(api.HOST, host)
    assert one.info(api.CLUSTER, cluster).ids("HOSTS") == []
    one.delete(api.CLUSTER, cluster)
    with pytest.raises(NotFoundError):
        one.info(api.CLUSTER, cluster)

    datastore = one.allocate_datastore("NAME = ds\nDS_MAD = fs\nTM_MAD = ssh")
    image = _image(one, "i", datastore)
    with pytest.raises(ActionError, match=f"Datastore {datastore} is not empty"):
        one.delete(api.DATASTORE, datastore)
    one.delete(api.IMAGE, image)
    assert one.info(api.DATASTORE, datastore).ids("IMAGES") == []
    one.delete(api.DATASTORE, datastore)
    assert one.info(api.CLUSTER, 0).ids("DATASTORES") == [0, 1, 2]

    market = _market(one)
    app = one.allocate_marketapp("NAME = a\nORIGIN_ID = -1\nTYPE = VMTEMPLATE", market)
    with pytest.raises(ActionError, match="is not empty"):
        one.delete(api.MARKET, market)
    one.delete(api.MARKETAPP, app)
    assert one.info(api.MARKET, market).ids("MARKETPLACEAPPS") == []
    one.delete(api.MARKET, market)


def test_template_delete_recursive(one_api: OneApi) -> None:
    one = one_api
    kept, gone = _image(one, "kept"), _image(one, "gone")
    plain = one.allocate_template(f"NAME = plain\nDISK = [ IMAGE_ID = {kept} ]")
    recursive = one.allocate_template(f"NAME = rec\nDISK = [ IMAGE_ID = {gone} ]")
    one.delete(api.TEMPLATE, plain)
    one.info(api.IMAGE, kept)
    one.delete(api.TEMPLATE, recursive, recursive=True)
    with pytest.raises(NotFoundError):
        one.info(api.IMAGE, gone)
    assert one.info(api.DATASTORE, 1).ids("IMAGES") == [kept]


# ---- clusters, hosts, networks --------------------------------------------------------------
def test_cluster_add_remove(one_api: OneApi) -> None:
    one = one_api
    c1, c2 = one.allocate_cluster("c1"), one.allocate_cluster("c2")
    host = one.allocate_host("h1", "kvm", "kvm", -1)
    one.cluster_add(c1, api.HOST, host)
    one.cluster_add(c2, api.HOST, host)  # moves
    obj = one.info(api.HOST, host)
    assert (obj.int("CLUSTER_ID"), obj.text("CLUSTER")) == (c2, "c2")
    assert one.info(api.CLUSTER, c1).ids("HOSTS") == []
    assert one.info(api.CLUSTER, c2).ids("HOSTS") == [host]
    one.cluster_remove(c2, api.HOST, host)
    assert one.info(api.HOST, host).int("CLUSTER_ID") == 0
    assert one.info(api.CLUSTER, 0).ids("HOSTS") == [host]

    one.cluster_add(c1, api.DATASTORE, 1)
    one.cluster_add(c1, api.DATASTORE, 1)  # already there: success, no change
    assert one.info(api.DATASTORE, 1).ids("CLUSTERS") == [0, c1]
    assert one.info(api.CLUSTER, c1).ids("DATASTORES") == [1]
    one.cluster_remove(0, api.DATASTORE, 1)
    assert one.info(api.DATASTORE, 1).ids("CLUSTERS") == [c1]
    assert one.info(api.CLUSTER, 0).ids("DATASTORES") == [0, 2]

    vnet = one.allocate_vnet("NAME = n\nVN_MAD = bridge", c1)
    one.cluster_add(c2, api.VNET, vnet)
    assert one.info(api.VNET, vnet).ids("CLUSTERS") == [c1, c2]
    one.cluster_remove(c1, api.VNET, vnet)
    assert one.info(api.VNET, vnet).ids("CLUSTERS") == [c2]
    assert one.info(api.CLUSTER, c2).ids("VNETS") == [vnet]
    with pytest.raises(NotFoundError, match=r"Error getting cluster \[555\]"):
        one.cluster_add(555, api.VNET, vnet)
    with pytest.raises(NotFoundError, match=r"Error getting cluster \[555\]"):
        one.allocate_host("h2", "kvm", "kvm", 555)


def test_host_status(one_api: OneApi) -> None:
    one = one_api
    host = one.allocate_host("h1", "kvm", "kvm")
    assert one.info(api.HOST, host).int("STATE") == 0
    one.host_status(host, api.HOST_DISABLED)
    assert one.info(api.HOST, host).int("STATE") == 4
    one.host_status(host, api.HOST_OFFLINE)
    assert one.info(api.HOST, host).int("STATE") == 8
    one.host_status(host, api.HOST_ENABLED)
    assert one.info(api.HOST, host).int("STATE") == 0
    with pytest.raises(InternalError, match="Wrong status code"):
        one.host_status(host, 7)


def test_vnet_address_ranges(one_api: OneApi) -> None:
    one = one_api
    vnet = one.allocate_vnet(
        'NAME = n\nVN_MAD = bridge\nAR = [ TYPE = "IP4", IP = "10.0.0.1", SIZE = 10 ]'
    )
    one.vnet_add_ar(vnet, 'AR = [ TYPE = "ETHER", SIZE = 5 ]')
    obj = one.info(api.VNET, vnet)
    ars = obj.root.findall("AR_POOL/AR")
    assert [(a.findtext("AR_ID"), a.findtext("TYPE"), a.findtext("SIZE")) for a in ars] == [
        ("0", "IP4", "10"),
        ("1", "ETHER", "5"),
    ]
    assert ars[0].findtext("MAC") == "02:00:0a:00:00:01"
    assert ars[0].findtext("IP_END") == "10.0.0.10"
    one.vnet_rm_ar(vnet, 0)
    assert [a.findtext("AR_ID") for a in one.info(api.VNET, vnet).root.findall("AR_POOL/AR")] == [
        "1"
    ]
    with pytest.raises(InternalError):
        one.vnet_rm_ar(vnet, 9)
    with pytest.raises(InternalError):
        one.vnet_add_ar(vnet, 'AR = [ TYPE = "IP4", IP = "not-an-ip", SIZE = 1 ]')
    with pytest.raises(InternalError, match="No VN_MAD"):
        one.allocate_vnet("NAME = n2")


def test_enable_disable(one_api: OneApi) -> None:
    one = one_api
    image = _image(one)
    one.wait_image_ready(image, timeout=10, interval=0.1)
    one.enable(api.IMAGE, image, False)
    assert one.info(api.IMAGE, image).int("STATE") == 3
    one.enable(api.IMAGE, image, True)
    assert one.info(api.IMAGE, image).int("STATE") == 1
    one.enable(api.DATASTORE, 0, False)
    assert one.info(api.DATASTORE, 0).int("STATE") == 1
    with pytest.raises(InternalError, match="Only SYSTEM_DS can be disabled or enabled"):
        one.enable(api.DATASTORE, 1, False)
    market = _market(one)
    app = one.allocate_marketapp("NAME = a\nORIGIN_ID = -1\nTYPE = VMTEMPLATE", market)
    one.enable(api.MARKETAPP, app, False)
    assert one.info(api.MARKETAPP, app).int("STATE") == 4
    one.enable(api.MARKET, market, False)
    assert one.info(api.MARKET, market).int("STATE") == 1


def test_allocate_checks(one_api: OneApi) -> None:
    one = one_api
    with pytest.raises(AllocateError, match="system datastore"):
        _image(one, "x", 0)
    with pytest.raises(NotFoundError, match=r"Error getting datastore \[42\]"):
        _image(one, "x", 42)
    with pytest.raises(InternalError, match='missing the "BASE_URL" attribute'):
        one.allocate_market("NAME = m\nMARKET_MAD = http\nPUBLIC_DIR = /srv")
    with pytest.raises(InternalError, match="MARKET_MAD"):
        one.allocate_market("NAME = m")
    with pytest.raises(ActionError, match="Create disabled for market: OpenNebula Public"):
        one.allocate_marketapp("NAME = a\nORIGIN_ID = -1\nTYPE = VMTEMPLATE", 0)
    with pytest.raises(InternalError, match="Missing ORIGIN_ID"):
        one.allocate_marketapp("NAME = a", _market(one))
    with pytest.raises(InternalError, match="No TM_MAD"):
        one.allocate_datastore("NAME = d\nDS_MAD = fs")
    with pytest.raises(InternalError, match='DS_MAD named "nope" is not defined'):
        one.allocate_datastore("NAME = d\nDS_MAD = nope\nTM_MAD = ssh")
    with pytest.raises(InternalError, match='missing the "BRIDGE_LIST" attribute'):
        one.allocate_datastore("NAME = d\nDS_MAD = ceph\nTM_MAD = ceph\nDISK_TYPE = RBD")
    with pytest.raises(InternalError, match='TM_MAD named "nope" is not defined'):
        one.allocate_datastore("NAME = d\nDS_MAD = fs\nTM_MAD = nope")
    backup = one.allocate_datastore(
        "NAME = b\nTYPE = BACKUP_DS\nDS_MAD = rsync\nRSYNC_HOST = h\nRSYNC_USER = u"
    )
    assert one.info(api.DATASTORE, backup).int("TYPE") == 3
    with pytest.raises(AllocateError, match="backup datastore"):
        _image(one, "x", backup)


# ---- pools ----------------------------------------------------------------------------------
def test_pool_filter_range_pagination(one_api: OneApi) -> None:
    one = one_api
    ids = [one.allocate_template(f"NAME = t{i}") for i in range(6)]
    user = one.allocate_user("u1", "pw")
    one.chown(api.TEMPLATE, ids[5], user, -1)

    def pool(*args: int) -> list[int]:
        return [o.id for o in one.pool(api.TEMPLATE, *args)]

    assert pool() == ids
    assert pool(api.FILTER_MINE) == ids[:5]
    assert pool(user) == [ids[5]]
    assert pool(api.FILTER_GROUP) == ids
    assert pool(api.FILTER_PRIMARY_GROUP) == ids
    assert pool(api.FILTER_ALL, 2, 4) == ids[2:5]
    assert pool(api.FILTER_ALL, 3, -1) == ids[3:]
    assert pool(api.FILTER_ALL, 0, -2) == ids[:2]
    assert pool(api.FILTER_ALL, 2, -3) == ids[2:5]
    assert pool(api.FILTER_ALL, 6, -3) == []
    with pytest.raises(ApiError, match="Incorrect filter_flag"):
        one.pool(api.TEMPLATE, -5)
    # unfiltered pools ignore filter and range
    assert [c.id for c in one.pool(api.CLUSTER, -5, 7, 8)] == [0]


@pytest.mark.parametrize("kind", api.KINDS)
def test_missing_objects_name_the_method(one_api: OneApi, kind: str) -> None:
    message_name = api.MESSAGE_NAME[kind]
    with pytest.raises(NotFoundError) as caught:
        one_api.info(kind, 4242)
    assert caught.value.message == f"[one.{kind}.info] Error getting {message_name} [4242]."
    delete = "vm.recover" if kind == api.VM else f"{kind}.delete"  # 6.x: no one.vm.delete
    with pytest.raises(NotFoundError, match=rf"^\[one\.{delete}\] Error getting"):
        one_api.delete(kind, 4242)
    with pytest.raises(NotFoundError, match=rf"^\[one\.{kind}\.update\] Error getting"):
        one_api.update(kind, 4242, "A = 1")
    if kind in (api.USER, api.GROUP):
        return  # renamed through other calls than one.<kind>.rename
    with pytest.raises(NotFoundError, match=rf"^\[one\.{kind}\.rename\] Error getting"):
        one_api.rename(kind, 4242, "x")


def test_document_pools_by_type(one_api: OneApi) -> None:
    one = one_api
    provider = one.allocate_document("NAME = p", api.DOC_PROVIDER)
    provision = one.allocate_document("NAME = q", api.DOC_PROVISION)
    assert [d.id for d in one.pool(api.DOCUMENT, doc_type=api.DOC_PROVIDER)] == [provider]
    assert [d.id for d in one.pool(api.DOCUMENT, doc_type=api.DOC_PROVISION)] == [provision]
    assert one.pool(api.DOCUMENT, doc_type=api.DOC_SERVICE) == []
    with pytest.raises(OneError):
        one.pool(api.DOCUMENT)


# ---- locks ----------------------------------------------------------------------------------
def test_lock_levels_and_blocked_operations(one_api: OneApi) -> None:
    one = one_api
    oid = one.allocate_template("NAME = t")
    one.lock(api.TEMPLATE, oid, api.LOCK_USE)
    lock = one.info(api.TEMPLATE, oid).lock
    assert lock is not None and lock["LOCKED"] == 1 and lock["OWNER"] == 0
    for operation in (
        lambda: one.update(api.TEMPLATE, oid, "A = 1"),
        lambda: one.rename(api.TEMPLATE, oid, "u"),
        lambda: one.chmod(api.TEMPLATE, oid, Permissions.from_octet("640")),
        lambda: one.chown(api.TEMPLATE, oid, -1, 1),
        lambda: one.delete(api.TEMPLATE, oid),
    ):
        with pytest.raises(LockedError, match=rf"TEMPLATE is locked\. \[{oid}\]") as caught:
            operation()
        assert isinstance(caught.value, AuthorizationError) or caught.value.code == 0x0200
    assert one.pool(api.TEMPLATE)[0].id == oid  # info and pool are never blocked
    one.unlock(api.TEMPLATE, oid)
    assert one.info(api.TEMPLATE, oid).lock is None
    one.update(api.TEMPLATE, oid, "A = 1")

    one.lock(api.TEMPLATE, oid, api.LOCK_ADMIN)  # blocks ADMIN only
    one.update(api.TEMPLATE, oid, "A = 2")
    one.rename(api.TEMPLATE, oid, "renamed")
    with pytest.raises(LockedError):
        one.chmod(api.TEMPLATE, oid, Permissions.from_octet("700"))  # an *_A bit: ADMIN
    one.lock(api.TEMPLATE, oid, api.LOCK_MANAGE)  # relock by an admin replaces the lock
    assert one.info(api.TEMPLATE, oid).lock["LOCKED"] == 2  # type: ignore[index]
    with pytest.raises(LockedError):
        one.update(api.TEMPLATE, oid, "A = 3")
    one.lock(api.TEMPLATE, oid, api.LOCK_ALL)
    assert one.info(api.TEMPLATE, oid).lock["LOCKED"] == 1  # type: ignore[index]
    with pytest.raises(ActionError, match="Wrong lock level specified"):
        one.lock(api.TEMPLATE, oid, 5)
    with pytest.raises(ActionError, match="Wrong lock level specified"):
        one.lock(api.TEMPLATE, oid, 0)


def test_lock_test_reports_lock_time(one_api: OneApi) -> None:
    oid = one_api.allocate_document("NAME = d", api.DOC_PROVISION)
    one_api.lock(api.DOCUMENT, oid, api.LOCK_ADMIN, test=True)  # not locked: taken
    held = one_api.info(api.DOCUMENT, oid).lock
    assert held is not None
    with pytest.raises(LockedError) as caught:
        one_api.lock(api.DOCUMENT, oid, api.LOCK_ADMIN, test=True)
    assert caught.value.lock_time == held["TIME"]
    assert str(held["TIME"]) in caught.value.message


def test_admin_lock_blocks_address_range_changes(one_api: OneApi) -> None:
    one = one_api
    vnet = one.allocate_vnet('NAME = n\nVN_MAD = bridge\nAR = [ TYPE = "ETHER", SIZE = 2 ]')
    one.lock(api.VNET, vnet, api.LOCK_ADMIN)
    with pytest.raises(LockedError, match=rf"NET is locked\. \[{vnet}\]"):
        one.vnet_add_ar(vnet, 'AR = [ TYPE = "ETHER", SIZE = 2 ]')
    with pytest.raises(LockedError):
        one.vnet_rm_ar(vnet, 0)
    one.update(api.VNET, vnet, "DESCRIPTION = x", merge=True)  # MANAGE: allowed
    one.unlock(api.VNET, vnet)
    one.vnet_add_ar(vnet, 'AR = [ TYPE = "ETHER", SIZE = 2 ]')


@pytest.mark.parametrize("kind", [api.CLUSTER, api.HOST, api.DATASTORE, api.MARKET])
def test_not_lockable(one_api: OneApi, kind: str) -> None:
    with pytest.raises(AuthorizationError, match="Object cannot be locked"):
        one_api.lock(kind, 0, api.LOCK_USE)


def test_lock_element_placement(one_api: OneApi) -> None:
    one = one_api
    doc = one.allocate_document("NAME = d", api.DOC_PROVIDER)
    image = _image(one)
    market = _market(one)
    app = one.allocate_marketapp("NAME = a\nORIGIN_ID = -1\nTYPE = VMTEMPLATE", market)
    for kind, oid, before in (
        (api.DOCUMENT, doc, "PERMISSIONS"),
        (api.IMAGE, image, "NAME"),
        (api.MARKETAPP, app, "GNAME"),
    ):
        one.lock(kind, oid, api.LOCK_USE)
        tags = [child.tag for child in one.info(kind, oid).root]
        assert tags[tags.index("LOCK") - 1] == before, kind


def test_synchronize(one_api: OneApi) -> None:
    one = one_api
    oid = one.allocate_document("NAME = p", api.DOC_PROVISION)
    with one.synchronize(api.DOCUMENT, oid):
        assert one.info(api.DOCUMENT, oid).lock is not None
        with (
            pytest.raises(LockedError, match="Object is locked"),
            one.synchronize(api.DOCUMENT, oid),
        ):
            pass  # a fresh lock is refused
    assert one.info(api.DOCUMENT, oid).lock is None
    # A stale lock (left by a crashed run) is taken over: timeout=0 makes any lock "old".
    one.lock(api.DOCUMENT, oid, api.LOCK_ADMIN)
    with one.synchronize(api.DOCUMENT, oid, timeout=0):
        assert one.info(api.DOCUMENT, oid).lock is not None
    assert one.info(api.DOCUMENT, oid).lock is None
    # deleting inside the block: nothing left to unlock
    one.unlock(api.DOCUMENT, oid)
    with one.synchronize(api.DOCUMENT, oid, level=api.LOCK_MANAGE):
        one.unlock(api.DOCUMENT, oid)
        one.delete(api.DOCUMENT, oid)


# ---- encrypted attributes -------------------------------------------------------------------
def test_provision_body_decrypt_semantics(one_api: OneApi) -> None:
    one = one_api
    body = {"provider": "aws", "name": "p1", "connection": {"access_key": "AKIA-SECRET-VALUE"}}
    xml = (
        '<TEMPLATE><NAME>p1</NAME><PLAIN><![CDATA[{"provider":"aws"}]]></PLAIN>'
        f"<PROVISION_BODY><![CDATA[{json.dumps(body)}]]></PROVISION_BODY></TEMPLATE>"
    )
    oid = one.allocate_document(xml, api.DOC_PROVIDER)
    stored = one.info(api.DOCUMENT, oid).template()
    assert "AKIA-SECRET-VALUE" not in stored["PROVISION_BODY"]
    assert stored["PLAIN"] == '{"provider":"aws"}'
    listed = one.pool(api.DOCUMENT, doc_type=api.DOC_PROVIDER)[0].template()
    assert "AKIA-SECRET-VALUE" not in listed["PROVISION_BODY"]
    clear = one.info(api.DOCUMENT, oid, decrypt=True).template()
    assert json.loads(clear["PROVISION_BODY"]) == body

    # update re-encrypts, merge keeps what it does not touch
    body["connection"] = {"access_key": "NEW-SECRET"}
    one.update(
        api.DOCUMENT,
        oid,
        f"<TEMPLATE><PROVISION_BODY><![CDATA[{json.dumps(body)}]]></PROVISION_BODY></TEMPLATE>",
        merge=True,
    )
    assert "NEW-SECRET" not in one.info(api.DOCUMENT, oid).xml
    again = one.info(api.DOCUMENT, oid, decrypt=True).template()
    assert json.loads(again["PROVISION_BODY"]) == body and again["PLAIN"] == '{"provider":"aws"}'

    # a value that is not a JSON object is encrypted whole
    other = one.allocate_document(
        'NAME = x\nPROVISION_BODY = "plain secret text"', api.DOC_PROVISION
    )
    assert "plain secret text" not in one.info(api.DOCUMENT, other).xml
    assert (
        one.info(api.DOCUMENT, other, decrypt=True).template()["PROVISION_BODY"]
        == "plain secret text"
    )
    # BODY (OneFlow) is never encrypted
    flow = one.allocate_document(
        'NAME = f\nBODY = "{\\"name\\":\\"f\\"}"', api.DOC_SERVICE_TEMPLATE
    )
    assert one.info(api.DOCUMENT, flow).template()["BODY"] == '{"name":"f"}'


# ---- virtual machines -----------------------------------------------------------------------
def _vm_setup(one: OneApi, tmp_path: Path) -> tuple[int, int, int, int]:
    """A host, an image with a real file, a vnet with an address range, and a VM (PENDING)
    using them; (vm, host, image, vnet)."""
    disk = tmp_path / "os.img"
    disk.write_bytes(b"os disk" * 100)
    image = one.allocate_image(f'NAME = "os"\nPATH = "{disk}"', 1)
    host = one.allocate_host("node1", "kvm", "kvm")
    vnet = one.allocate_vnet(
        'NAME = "net"\nVN_MAD = "bridge"\nAR = [ TYPE = "IP4", IP = "10.0.0.10", SIZE = "4" ]'
    )
    template = one.allocate_template('NAME = "t"\nCPU = "1"\nMEMORY = "128"')
    vm = one.allocate_vm(
        f'NAME = "vm1"\nCPU = "1"\nMEMORY = "128"\nTEMPLATE_ID = "{template}"\n'
        f'DISK = [ IMAGE_ID = "{image}" ]\nDISK = [ TYPE = "fs", SIZE = "16" ]\n'
        f'NIC = [ NETWORK_ID = "{vnet}" ]\nLABEL = "mine"'
    )
    return vm, host, image, vnet


def test_vm_allocate_builds_the_body(one_api: OneApi, tmp_path: Path) -> None:
    one = one_api
    vm_id, _host, image, vnet = _vm_setup(one, tmp_path)
    vm = one.info(api.VM, vm_id)
    assert (vm.name, vm.int("STATE"), vm.int("LCM_STATE")) == ("vm1", api.VM_PENDING, 0)
    disks = vm.root.findall("TEMPLATE/DISK")
    assert [d.findtext("DISK_ID") for d in disks] == ["0", "1"]
    assert disks[0].findtext("IMAGE_ID") == str(image) and disks[0].findtext("IMAGE") == "os"
    assert disks[0].findtext("SOURCE") == one.info(api.IMAGE, image).text("SOURCE")
    assert disks[0].findtext("DATASTORE_ID") == "1" and disks[0].findtext("CLONE") == "YES"
    assert disks[1].findtext("IMAGE_ID") is None and disks[1].findtext("TYPE") == "fs"
    nic = vm.root.find("TEMPLATE/NIC")
    assert nic is not None and nic.findtext("IP") == "10.0.0.10"
    assert nic.findtext("NETWORK") == "net" and nic.findtext("NETWORK_ID") == str(vnet)
    assert vm.text("TEMPLATE/TEMPLATE_ID") and vm.text("USER_TEMPLATE/LABEL") == "mine"
    used = one.info(api.IMAGE, image)
    assert used.int("STATE") == 2 and used.ids("VMS") == [vm_id]
    assert [v.id for v in one.pool(api.VM)] == [vm_id]
    held = one.allocate_vm('CPU = "1"\nMEMORY = "64"', hold=True)
    assert one.info(api.VM, held).int("STATE") == api.VM_HOLD
    assert one.info(api.VM, held).name == f"one-{held}"
    with pytest.raises(InternalError, match="MEMORY attribute must be a positive integer"):
        one.allocate_vm('CPU = "1"')


def test_vm_poweroff_resume_and_disksaveas(one_api: OneApi, tmp_path: Path) -> None:
    from one_xmlrpc_server import place_vm

    one = one_api
    vm_id, host, image, _vnet = _vm_setup(one, tmp_path)
    with pytest.raises(ActionError, match=r'"poweroff": Could not power off VM \d+, wrong state'):
        one.vm_action(vm_id, "poweroff")
    place_vm(one, vm_id, host)
    running = one.info(api.VM, vm_id)
    assert (running.int("STATE"), running.int("LCM_STATE")) == (api.VM_ACTIVE, api.LCM_RUNNING)
    assert one.info(api.HOST, host).ids("VMS") == [vm_id]
    with pytest.raises(ActionError, match="Could not resume VM"):
        one.vm_action(vm_id, "resume")
    with pytest.raises(ActionError, match="POWEROFF"):
        one.vm_disksaveas(vm_id, 0, "saved")
    with pytest.raises(ActionError, match='"reboot" is not supported'):
        one.vm_action(vm_id, "reboot")
    assert one.vm_action(vm_id, "poweroff") == vm_id
    assert one.wait_vm_state(vm_id, [api.VM_POWEROFF], timeout=5).int("STATE") == api.VM_POWEROFF
    saved = one.vm_disksaveas(vm_id, 0, "saved")
    copy = one.wait_image_ready(saved, timeout=5)
    assert copy.name == "saved" and copy.int("DATASTORE_ID") == 1
    assert Path(copy.text("SOURCE")).read_bytes() == b"os disk" * 100
    with pytest.raises(ActionError, match="volatile"):
        one.vm_disksaveas(vm_id, 1, "nope")
    one.vm_action(vm_id, "resume")
    assert one.info(api.VM, vm_id).int("STATE") == api.VM_ACTIVE
    one.delete(api.IMAGE, saved)
    assert not Path(copy.text("SOURCE")).exists()
    one.delete(api.VM, vm_id)
    assert one.pool(api.VM) == [] and one.info(api.IMAGE, image).int("STATE") == 1
    assert one.info(api.HOST, host).ids("VMS") == []


def test_template_clone(one_api: OneApi) -> None:
    one = one_api
    template = one.allocate_template('NAME = "t"\nCPU = "1"\nMEMORY = "64"\nDESCRIPTION = "d"')
    copy = one.clone(api.TEMPLATE, template, "t-copy")
    cloned = one.info(api.TEMPLATE, copy)
    assert cloned.name == "t-copy" and cloned.text("TEMPLATE/DESCRIPTION") == "d"
    with pytest.raises(AllocateError, match="NAME is already taken by TEMPLATE"):
        one.clone(api.TEMPLATE, template, "t-copy")
    with pytest.raises(NotFoundError, match=r"\[one\.template\.clone\] Error getting"):
        one.clone(api.TEMPLATE, 4242, "x")
