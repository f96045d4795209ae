"""``onetools.market.import_`` on both backends (fixture one_api), and the CLI's import commands.

The http driver may copy the image into PUBLIC_DIR at once (the app READY) or only allocate
the app: the tests look at the apps and their templates, never at the files.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import run_tool
from onetools.errors import OnetoolsError, UsageError
from onetools.market import apps
from onetools.market.import_ import (
    MarketImportError,
    import_service_template,
    import_vm_template,
)
from onetools.one.api import DOC_SERVICE_TEMPLATE, IMAGE, MARKETAPP, OneApi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def http_market(one: OneApi, tmp_path: Path) -> int:
    public = tmp_path / "public"
    public.mkdir(exist_ok=True)
    return one.allocate_market(
        f'NAME = "private"\nMARKET_MAD = "http"\nBASE_URL = "http://127.0.0.1:1/m"\n'
        f'PUBLIC_DIR = "{public}"'
    )


def image(one: OneApi, tmp_path: Path, name: str, image_type: str = "OS") -> int:
    path = tmp_path / f"{name}.img"
    path.write_bytes(b"x" * 4096)
    datastore = 2 if image_type in ("KERNEL", "RAMDISK", "CONTEXT") else 1
    return one.allocate_image(
        f'NAME = "{name}"\nPATH = "{path}"\nTYPE = "{image_type}"\nDEV_PREFIX = "vd"', datastore
    )


def web_template(one: OneApi, tmp_path: Path, name: str = "web") -> int:
    """A VM template with an OS image by ID, a DATABLOCK by name, a volatile disk, a NIC."""
    os_image = image(one, tmp_path, f"{name}-os")
    image(one, tmp_path, f"{name}-data", "DATABLOCK")
    vnet = one.allocate_vnet(f'NAME = "{name}-net"\nVN_MAD = "dummy"\nBRIDGE = "br0"')
    return one.allocate_template(
        f'NAME = "{name}"\nCPU = "1"\nMEMORY = "512"\n'
        f'DISK = [ IMAGE_ID = "{os_image}" ]\n'
        f'DISK = [ IMAGE = "{name}-data", IMAGE_UNAME = "oneadmin" ]\n'
        'DISK = [ TYPE = "fs", SIZE = "1024" ]\n'
        f'NIC = [ NETWORK_ID = "{vnet}", IP = "10.0.0.5", MAC = "02:00:0a:00:00:05", '
        'MODEL = "virtio" ]'
    )


def app_names(one: OneApi) -> list[str]:
    return sorted(app.name for app in one.pool(MARKETAPP))


def app_body(app: Any) -> str:
    return apps.decode64(app.text("TEMPLATE/APPTEMPLATE64") or app.text("APPTEMPLATE64"))


def disks(app: Any) -> list[tuple[str, str]]:
    return [
        (disk.findtext("NAME") or "", disk.findtext("APP") or "")
        for disk in app.root.findall("TEMPLATE/DISK")
    ]


# -- vm-template import ---------------------------------------------------------------------
def test_vm_template_with_images(one_api: OneApi, tmp_path: Path) -> None:
    market = http_market(one_api, tmp_path)
    template_id = web_template(one_api, tmp_path)
    result = import_vm_template(one_api, template_id, market, import_all=True)
    assert len(result.image_apps) == 2 and len(result.vmtemplate_apps) == 1
    assert result.ids == [*result.image_apps, *result.vmtemplate_apps]
    os_app, data_app = (apps.show(one_api, oid) for oid in result.image_apps)
    assert re.fullmatch(r"web-os-[0-9a-f]{10}", os_app.name)
    assert apps.type_name(os_app) == "IMAGE" and os_app.text("ORIGIN_ID") != "-1"
    assert 'TYPE = "DATABLOCK"' in app_body(data_app)
    vm_app = apps.show(one_api, result.vmtemplate_apps[0])
    assert re.fullmatch(r"web-[0-9a-f]{10}", vm_app.name) and vm_app.name == result.name
    assert apps.type_name(vm_app) == "VMTEMPLATE"
    # the volatile disk (index 2) has no app; labels are <IMAGETYPE>_<disk index>
    assert disks(vm_app) == [("OS_0", os_app.name), ("DATABLOCK_1", data_app.name)]
    body = app_body(vm_app)
    assert "DISK" not in body and "NETWORK_ID" not in body
    assert "10.0.0.5" not in body and "02:00:0a" not in body
    assert 'NETWORK_MODE = "auto"' in body and 'MODEL = "virtio"' in body


def test_vm_template_without_images_has_no_dangling_apps(one_api: OneApi, tmp_path: Path) -> None:
    market = http_market(one_api, tmp_path)
    template_id = web_template(one_api, tmp_path)
    asked: list[bool] = []

    def prompt() -> bool:
        asked.append(True)
        return False

    result = import_vm_template(one_api, template_id, market, import_all=prompt, name="mine")
    assert asked == [True]
    assert result.image_apps == [] and result.name == "mine"
    vm_app = apps.show(one_api, result.vmtemplate_apps[0])
    assert vm_app.name == "mine" and disks(vm_app) == []
    assert app_names(one_api) == ["mine"]


def test_vm_template_refused_markets(one_api: OneApi, tmp_path: Path) -> None:
    template_id = one_api.allocate_template('NAME = "t"\nCPU = "1"\nMEMORY = "64"')
    with pytest.raises(UsageError, match="no http/s3 marketplaces"):
        import_vm_template(one_api, template_id, 0)
    http_market(one_api, tmp_path)
    with pytest.raises(UsageError, match=r"not an http/s3 marketplace; use one of \d+ \(private\)"):
        import_vm_template(one_api, template_id, 0)


def test_image_not_ready_rolls_back_and_names_the_disk(one_api: OneApi, tmp_path: Path) -> None:
    market = http_market(one_api, tmp_path)
    first = image(one_api, tmp_path, "first")
    second = image(one_api, tmp_path, "second")
    one_api.enable(IMAGE, second, False)
    template_id = one_api.allocate_template(
        f'NAME = "t"\nCPU = "1"\nMEMORY = "64"\nDISK = [ IMAGE_ID = "{first}" ]\n'
        f'DISK = [ IMAGE_ID = "{second}" ]'
    )
    with pytest.raises(MarketImportError, match=r"disk 1 of VM template .* is DISABLED"):
        import_vm_template(one_api, template_id, market)
    assert app_names(one_api) == []  # the first disk's app is gone again


def test_unknown_image_name(one_api: OneApi, tmp_path: Path) -> None:
    market = http_market(one_api, tmp_path)
    template_id = one_api.allocate_template(
        'NAME = "t"\nCPU = "1"\nMEMORY = "64"\nDISK = [ IMAGE = "nope" ]'
    )
    with pytest.raises(MarketImportError, match="Image nope of user oneadmin not found"):
        import_vm_template(one_api, template_id, market)


def test_template_app_failure_removes_image_apps(one_api: OneApi, tmp_path: Path) -> None:
    market = http_market(one_api, tmp_path)
    template_id = web_template(one_api, tmp_path)
    taken = import_vm_template(one_api, template_id, market, import_all=False, name="taken")
    with pytest.raises(MarketImportError, match=r"failed: VM template \d+ \(web\)"):
        import_vm_template(one_api, template_id, market, import_all=True, name="taken")
    assert app_names(one_api) == ["taken"]
    assert [app.id for app in one_api.pool(MARKETAPP)] == taken.ids


def failing_deletes(one: OneApi) -> OneApi:
    """The same API (same connection, same class) except that deleting apps fails, as when
    someone else locked them: a subclass on a shallow copy, so nothing else changes."""
    from onetools.one.errors import LockedError

    def delete(
        self: OneApi, kind: str, oid: int, force: bool = False, recursive: bool = False
    ) -> int:
        raise LockedError(f"[one.marketapp.delete] {kind} {oid} is locked")

    failing = copy.copy(one)
    failing.__class__ = type("FailingDeletes", (type(one),), {"delete": delete})
    return failing


def test_rollback_failure_is_reported(one_api: OneApi, tmp_path: Path) -> None:
    market = http_market(one_api, tmp_path)
    template_id = web_template(one_api, tmp_path)
    import_vm_template(one_api, template_id, market, import_all=False, name="taken")
    failing = failing_deletes(one_api)
    with pytest.raises(MarketImportError) as caught:
        import_vm_template(failing, template_id, market, import_all=True, name="taken")
    message = str(caught.value)
    assert "rollback incomplete" in message
    assert len(re.findall(r"app \d+ could not be deleted: [^;]*locked", message)) == 2


# -- service-template import ----------------------------------------------------------------
def service(one: OneApi, roles: list[dict[str, Any]], name: str = "svc") -> int:
    body = json.dumps({"name": name, "deployment": "straight", "roles": roles})
    return one.allocate_document(
        f"NAME = {json.dumps(name)}\nBODY = {json.dumps(body)}", DOC_SERVICE_TEMPLATE
    )


@pytest.mark.parametrize("with_images", [True, False])
def test_service_template(one_api: OneApi, tmp_path: Path, with_images: bool) -> None:
    market = http_market(one_api, tmp_path)
    web = web_template(one_api, tmp_path, "web")
    db = one_api.allocate_template('NAME = "db"\nCPU = "1"\nMEMORY = "64"')
    doc = service(
        one_api,
        [
            {"name": "front", "vm_template": web, "cardinality": 2},
            {"name": "worker", "template_id": web},
            {"name": "db", "vm_template": db},
        ],
    )
    result = import_service_template(one_api, doc, market, import_all=with_images)
    # each distinct VM template once, every created ID reported
    assert len(result.image_apps) == (2 if with_images else 0)
    assert len(result.vmtemplate_apps) == 2 and len(result.service_apps) == 1
    assert len(app_names(one_api)) == len(result.ids)
    service_app = apps.show(one_api, result.service_apps[0])
    assert apps.type_name(service_app) == "SERVICE_TEMPLATE"
    assert re.fullmatch(r"svc-[0-9a-f]{10}", service_app.name)
    web_app, db_app = (apps.show(one_api, oid).name for oid in result.vmtemplate_apps)
    roles = [
        (role.findtext("NAME"), role.findtext("APP"))
        for role in service_app.root.findall("TEMPLATE/ROLE")
    ]
    assert roles == [("front", web_app), ("worker", web_app), ("db", db_app)]
    body = json.loads(app_body(service_app))
    assert [r.get("vm_template", r.get("template_id")) for r in body["roles"]] == [-1, -1, -1]
    assert body["roles"][0]["cardinality"] == 2
    web_disks = disks(apps.show(one_api, result.vmtemplate_apps[0]))
    assert len(web_disks) == (2 if with_images else 0)


def test_imported_without_images_exports(one_api: OneApi, tmp_path: Path) -> None:
    # The original's --no apps named image apps that did not exist: their export failed.
    from onetools.market.export import export
    from onetools.one.api import DOCUMENT, TEMPLATE

    market = http_market(one_api, tmp_path)
    web = web_template(one_api, tmp_path, "web")
    doc = service(one_api, [{"name": "front", "vm_template": web}])
    result = import_service_template(one_api, doc, market, import_all=False)
    exported = export(one_api, result.service_apps[0], "copy", 1)
    assert exported.images == [] and len(exported.vmtemplates) == 1
    (document_id,) = exported.service_templates
    body = json.loads(one_api.info(DOCUMENT, document_id).text("TEMPLATE/BODY"))
    assert body["roles"][0]["vm_template"] == exported.vmtemplates[0]
    copied = one_api.info(TEMPLATE, exported.vmtemplates[0])
    assert copied.text("TEMPLATE/MEMORY") == "512" and copied.text("TEMPLATE/DISK") == ""


@pytest.fixture
def served_public_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """PUBLIC_DIR served over HTTP at BASE_URL, as a web server in front of an http market."""
    public = tmp_path / "served"
    public.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # no request lines in the test output

    handler = functools.partial(Quiet, directory=str(public))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield public, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_imported_with_images_exports(
    one_api: OneApi, tmp_path: Path, served_public_dir: tuple[Path, str]
) -> None:
    # On the embedded store we are the market driver (the file goes to PUBLIC_DIR); on a
    # front-end oned's drivers copy it, which the test server does not do.
    if one_api.backend_name != "embedded":
        pytest.skip("on a front-end oned's market driver copies the file")
    from onetools.market.export import export
    from onetools.one.api import TEMPLATE

    public, base_url = served_public_dir
    market = one_api.allocate_market(
        f'NAME = "served"\nMARKET_MAD = "http"\nBASE_URL = "{base_url}"\nPUBLIC_DIR = "{public}"'
    )
    result = import_vm_template(one_api, web_template(one_api, tmp_path), market)
    for oid in result.image_apps:
        app = apps.show(one_api, oid)
        if apps.state_name(app) != "READY" or not app.text("SOURCE"):
            pytest.skip("the http driver did not publish the file at once")
    exported = export(one_api, result.vmtemplate_apps[0], "copy", 1)
    assert len(exported.images) == 2 and len(exported.vmtemplates) == 1
    copied = one_api.info(TEMPLATE, exported.vmtemplates[0])
    assert [d.findtext("IMAGE_ID") for d in copied.root.findall("TEMPLATE/DISK")] == [
        str(i) for i in exported.images
    ]
    types = [one_api.info(IMAGE, i).int("TYPE") for i in exported.images]
    assert types == [0, 2]  # OS, DATABLOCK: the APPTEMPLATE64 of the image apps


def test_interrupt_rolls_back(one_api: OneApi, tmp_path: Path) -> None:
    # Ctrl-C during the template app's allocation: the image apps are deleted, the
    # KeyboardInterrupt goes on.
    market = http_market(one_api, tmp_path)
    template_id = web_template(one_api, tmp_path)
    real = type(one_api).allocate_marketapp

    def allocate(self: OneApi, template: str, market_id: int) -> int:
        if 'TYPE = "VMTEMPLATE"' in template:
            raise KeyboardInterrupt
        return real(self, template, market_id)

    interrupted = copy.copy(one_api)
    interrupted.__class__ = type("Interrupted", (type(one_api),), {"allocate_marketapp": allocate})
    with pytest.raises(KeyboardInterrupt):
        import_vm_template(interrupted, template_id, market)
    assert app_names(one_api) == []


def test_service_failure_rolls_back_everything(one_api: OneApi, tmp_path: Path) -> None:
    market = http_market(one_api, tmp_path)
    web = web_template(one_api, tmp_path, "web")
    broken = one_api.allocate_template(
        'NAME = "broken"\nCPU = "1"\nMEMORY = "64"\nDISK = [ IMAGE = "missing" ]'
    )
    doc = service(
        one_api, [{"name": "front", "vm_template": web}, {"name": "b", "vm_template": broken}]
    )
    with pytest.raises(MarketImportError, match=r"role b: disk 0 of VM template .*missing"):
        import_service_template(one_api, doc, market)
    assert app_names(one_api) == []


def test_service_bad_documents(one_api: OneApi, tmp_path: Path) -> None:
    market = http_market(one_api, tmp_path)
    with pytest.raises(UsageError, match="has no roles"):
        import_service_template(one_api, service(one_api, [], "empty"), market)
    doc = service(one_api, [{"name": "x"}], "noref")
    with pytest.raises(UsageError, match=r"Role x of service template .* has no VM template"):
        import_service_template(one_api, doc, market)
    with pytest.raises(OnetoolsError):
        import_service_template(one_api, 999, market)
    assert app_names(one_api) == []


# -- CLI --------------------------------------------------------------------------------------
def test_cli_imports(tmp_path: Path) -> None:
    from onetools.one.local import LocalOne

    home = tmp_path / "home"
    store = LocalOne(home)
    try:
        market = http_market(store, tmp_path)
        template_id = web_template(store, tmp_path)
        doc = service(store, [{"name": "front", "vm_template": template_id}])
    finally:
        store.close()
    env = {"ONETOOLS_HOME": str(home)}

    def tool(*args: str, stdin: str | None = None) -> Any:
        return run_tool("onemarketapp", *args, env=env, stdin=stdin)

    done = tool("vm-template", "import", "web", "--market", str(market), "--yes", "--vmname", "w")
    assert done.code == 0, done.err
    assert re.fullmatch(r"(ID: \d+\n){3}", done.out)

    done = tool("vm-template", "import", str(template_id), "--market", str(market), "--no")
    assert done.code == 0 and re.fullmatch(r"ID: \d+\n", done.out)

    # no --yes/--no: asked on stdin until yes or no; an empty answer is yes
    done = tool("vm-template", "import", "web", "--market", str(market), stdin="maybe\n\n")
    assert done.code == 0, done.err
    assert done.out.count("Do you want to import images too?") == 2
    assert done.out.count("ID: ") == 3

    done = tool("service-template", "import", str(doc), "--market", str(market), "--no")
    assert done.code == 0, done.err
    assert re.fullmatch(r"(ID: \d+\n){2}", done.out)

    # a failure: exit 255, one ERROR line, nothing printed as created, nothing left behind
    listing = tool("list", "-j")
    before = listing.out
    done = tool("vm-template", "import", "web", "--market", str(market), "--yes", "--vmname", "w")
    assert done.code == 255 and done.out == ""
    assert done.err.startswith("ERROR : Import of VM template") and "rollback" not in done.err
    assert tool("list", "-j").out == before

    done = tool("vm-template", "import", "web", "--market", "0", "--yes")
    assert done.code == 255 and "not an http/s3 marketplace" in done.err
    done = tool("vm-template", "import", "web", "--yes", "--no", "--market", str(market))
    assert done.code == 255
    done = tool("vm-template", "import", "web", "--yes", stdin="")
    assert done.code == 255 and "--market" in done.err


def test_cli_market_prompt_lists_private_markets(tmp_path: Path) -> None:
    from onetools.one.local import LocalOne

    home = tmp_path / "home"
    store = LocalOne(home)
    try:
        market = http_market(store, tmp_path)
        store.allocate_template('NAME = "t"\nCPU = "1"\nMEMORY = "64"')
    finally:
        store.close()
    done = run_tool(
        "onemarketapp",
        "vm-template",
        "import",
        "t",
        "--no",
        stdin="0\n\n",
        env={"ONETOOLS_HOME": str(home)},
    )
    assert done.code == 0, done.err
    assert "Available Marketplaces (please enter ID)" in done.out
    assert f"- {market}: private" in done.out
    assert done.out.count("Where do you want to import the VM template?") == 2


def test_cli_list_refreshes_stale_markets(tmp_path: Path) -> None:
    # market 0 last refreshed long ago, its catalog unreachable: list refreshes it (as
    # onemarket list does), warns on stderr and still lists
    from onetools.one.api import MARKET
    from onetools.one.local import LocalOne

    home = tmp_path / "home"
    store = LocalOne(home)
    try:
        store.update(
            MARKET, 0, 'ENDPOINT = "http://127.0.0.1:1/"\nONETOOLS_MONITOR_TIME = "1"', merge=True
        )
    finally:
        store.close()
    done = run_tool("onemarketapp", "list", "-j", env={"ONETOOLS_HOME": str(home)})
    assert done.code == 0, done.err
    assert done.err.startswith("WARN") and "Market 0" in done.err
    json.loads(done.out)
