"""Marketplace apps of a provision (oneprovision.md §2.9, §4.2 step 15, §4.7 step 6) on both
backends: the export of an app with a real file (served by ``http_files``) into the
provision's image datastore is recorded under images/templates with ``PROVISION/ID``, delete
removes what it created (not the app); a failing export goes through the fail modes and leaves
nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from onetools.one import api
from onetools.one.api import OneApi
from onetools.provision import lifecycle
from onetools.provision.failmode import StepFailed
from test_market_apps import DATA, MD5, image_app, market, publish, store_home
from test_provision_lifecycle import (
    ONPREM,
    CrashAfter,
    Killed,
    ScriptedUi,
    batch,
    create,
    plan_of,
    provision_leftovers,
)

pytest_plugins = ["http_files"]  # the file_server fixture

TYPE_CHECKING = False
if TYPE_CHECKING:
    from http_files import FileServer

__all__ = ["market"]  # the fixture, imported


def with_apps(*entries: str) -> str:
    apps = "".join(f"  - {entry}\n" for entry in entries)
    return ONPREM.replace("\ntemplates:\n", f"\nmarketplaceapps:\n{apps}templates:\n", 1)


def served_app(one: OneApi, market: int, tmp_path: Path, server: Any) -> int:
    vm = 'CPU = "1"\nMEMORY = "256"'
    app_id = image_app(one, market, tmp_path, vmtemplate=vm)
    url = server.add("/alpine.qcow2", DATA)
    publish(store_home(one, tmp_path), app_id, url, MD5)
    return app_id


def test_exported_app_is_recorded_and_delete_removes_it(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    app_id = served_app(one_api, market, tmp_path, file_server)
    text = with_apps(
        "{appname: alpine, name: '${provision}-alpine', dsid: '${datastore.0.id}'}",
        f"{{appid: {app_id}, name: second, dsid: 1, vmname: second-vm}}",
    )
    ui = ScriptedUi()
    provision = create(one_api, plan_of(tmp_path, text), ui)
    assert provision.state_name == "RUNNING"
    images = {e["name"]: int(e["id"]) for e in provision.entries("resource", "images")}
    templates = {e["name"]: int(e["id"]) for e in provision.entries("resource", "templates")}
    assert set(images) == {"edge-img", "edge-alpine", "second"}
    assert set(templates) == {"edge-vm", "edge-alpine", "second-vm"}
    datastore = int(provision.entries("infrastructure", "datastores")[0]["id"])
    image = one_api.info(api.IMAGE, images["edge-alpine"])
    assert image.int("DATASTORE_ID") == datastore
    assert image.int("STATE") == 1
    for oid in (images["edge-alpine"], images["second"]):
        assert one_api.info(api.IMAGE, oid).text("TEMPLATE/PROVISION/ID") == str(provision.id)
    vmt = one_api.info(api.TEMPLATE, templates["second-vm"])
    assert vmt.text("TEMPLATE/PROVISION/ID") == str(provision.id)
    assert vmt.text("TEMPLATE/DISK/IMAGE_ID") == str(images["second"])
    assert provision.meta["done"]["marketplaceapps/0"] == images["edge-alpine"]
    assert "pending" not in provision.meta

    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    # the app and the image it was made from are not the provision's
    assert provision_leftovers(one_api) == {"images": ["alpine-src"]}
    assert [a.id for a in one_api.pool(api.MARKETAPP)] == [app_id]


def test_unknown_app_retries_then_cleans_up(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    text = with_apps("{appname: nosuch, dsid: '${datastore.0.id}'}")
    with pytest.raises(StepFailed, match="cleaned up"):
        create(one_api, plan_of(tmp_path, text), ui, batch("retry", "cleanup", retries=1))
    errors = ui.errors("Failed to export marketplace app nosuch")
    assert len(errors) == 3
    assert provision_leftovers(one_api) == {}


def test_failed_export_rolls_back_then_cleanup_leaves_nothing(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    # the image is made, the VM template (a name the store refuses) is not: the export
    # deletes the image, the provision cleans up the rest
    served_app(one_api, market, tmp_path, file_server)
    ui = ScriptedUi()
    text = with_apps(f"{{appname: alpine, name: ok, vmname: {'x' * 300}, dsid: 1}}")
    with pytest.raises(StepFailed, match="cleaned up"):
        create(one_api, plan_of(tmp_path, text), ui, batch("cleanup"))
    assert ui.errors("Failed to export marketplace app alpine")
    assert provision_leftovers(one_api) == {"images": ["alpine-src"]}


def test_skip_records_nothing(one_api: OneApi, tmp_path: Path) -> None:
    ui = ScriptedUi()
    text = with_apps("{appname: nosuch, dsid: 1}")
    provision = create(one_api, plan_of(tmp_path, text), ui, batch("skip"))
    assert provision.state_name == "RUNNING"
    assert provision.meta["done"]["marketplaceapps/0"] == "skipped"
    assert [e["name"] for e in provision.entries("resource", "images")] == ["edge-img"]


def test_a_crash_inside_the_export_then_resume_exports_once(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    # killed while the export makes the VM template (after its image): the export deletes the
    # image on the way out, the pending record names no object, resume exports again
    served_app(one_api, market, tmp_path, file_server)
    ui = ScriptedUi()
    text = with_apps("{appname: alpine, name: '${provision}-alpine', dsid: '${datastore.0.id}'}")
    with pytest.raises(Killed):
        create(CrashAfter(one_api, "allocate_template"), plan_of(tmp_path, text), ui)  # type: ignore[arg-type]
    (provision,) = lifecycle.list_provisions(one_api)
    pending = provision.body["onetools"]["pending"]
    assert pending["key"] == "marketplaceapps/0" and "created" not in pending
    assert "edge-alpine" not in provision_leftovers(one_api)["images"]
    resumed = lifecycle.resume(one_api, provision.id, ui, batch())
    assert resumed.state_name == "RUNNING"
    names = sorted(e["name"] for e in resumed.entries("resource", "images"))
    assert names == ["edge-alpine", "edge-img"]
    leftovers = sorted(provision_leftovers(one_api)["images"])
    assert leftovers == ["alpine-src", "edge-alpine", "edge-img"]
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {"images": ["alpine-src"]}


def test_delete_after_a_crash_inside_the_export_leaves_nothing(
    one_api: OneApi, market: int, tmp_path: Path, file_server: FileServer
) -> None:
    served_app(one_api, market, tmp_path, file_server)
    ui = ScriptedUi()
    text = with_apps("{appname: alpine, name: '${provision}-alpine', dsid: '${datastore.0.id}'}")
    with pytest.raises(Killed):
        create(CrashAfter(one_api, "allocate_template"), plan_of(tmp_path, text), ui)  # type: ignore[arg-type]
    (provision,) = lifecycle.list_provisions(one_api)
    lifecycle.delete(one_api, provision.id, lifecycle.DeleteOptions(), ui, batch())
    assert provision_leftovers(one_api) == {"images": ["alpine-src"]}
