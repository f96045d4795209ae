"""Catalog monitors on real-shaped data and ``refresh`` reconciling a market's apps.

The public catalogs (marketplace.opennebula.io, images.linuxcontainers.org, Docker Hub,
the TurnKey mirror) cannot be reached from the test machines: their responses are served
from loopback (``catalog_server``), from the real samples in ``market-samples`` where they
exist.  The docker_registry driver runs against the real Debian ``docker-registry``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from market_servers import CatalogServer, DockerRegistry, free_port, make_oci_layout
from onetools.market import monitor
from onetools.market.drivers import _catalog, dockerhub, linuxcontainers, one, turnkeylinux
from onetools.market.drivers import docker_registry as registry_driver
from onetools.market.drivers._catalog import CatalogError
from onetools.one.api import MARKET, MARKETAPP
from onetools.one.local import LocalOne
from onetools.one.template import parse

ARCHES = ("amd64", "arm64")
SAMPLES = SHARED_DATA / "market-samples"
ONE_610 = SAMPLES / "one-market" / "appliance.rendered-ua-6.10.json"
LXC_IMAGES = SAMPLES / "linuxcontainers" / "tast-tests-crostini.images.json"
CHR_IMAGES = SAMPLES / "linuxcontainers" / "kriszos-chr.streams-v1-images.json"
CHR_INDEX = SAMPLES / "linuxcontainers" / "kriszos-chr.streams-v1-index.json"


def appliance(oid: str, name: str, **extra: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "_id": {"$oid": oid},
        "name": name,
        "version": "1.0",
        "short_description": f"{name} app",
        "files": [{"size": 3 * 1024 * 1024 + 1, "md5": "a" * 32, "sha256": "b" * 64, "type": "OS"}],
        "opennebula_template": json.dumps({"CPU": 1, "MEMORY": "512"}),
    }
    entry.update(extra)
    return entry


def serve_one(server: CatalogServer, entries: list[dict[str, object]], path: str = "") -> str:
    server.json(f"{path}/appliance", {"sEcho": 1, "appliances": entries})
    return server.url + path + "/"


@pytest.fixture
def store(tmp_path: Path) -> LocalOne:
    return LocalOne(tmp_path / "home")


def point(store: LocalOne, market_id: int, endpoint: str) -> None:
    store.update(MARKET, market_id, f'ENDPOINT = "{endpoint}"', merge=True)


def apps_of(store: LocalOne, market_id: int) -> dict[str, int]:
    return {
        app.name: app.id for app in store.pool(MARKETAPP) if app.int("MARKETPLACE_ID") == market_id
    }


# -- drivers ------------------------------------------------------------------------------------
def test_one_driver_reads_the_real_marketplace_listing(catalog_server: CatalogServer) -> None:
    catalog_server.file("/appliance", ONE_610)
    result = one.monitor({"ENDPOINT": catalog_server.url + "/"})
    listed = json.loads(ONE_610.read_text())["appliances"]
    # Every real appliance is accepted (one has a CRLF in its description).
    assert (len(result.apps), result.warnings) == (len(listed), [])
    assert catalog_server.requests == ["/appliance"]  # no double slash
    by_type = {app.type for app in result.apps}
    assert by_type == {"IMAGE", "VMTEMPLATE", "SERVICE_TEMPLATE"}
    image = next(a for a in result.apps if a.type == "IMAGE" and a.md5 and a.vmtemplate64)
    entry = next(e for e in listed if e["_id"]["$oid"] == image.origin)
    assert image.size_mb == -(-entry["files"][0]["size"] // (1 << 20))
    assert image.source == f"{catalog_server.url}/appliance/{image.origin}/download/0"
    assert "TYPE" in parse(base64.b64decode(image.apptemplate64).decode()).attributes[-1][0]
    vm = parse(base64.b64decode(image.vmtemplate64).decode())
    assert vm.get("MEMORY")
    assert {a.architecture for a in result.apps} >= {"x86_64", "aarch64", "all"}
    assert {a.hypervisor for a in result.apps} == {"kvm", "firecracker"}
    template_app = next(a for a in result.apps if a.type == "VMTEMPLATE" and a.disks)
    assert template_app.size_mb == 0
    service = next(a for a in result.apps if a.type == "SERVICE_TEMPLATE")
    assert service.roles
    json.loads(base64.b64decode(service.apptemplate64))


def test_one_driver_keeps_numbers_in_templates(catalog_server: CatalogServer) -> None:
    # 6.0.0 dropped VMTEMPLATE64 when a value was a number (§10.1 item 8).
    endpoint = serve_one(catalog_server, [appliance("a1", "Alpine")])
    (app,) = one.monitor({"ENDPOINT": endpoint}).apps
    vm = parse(base64.b64decode(app.vmtemplate64).decode())
    assert (vm.get("CPU"), vm.get("MEMORY")) == ("1", "512")
    assert app.size_mb == 4 and app.md5 == "a" * 32


def test_linuxcontainers_reads_simplestreams(catalog_server: CatalogServer) -> None:
    catalog_server.json(
        "/streams/v1/index.json",
        {"index": {"images": {"datatype": "image-downloads", "path": "streams/v1/images.json"}}},
    )
    catalog_server.file("/streams/v1/images.json", LXC_IMAGES)
    result = linuxcontainers.monitor({"ENDPOINT": catalog_server.url})
    products = json.loads(LXC_IMAGES.read_text())["products"]
    expected = {k for k in products if k.endswith(":default") and k.split(":")[2] in ARCHES}
    assert {app.origin for app in result.apps} == expected
    app = next(a for a in result.apps if a.origin == "debian:buster:amd64:default")
    assert app.name == "debian_buster"
    assert any(a.name == "debian_buster (aarch64)" for a in result.apps)
    item = products[app.origin]["versions"]["20200304_22:10"]["items"]["rootfs.tar.xz"]
    assert app.sha256 == item["sha256"]
    assert app.source.startswith(f"lxd://{catalog_server.url}/{item['path']}?size=2048")
    assert "HYPERVISOR=lxc" in base64.b64decode(app.vmtemplate64).decode()


def test_linuxcontainers_skips_vm_image_streams(catalog_server: CatalogServer) -> None:
    # An incus-simplestreams server of VM disks: nothing is a container rootfs.
    catalog_server.file("/streams/v1/index.json", CHR_INDEX)
    catalog_server.file("/streams/v1/images.json", CHR_IMAGES)
    assert linuxcontainers.monitor({"ENDPOINT": catalog_server.url}).apps == []


def test_dockerhub_follows_pages_of_any_namespace(catalog_server: CatalogServer) -> None:
    base = "/v2/repositories/bitnami/"
    page2 = f"{catalog_server.url}{base}?page=2"
    catalog_server.json(
        f"{base}?page_size=100",
        {
            "count": 3,
            "next": page2,
            "results": [
                {"name": "redis", "description": "Redis", "last_updated": "2024-05-01T10:00:00Z"},
                {"name": "nginx", "description": "nginx", "last_updated": "2024-04-01T10:00:00Z"},
            ],
        },
    )
    catalog_server.json(
        f"{base}?page=2",
        {"next": None, "results": [{"name": "bad name!", "description": "x"}]},
    )
    result = dockerhub.monitor({"ENDPOINT": catalog_server.url + base})
    assert [a.name for a in result.apps] == ["bitnami_redis", "bitnami_nginx"]
    assert result.apps[0].source == "docker://bitnami/redis?size=2048&filesystem=ext4&format=raw"
    assert result.apps[0].md5 == ""  # no synthetic checksum
    assert len(result.warnings) == 1 and "bad name!" in result.warnings[0]


def test_turnkeylinux_reads_the_autoindex(catalog_server: CatalogServer) -> None:
    listing = "".join(
        f'<a href="{name}">{name}</a> 2024-01-01 10:00 200M\n'
        for name in (
            "debian-11-turnkey-wordpress_17.1-1_amd64.tar.gz",
            "debian-12-turnkey-wordpress_18.0-1_amd64.tar.gz",
            "debian-12-turnkey-wordpress_18.0-1_amd64.tar.gz.hash",
            "debian-8-turnkey-lamp_14.0-1_amd64.tar.gz",
            "debian-12-turnkey-gitea_18.1-1_amd64.tar.gz",
        )
    )
    catalog_server.routes["/proxmox/"] = (
        200,
        {"Content-Type": "text/html"},
        f"<html><body><pre>{listing}</pre></body></html>".encode(),
    )
    result = turnkeylinux.monitor({"ENDPOINT": catalog_server.url + "/proxmox/"})
    assert [(a.name, a.version) for a in result.apps] == [
        ("gitea - LXD", "18.1-1"),
        ("wordpress - LXD", "18.0-1"),
    ]
    assert result.apps[1].description == "Based on debian-12"


def test_docker_registry_lists_the_real_registry(
    docker_registry: DockerRegistry, tmp_path: Path
) -> None:
    layout = make_oci_layout(tmp_path / "oci")
    docker_registry.push_oci(layout, "tools/hello", "1.0")
    docker_registry.push_oci(layout, "tools/hello", "latest")
    docker_registry.push_oci(layout, "alpine", "3.20")
    found = registry_driver.monitor({"BASE_URL": docker_registry.url})
    assert sorted((a.origin, a.name) for a in found.apps) == [
        ("alpine:3.20", "alpine_3.20"),
        ("tools/hello:1.0", "tools_hello_1.0"),
        ("tools/hello:latest", "tools_hello_latest"),
    ]
    app = next(a for a in found.apps if a.origin == "alpine:3.20")
    assert app.source.startswith(f"docker://{docker_registry.host}/alpine:3.20?size=")


# -- hostile catalogs ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (appliance("h1", "evil/name"), "characters oned refuses"),
        (appliance("h2", "cost $5"), "characters oned refuses"),
        (appliance("h3", "bell\x07name"), "control characters"),
        (appliance("h4", "ok", version='1"\nSOURCE="http://evil/'), "control characters"),
        (
            appliance("h5", "ok2", opennebula_template=json.dumps({"CPU ]\nX": "1"})),
            "not a valid name",
        ),
        (appliance("h6", "ok3", files=[{"md5": "not-hex"}]), "hex digest"),
    ],
)
def test_hostile_entries_are_refused_one_line_each(
    catalog_server: CatalogServer, entry: dict[str, object], reason: str
) -> None:
    endpoint = serve_one(catalog_server, [appliance("good", "Good"), entry])
    result = one.monitor({"ENDPOINT": endpoint})
    assert [a.name for a in result.apps] == ["Good"]
    (warning,) = result.warnings
    assert reason in warning and "\n" not in warning


def test_quotes_cannot_inject_attributes(catalog_server: CatalogServer) -> None:
    endpoint = serve_one(
        catalog_server, [appliance("q", "Quoted", short_description='x" SOURCE="evil')]
    )
    (app,) = one.monitor({"ENDPOINT": endpoint}).apps
    parsed = parse(_catalog.template_text(app.attributes()))
    assert parsed.get("DESCRIPTION") == 'x" SOURCE="evil'
    assert parsed.get_all("SOURCE") == [app.source]


def test_failures_are_one_clear_error(catalog_server: CatalogServer) -> None:
    catalog_server.redirect("/loop/appliance", catalog_server.url + "/loop/appliance")
    with pytest.raises(CatalogError, match="redirect"):
        one.monitor({"ENDPOINT": catalog_server.url + "/loop/"})
    catalog_server.routes["/huge/appliance"] = (
        200,
        {"Content-Length": str(_catalog.MAX_RESPONSE_BYTES + 1)},
        b"{}",
    )
    with pytest.raises(CatalogError, match="more than"):
        one.monitor({"ENDPOINT": catalog_server.url + "/huge/"})
    with pytest.raises(CatalogError, match="Cannot fetch"):
        one.monitor({"ENDPOINT": f"http://127.0.0.1:{free_port()}/"})
    catalog_server.routes["/html/appliance"] = (200, {}, b"<html></html>")
    with pytest.raises(CatalogError, match="not JSON"):
        one.monitor({"ENDPOINT": catalog_server.url + "/html/"})
    with pytest.raises(CatalogError, match="HTTP 404"):
        one.monitor({"ENDPOINT": catalog_server.url + "/nothing/"})


def test_huge_body_without_length_is_refused(
    catalog_server: CatalogServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_catalog, "MAX_RESPONSE_BYTES", 1000)
    monkeypatch.setattr(_catalog.fetch, "__defaults__", (None, 1000, _catalog.TIMEOUT))
    serve_one(catalog_server, [appliance(f"x{i}", f"App {i}") for i in range(50)])
    status, _headers, body = catalog_server.routes["/appliance"]
    catalog_server.routes["/appliance"] = (status, {"X-No-Length": "1"}, body)  # read to EOF
    with pytest.raises(CatalogError, match="more than the 1000 bytes"):
        one.monitor({"ENDPOINT": catalog_server.url + "/"})


# -- refresh ------------------------------------------------------------------------------------
def test_refresh_adds_updates_removes(store: LocalOne, catalog_server: CatalogServer) -> None:
    endpoint = serve_one(catalog_server, [appliance("a", "Alpine"), appliance("d", "Debian")])
    point(store, 0, endpoint)
    report = monitor.refresh(store, 0)
    assert len(report.added) == 2 and not report.removed
    first = apps_of(store, 0)
    assert set(first) == {"Alpine", "Debian"}
    alpine = store.info(MARKETAPP, first["Alpine"])
    assert alpine.text("MD5") == "a" * 32 and alpine.int("SIZE") == 4
    assert alpine.text("TEMPLATE/ONETOOLS_ORIGIN") == "a"
    assert alpine.text("TEMPLATE/SHA256") == "b" * 64  # what download and export verify
    assert alpine.int("STATE") == 1 and alpine.permissions is not None
    assert alpine.permissions.octet() == "644"
    market = store.info(MARKET, 0)
    assert market.text("TEMPLATE/ONETOOLS_MONITOR_TIME").isdigit()
    assert market.text("TEMPLATE/ENDPOINT") == endpoint
    assert sorted(market.ids("MARKETPLACEAPPS")) == sorted(first.values())

    serve_one(
        catalog_server,
        [appliance("a", "Alpine", version="2.0"), appliance("u", "Ubuntu")],
    )
    report = monitor.refresh(store, 0)
    second = apps_of(store, 0)
    assert set(second) == {"Alpine", "Ubuntu"}
    assert report.updated == [first["Alpine"]] and second["Alpine"] == first["Alpine"]
    assert report.removed == [first["Debian"]]
    assert store.info(MARKETAPP, first["Alpine"]).text("VERSION") == "2.0"

    report = monitor.refresh(store, 0)
    assert sorted(report.unchanged) == sorted(second.values())
    assert not (report.added or report.updated or report.removed)


def test_same_named_apps_in_two_markets(store: LocalOne, catalog_server: CatalogServer) -> None:
    point(store, 0, serve_one(catalog_server, [appliance("x", "Alpine")], "/m0"))
    point(store, 1, serve_one(catalog_server, [appliance("x", "Alpine")], "/m1"))
    # market 1 is linuxcontainers by default: make it a second `one` catalog
    store.update(MARKET, 1, 'MARKET_MAD = "one"', merge=True)
    monitor.refresh(store, 0)
    monitor.refresh(store, 1)
    assert apps_of(store, 0) == {"Alpine": apps_of(store, 0)["Alpine"]}
    assert list(apps_of(store, 1)) == ["Alpine (Linux Containers)"]
    monitor.refresh(store, 0)  # refreshing one market leaves the other's apps alone
    assert list(apps_of(store, 1)) == ["Alpine (Linux Containers)"]
    assert len(store.pool(MARKETAPP)) == 2


def test_failed_refresh_keeps_previous_apps(store: LocalOne, catalog_server: CatalogServer) -> None:
    point(store, 0, serve_one(catalog_server, [appliance("a", "Alpine")]))
    monitor.refresh(store, 0)
    before = [app.xml for app in store.pool(MARKETAPP)]
    stamp = store.info(MARKET, 0).text("TEMPLATE/ONETOOLS_MONITOR_TIME")
    catalog_server.routes["/appliance"] = (500, {}, b"boom")
    with pytest.raises(CatalogError, match=r"Market 0 .* apps are kept: .*HTTP 500"):
        monitor.refresh(store, 0)
    serve_one(catalog_server, [appliance("bad", "bad/name")])
    with pytest.raises(CatalogError, match="no usable app"):
        monitor.refresh(store, 0)
    assert [app.xml for app in store.pool(MARKETAPP)] == before
    assert store.info(MARKET, 0).text("TEMPLATE/ONETOOLS_MONITOR_TIME") == stamp


def test_refresh_linuxcontainers_market(store: LocalOne, catalog_server: CatalogServer) -> None:
    catalog_server.json("/streams/v1/index.json", {"index": {}})
    catalog_server.file("/streams/v1/images.json", LXC_IMAGES)
    point(store, 1, catalog_server.url)
    report = monitor.refresh(store, 1)
    assert len(report.added) == len(apps_of(store, 1)) > 0
    assert "debian_buster" in apps_of(store, 1)


def test_refresh_stale_only_touches_refreshed_old_markets(
    store: LocalOne, catalog_server: CatalogServer
) -> None:
    point(store, 0, serve_one(catalog_server, [appliance("a", "Alpine")]))
    warnings: list[str] = []
    assert monitor.refresh_stale(store, warnings.append) == []  # never refreshed: left alone
    monitor.refresh(store, 0)
    assert monitor.refresh_stale(store, warnings.append) == []  # fresh
    import time

    assert monitor.refresh_stale(store, warnings.append, now=time.time() + 601) == [0]
    catalog_server.routes["/appliance"] = (500, {}, b"")
    assert monitor.refresh_stale(store, warnings.append, now=time.time() + 601) == []
    assert len(warnings) == 1 and "HTTP 500" in warnings[0]


def test_refresh_refuses_private_markets_and_front_ends(store: LocalOne) -> None:
    oid = store.allocate_market(
        'NAME="p"\nMARKET_MAD="http"\nBASE_URL="http://x/"\nPUBLIC_DIR="/d"'
    )
    with pytest.raises(monitor.MonitorUnsupported, match="no catalog"):
        monitor.refresh(store, oid)
    store.enable(MARKET, 0, False)
    with pytest.raises(monitor.MonitorUnsupported, match="is disabled"):
        monitor.refresh(store, 0)


def test_silent_server_times_out() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/appliance"
        with pytest.raises(CatalogError, match=r"no answer within 0.5 s|timed out"):
            _catalog.fetch(url, timeout=0.5)


def test_non_http_endpoints_are_refused() -> None:
    with pytest.raises(CatalogError, match="only http and https"):
        one.monitor({"ENDPOINT": "file:///etc/"})


def test_refresh_docker_registry_market(
    store: LocalOne, docker_registry: DockerRegistry, tmp_path: Path
) -> None:
    docker_registry.push_oci(make_oci_layout(tmp_path / "oci"), "alpine", "3.20")
    # The store's allocate knows only the 6.10 drivers: turn market 1 into a registry catalog.
    store.update(
        MARKET, 1, f'MARKET_MAD = "docker_registry"\nBASE_URL = "{docker_registry.url}"', True
    )
    report = monitor.refresh(store, 1)
    assert apps_of(store, 1) == {"alpine_3.20": report.added[0]}
    app = store.info(MARKETAPP, report.added[0])
    assert app.text("SOURCE").startswith(f"docker://{docker_registry.host}/alpine:3.20?")
    assert app.text("TEMPLATE/ONETOOLS_ORIGIN") == "alpine:3.20"


def test_every_registered_driver_has_a_monitor() -> None:
    import importlib

    from onetools.market.drivers import REGISTRY

    for mad, module_name in REGISTRY.items():
        module = importlib.import_module(module_name)
        assert callable(module.monitor), mad
        assert module_name.rsplit(".", 1)[-1] == mad


def test_refresh_of_the_real_listing_is_stable(
    store: LocalOne, catalog_server: CatalogServer
) -> None:
    catalog_server.file("/appliance", ONE_610)
    point(store, 0, catalog_server.url + "/")
    first = monitor.refresh(store, 0)
    listed = len(json.loads(ONE_610.read_text())["appliances"])
    assert len(first.added) == listed == len(apps_of(store, 0))
    again = monitor.refresh(store, 0)  # nothing changed upstream: nothing is rewritten
    assert sorted(again.unchanged) == sorted(first.added)
    assert not (again.added or again.updated or again.removed)
    service = next(a for a in store.pool(MARKETAPP) if a.int("TYPE") == 3)
    assert service.has("TEMPLATE/ROLE") and service.int("STATE") == 1
