"""``onetools.market.apps`` and ``onetools.market.export`` on both backends (fixture one_api)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from onetools.errors import OnetoolsError, UsageError
from onetools.market import apps
from onetools.market.export import ExportError, export
from onetools.one.api import DOCUMENT, IMAGE, MARKETAPP, TEMPLATE, OneApi, Permissions

pytest_plugins = ["http_files"]  # the file_server fixture

TYPE_CHECKING = False
if TYPE_CHECKING:
    from http_files import FileServer, GatedFileServer

DATA = os.urandom(2 * 1024 * 1024 + 7)
MD5 = hashlib.md5(DATA).hexdigest()
PRIVATE_MARKET = 'NAME = "private"\nMARKET_MAD = "http"\nBASE_URL = "http://m"\nPUBLIC_DIR = "/x"'


def store_home(one: OneApi, tmp_path: Path) -> Path:
    # Both backends of one_fixtures keep their LocalOne in tmp_path / "onetools-home".
    return Path(getattr(one, "home", tmp_path / "onetools-home"))


def publish(home: Path, app_id: int, source: str, md5: str, size_mb: int = 3) -> None:
    """What a market driver's IMPORT reply or the monitor writes: SOURCE, MD5, SIZE, FORMAT.
    No API call sets them, so the test writes the stored body (the store is SQLite)."""
    from onetools.one import bodies
    from onetools.one.local import LocalOne

    store = LocalOne(home)
    try:
        with store._write() as db:
            root = store._load(db, MARKETAPP, app_id, "test")
            for key, value in (("SOURCE", source), ("MD5", md5), ("SIZE", size_mb)):
                bodies.set_text(root, key, value)
            bodies.set_text(root, "FORMAT", "qcow2")
            store._save(db, MARKETAPP, app_id, root)
    finally:
        store.close()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def market(one_api: OneApi) -> int:
    return one_api.allocate_market(PRIVATE_MARKET)


def image_app(
    one: OneApi,
    market: int,
    tmp_path: Path,
    name: str = "alpine",
    vmtemplate: str | None = None,
    image_type: str = "OS",
) -> int:
    local = tmp_path / f"{name}.img"
    local.write_bytes(b"x" * 1024)
    image = one.allocate_image(
        f'NAME = "{name}-src"\nPATH = "{local}"\nTYPE = "{image_type}"\nDEV_PREFIX = "vd"',
        1 if image_type not in ("KERNEL", "CONTEXT", "RAMDISK") else 2,
    )
    template = apps.image_app_template(one, image, name=name, vmtemplate=vmtemplate)
    return apps.create(one, market, template)


# -- create and the rest ----------------------------------------------------------------------
def test_create_image_app_from_image(one_api: OneApi, market: int, tmp_path: Path) -> None:
    app_id = image_app(one_api, market, tmp_path)
    app = apps.show(one_api, app_id)
    assert apps.type_name(app) == "IMAGE"
    assert app.int("MARKETPLACE_ID") == market
    # the image's TYPE and DEV_PREFIX travel with the app (the original wrote neither)
    fragment = apps.decode64(app.text("APPTEMPLATE64"))
    assert 'TYPE = "OS"' in fragment and 'DEV_PREFIX = "vd"' in fragment


def test_create_refused_on_public_market(one_api: OneApi, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not accept new apps"):
        apps.create(one_api, 0, 'NAME = "x"\nORIGIN_ID = "0"')
    assert apps.list_apps(one_api) == []


def test_create_checks_template(one_api: OneApi, market: int) -> None:
    with pytest.raises(UsageError, match="needs the image"):
        apps.create(one_api, market, 'NAME = "x"\nTYPE = "IMAGE"')
    with pytest.raises(UsageError, match="Unknown app TYPE"):
        apps.create(one_api, market, 'NAME = "x"\nTYPE = "VM"')


def test_vmtemplate_app_from_template(one_api: OneApi, market: int) -> None:
    vnet = one_api.allocate_vnet('NAME = "net"\nVN_MAD = "dummy"\nBRIDGE = "br0"')
    template_id = one_api.allocate_template(
        'NAME = "web"\nCPU = "1"\nMEMORY = "512"\nDISK = [ IMAGE_ID = "0" ]\n'
        f'NIC = [ NETWORK_ID = "{vnet}", MODEL = "virtio" ]'
    )
    text = apps.vmtemplate_app_template(one_api, template_id, "web-app", ["alpine"])
    app_id = apps.create(one_api, market, text)
    app = apps.show(one_api, app_id)
    assert apps.type_name(app) == "VMTEMPLATE" and apps.state_name(app) == "READY"
    body = apps.decode64(app.text("TEMPLATE/APPTEMPLATE64") or app.text("APPTEMPLATE64"))
    assert "DISK" not in body and "NETWORK_ID" not in body
    assert 'NETWORK_MODE = "auto"' in body and 'MODEL = "virtio"' in body
    assert app.text("TEMPLATE/DISK/APP") == "alpine"


def test_update_rename_chmod_enable_lock(one_api: OneApi, market: int, tmp_path: Path) -> None:
    app_id = image_app(one_api, market, tmp_path)
    apps.update(one_api, app_id, 'DESCRIPTION = "new"\nSOURCE = "http://evil"', append=True)
    app = apps.show(one_api, app_id)
    assert app.text("DESCRIPTION") == "new"
    assert app.text("TEMPLATE/SOURCE") == ""  # not changeable by update
    apps.rename(one_api, app_id, "renamed")
    apps.chmod(one_api, app_id, Permissions.from_octet("640"))
    app = apps.show(one_api, app_id)
    assert app.name == "renamed" and app.permissions == Permissions.from_octet("640")
    apps.enable(one_api, app_id, False)
    assert apps.state_name(apps.show(one_api, app_id)) == "DISABLED"
    with pytest.raises(ExportError, match="is not READY"):
        export(one_api, app_id, "x", 1)
    apps.enable(one_api, app_id, True)
    apps.lock(one_api, app_id, 2)
    assert apps.summary(apps.show(one_api, app_id))["LOCK"] == "Manage"
    with pytest.raises(OnetoolsError):
        apps.rename(one_api, app_id, "blocked")
    apps.unlock(one_api, app_id)
    apps.delete(one_api, app_id)
    assert apps.list_apps(one_api) == []


def test_size_text() -> None:
    assert [apps.size_text(v) for v in (256, 2048, 1536, 0)] == ["256M", "2G", "1.5G", "0M"]


# -- export ---------------------------------------------------------------------------------
def test_export_image_app(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    vm = 'CPU = "1"\nMEMORY = "768"\nCONTEXT = [ NETWORK = "YES" ]'
    app_id = image_app(one_api, market, tmp_path, vmtemplate=vm)
    url = file_server.add("/alpine.qcow2", DATA)
    publish(store_home(one_api, tmp_path), app_id, url, MD5)
    result = export(one_api, app_id, "alpine-local", 1)
    (image_id,) = result.images
    (template_id,) = result.vmtemplates
    image = one_api.info(IMAGE, image_id)
    assert image.name == "alpine-local" and image.int("STATE") == 1
    assert image.text("TEMPLATE/FROM_APP") == str(app_id)
    if one_api.backend_name == "embedded":
        # the file really is in the datastore's directory, verified
        source = Path(image.text("SOURCE"))
        assert source.parent == store_home(one_api, tmp_path) / "datastores" / "1"
        assert hashlib.md5(source.read_bytes()).hexdigest() == MD5
    else:
        assert image.text("PATH") == url  # oned's datastore driver fetches it
    vmt = one_api.info(TEMPLATE, template_id)
    assert vmt.name == "alpine-local"
    assert vmt.text("TEMPLATE/DISK/IMAGE_ID") == str(image_id)
    assert vmt.text("TEMPLATE/MEMORY") == "768"
    # a second export of the same name does not clash
    again = export(one_api, app_id, "alpine-local", 1, template=False)
    assert one_api.info(IMAGE, again.images[0]).name == "alpine-local_1"
    assert again.vmtemplates == []


def test_export_checksum_mismatch_leaves_nothing(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    if one_api.backend_name != "embedded":
        pytest.skip("on a front-end oned's datastore driver checks the file")
    app_id = image_app(one_api, market, tmp_path)
    publish(store_home(one_api, tmp_path), app_id, file_server.add("/a", DATA), "0" * 32)
    images_before = [i.id for i in one_api.pool(IMAGE)]
    with pytest.raises(ExportError, match=r"failed at the image of app .*MD5 mismatch"):
        export(one_api, app_id, "bad", 1)
    assert [i.id for i in one_api.pool(IMAGE)] == images_before
    assert list((store_home(one_api, tmp_path) / "datastores" / "1").iterdir()) == []


def test_failing_vm_template_part_deletes_the_image(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    # A VM template oned refuses (its NAME is too long) after the image was created.
    app_id = image_app(one_api, market, tmp_path, vmtemplate='CPU = "1"')
    publish(store_home(one_api, tmp_path), app_id, file_server.add("/a", DATA), MD5)
    images_before = [i.id for i in one_api.pool(IMAGE)]
    with pytest.raises(ExportError, match=r"failed at the VM template .*deleted .*image"):
        export(one_api, app_id, "ok", 1, vmname="x" * 300)
    assert [i.id for i in one_api.pool(IMAGE)] == images_before
    assert one_api.pool(TEMPLATE) == []
    if one_api.backend_name == "embedded":
        assert list((store_home(one_api, tmp_path) / "datastores" / "1").iterdir()) == []


def test_export_vmtemplate_and_service_apps(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    home = store_home(one_api, tmp_path)
    disk_app = image_app(one_api, market, tmp_path, name="disk")
    publish(home, disk_app, file_server.add("/disk", DATA), MD5)
    kernel_app = image_app(one_api, market, tmp_path, name="vmlinuz", image_type="KERNEL")
    publish(home, kernel_app, file_server.add("/kernel", DATA), MD5)
    vm_app = apps.create(
        one_api,
        market,
        'NAME = "vm"\nTYPE = "VMTEMPLATE"\n'
        f'APPTEMPLATE64 = "{b64("CPU = 1" + chr(10) + "MEMORY = 256")}"\n'
        'DISK = [ NAME = "OS_0", APP = "disk" ]\nDISK = [ NAME = "KERNEL_1", APP = "vmlinuz" ]',
    )
    result = export(one_api, vm_app, "site", 1)
    assert len(result.images) == 2 and len(result.vmtemplates) == 1
    disk_image, kernel_image = (one_api.info(IMAGE, i) for i in result.images)
    assert disk_image.name == "site-disk-OS_0-0"
    assert kernel_image.int("DATASTORE_ID") == 2  # KERNEL goes to the FILE datastore
    vmt = one_api.info(TEMPLATE, result.vmtemplates[0])
    assert vmt.text("TEMPLATE/DISK/IMAGE_ID") == str(disk_image.id)
    assert vmt.text("TEMPLATE/OS/KERNEL_DS") == f'$FILE[IMAGE_ID="{kernel_image.id}"]'

    body = {"name": "svc", "roles": [{"name": "front", "vm_template": 99}]}
    service_app = apps.create(
        one_api,
        market,
        f'NAME = "svc"\nTYPE = "SERVICE_TEMPLATE"\nAPPTEMPLATE64 = "{b64(json.dumps(body))}"\n'
        'ROLE = [ NAME = "front", APP = "vm" ]',
    )
    result = export(one_api, service_app, "shop", 1)
    (doc_id,) = result.service_templates
    document = one_api.info(DOCUMENT, doc_id)
    stored = json.loads(document.text("TEMPLATE/BODY"))
    assert stored["name"] == "shop"
    assert stored["roles"][0]["vm_template"] == result.vmtemplates[0]
    assert one_api.info(TEMPLATE, result.vmtemplates[0]).name == "shop-front-0"


def test_failing_child_rolls_back_siblings(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    home = store_home(one_api, tmp_path)
    good = image_app(one_api, market, tmp_path, name="good")
    publish(home, good, file_server.add("/good", DATA), MD5)
    vm_app = apps.create(
        one_api,
        market,
        'NAME = "vm"\nTYPE = "VMTEMPLATE"\nAPPTEMPLATE64 = "' + b64("CPU = 1") + '"\n'
        'DISK = [ NAME = "A", APP = "good" ]\nDISK = [ NAME = "B", APP = "missing" ]',
    )
    images_before = [i.id for i in one_api.pool(IMAGE)]
    with pytest.raises(ExportError, match=r"disk B .*App 'missing' not found"):
        export(one_api, vm_app, "site", 1)
    assert [i.id for i in one_api.pool(IMAGE)] == images_before
    assert one_api.pool(TEMPLATE) == []
    # every child is looked up before any file is fetched
    assert file_server.requests == []


def test_chown_refused_in_public_market(one_api: OneApi, market: int, tmp_path: Path) -> None:
    from onetools.one import bodies
    from onetools.one.local import LocalOne

    app_id = image_app(one_api, market, tmp_path)
    uid = one_api.allocate_user("alice", "pw")
    apps.chown(one_api, app_id, uid)  # a private market's app changes owner
    assert apps.show(one_api, app_id).uid == uid
    # An app of the public OpenNebula market (monitoring writes those; here the body is moved).
    store = LocalOne(store_home(one_api, tmp_path))
    try:
        with store._write() as db:
            root = store._load(db, MARKETAPP, app_id, "test")
            bodies.set_text(root, "MARKETPLACE_ID", 0)
            store._save(db, MARKETAPP, app_id, root)
    finally:
        store.close()
    with pytest.raises(UsageError, match="public marketplace"):
        apps.chown(one_api, app_id, 0)
    assert apps.show(one_api, app_id).uid == uid
    apps.chown(one_api, app_id, -1, 0)  # the group still may change


def test_export_with_base_template(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    app_id = image_app(one_api, market, tmp_path)  # no VMTEMPLATE64
    publish(store_home(one_api, tmp_path), app_id, file_server.add("/a", DATA), MD5)
    base = one_api.allocate_template('NAME = "base"\nCPU = "2"\nMEMORY = "1024"')
    result = export(one_api, app_id, "img", 1, vmname="vm", base_template=base)
    (template_id,) = result.vmtemplates
    vmt = one_api.info(TEMPLATE, template_id)
    assert vmt.name == "vm" and vmt.text("TEMPLATE/MEMORY") == "1024"
    assert vmt.text("TEMPLATE/DISK/IMAGE_ID") == str(result.images[0])
    assert vmt.text("TEMPLATE/FROM_APP") == ""  # image attributes stay out of it
    none = export(one_api, app_id, "img2", 1, base_template=-1)
    assert none.vmtemplates == [] and len(none.images) == 1


def test_interrupted_export_rolls_back(
    one_api: OneApi,
    market: int,
    tmp_path: Path,
    file_server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C while the VM template is being built, after the image exists.
    from onetools.market import export as export_module

    app_id = image_app(one_api, market, tmp_path, vmtemplate='CPU = "1"')
    publish(store_home(one_api, tmp_path), app_id, file_server.add("/a", DATA), MD5)
    images_before = [i.id for i in one_api.pool(IMAGE)]

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "wire_images", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(one_api, app_id, "img", 1)
    assert [i.id for i in one_api.pool(IMAGE)] == images_before


# -- parallel downloads of a VMTEMPLATE app's disks ------------------------------------------
def four_disk_app(
    one: OneApi, market: int, tmp_path: Path, server: FileServer, bad: str | None = None
) -> tuple[int, list[bytes]]:
    """A VMTEMPLATE app with four disks, each its own IMAGE app and file on ``server``; the
    disk named ``bad`` gets a wrong MD5 ("404": its file is not published)."""
    home = store_home(one, tmp_path)
    contents = []
    for index in range(4):
        name = f"d{index}"
        data = os.urandom(1024 * 1024 + index)
        contents.append(data)
        child = image_app(one, market, tmp_path, name=name)
        md5 = "0" * 32 if bad == name else hashlib.md5(data).hexdigest()
        url = (
            server.url(f"/{name}") if bad == "404" and index == 2 else server.add(f"/{name}", data)
        )
        publish(home, child, url, md5)
    disks = "\n".join(f'DISK = [ NAME = "D{i}", APP = "d{i}" ]' for i in range(4))
    app = apps.create(
        one,
        market,
        f'NAME = "quad"\nTYPE = "VMTEMPLATE"\nAPPTEMPLATE64 = "{b64("CPU = 1")}"\n{disks}',
    )
    return app, contents


def test_vmtemplate_disks_download_concurrently(
    one_api: OneApi, market: int, tmp_path: Path, gated_file_server: GatedFileServer
) -> None:
    if one_api.backend_name != "embedded":
        pytest.skip("on a front-end oned's datastore drivers fetch the files")
    app, contents = four_disk_app(one_api, market, tmp_path, gated_file_server)
    reports: list[tuple[int, int | None]] = []
    result = export(one_api, app, "site", 1, progress=lambda d, t: reports.append((d, t)))
    # the server held each GET until two were in flight: they overlapped
    assert gated_file_server.max_in_flight >= 2
    assert len(gated_file_server.requests) == 4
    names = [one_api.info(IMAGE, i).name for i in result.images]
    assert names == [f"site-d{i}-D{i}-{i}" for i in range(4)]
    for image_id, data in zip(result.images, contents, strict=True):
        image = one_api.info(IMAGE, image_id)
        assert Path(image.text("SOURCE")).read_bytes() == data
    vmt = one_api.info(TEMPLATE, result.vmtemplates[0])
    wired = [d.findtext("IMAGE_ID") for d in vmt.root.findall("TEMPLATE/DISK")]
    assert wired == [str(i) for i in result.images]
    # one aggregate: it ends at the sum of the four files
    assert reports[-1] == (sum(map(len, contents)), sum(map(len, contents)))
    directory = store_home(one_api, tmp_path) / "datastores" / "1"
    assert not [p for p in directory.iterdir() if p.name.endswith(".part")]


def test_parallel_and_sequential_export_give_the_same_names(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    app, _ = four_disk_app(one_api, market, tmp_path, file_server)
    one_api.allocate_image(f'NAME = "site-d1-D1-1"\nPATH = "{tmp_path / "d1.img"}"', 1)
    first = export(one_api, app, "site", 1, parallel=1)
    second = export(one_api, app, "site", 1)
    first_names = [one_api.info(IMAGE, i).name for i in first.images]
    second_names = [one_api.info(IMAGE, i).name for i in second.images]
    assert first_names == ["site-d0-D0-0", "site-d1-D1-1_1", "site-d2-D2-2", "site-d3-D3-3"]
    assert second_names == ["site-d0-D0-0_1", "site-d1-D1-1_2", "site-d2-D2-2_1", "site-d3-D3-3_1"]
    assert [one_api.info(TEMPLATE, t).name for t in first.vmtemplates + second.vmtemplates] == [
        "site",
        "site_1",
    ]
    with pytest.raises(ExportError, match="Invalid parallel 0"):
        export(one_api, app, "site", 1, parallel=0)


@pytest.mark.parametrize("bad", ["d1", "404"])
def test_failed_parallel_download_leaves_nothing(
    one_api: OneApi,
    market: int,
    tmp_path: Path,
    gated_file_server: GatedFileServer,
    bad: str,
) -> None:
    if one_api.backend_name != "embedded":
        pytest.skip("on a front-end oned's datastore drivers fetch the files")
    app, _ = four_disk_app(one_api, market, tmp_path, gated_file_server, bad=bad)
    images_before = [i.id for i in one_api.pool(IMAGE)]
    failing = "d1" if bad == "d1" else "d2"
    problem = "MD5 mismatch" if bad == "d1" else "HTTP 404"
    with pytest.raises(
        ExportError, match=rf"failed at the image of app \d+ \({failing}\): .*{problem}"
    ) as caught:
        export(one_api, app, "site", 1)
    assert "deleted" not in str(caught.value)  # nothing had been allocated yet
    assert [i.id for i in one_api.pool(IMAGE)] == images_before
    assert one_api.pool(TEMPLATE) == []
    assert list((store_home(one_api, tmp_path) / "datastores" / "1").iterdir()) == []


def test_interrupted_parallel_download_leaves_nothing(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    # Ctrl-C while the disks download: the other downloads are stopped, nothing stays.
    if one_api.backend_name != "embedded":
        pytest.skip("on a front-end oned's datastore drivers fetch the files")
    app, _ = four_disk_app(one_api, market, tmp_path, file_server)
    images_before = [i.id for i in one_api.pool(IMAGE)]

    def interrupted(done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(one_api, app, "site", 1, progress=interrupted)
    assert [i.id for i in one_api.pool(IMAGE)] == images_before
    assert one_api.pool(TEMPLATE) == []
    assert list((store_home(one_api, tmp_path) / "datastores" / "1").iterdir()) == []
    assert [t for t in threading.enumerate() if t.name.startswith("export-download")] == []
