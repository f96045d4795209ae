"""Publishing local objects as marketplace apps (reference/onemarketapp.md §6.1, §6.2).

``import_vm_template(one, template_id, market_id)`` creates one IMAGE app per image disk of the
VM template (unless images are not imported) and then the VMTEMPLATE app whose
``DISK=[NAME, APP]`` entries name those apps; ``import_service_template(one, doc_id,
market_id)`` does that for every distinct VM template of the service's roles and then creates
the SERVICE_TEMPLATE app (APPTEMPLATE64 = the service JSON, one ``ROLE=[NAME, APP]`` per role).

Fixed on purpose (§10.1 items 2 and 3):

* without images (``--no``) the VMTEMPLATE app has **no** DISK entries: the original kept
  ``DISK=[APP=…]`` lines naming apps it never created, and exporting them failed;
* volatile disks (no IMAGE/IMAGE_ID) are skipped, not a crash;
* an image that is not READY/USED is an error (the original logged it, rolled back and exited
  0), and an image that is LOCKED (still being copied) is waited for: if it does not become
  READY in time the import fails instead of going on;
* NICs lose IP, MAC and the other addresses of the source cloud, not only their network;
* without images the service's roles are still linked to their VMTEMPLATE apps (the original
  lost the mapping), every role's template is imported once and every created app's ID is
  returned (the original printed only the last role's), and APPTEMPLATE64 no longer carries the
  source cloud's VM template IDs (``-1`` there; export puts the new IDs in);
* any failure deletes **every** app the import created and raises one ``MarketImportError``
  naming the part that failed; if deleting one of them fails too, the error says which app was
  left behind and why (the original ignored rollback errors).

``import_vm(one, vm_id, market_id)`` (§6.3) saves the VM as a VM template and imports that;
fixed on purpose: a running VM is powered off (and waited for) and resumed afterwards, instead
of refusing it ("VM must be POWEROFF"); the saved template and images are always deleted
(the original left them, also on failure); with ``--no`` no disk is saved at all, so the VM is
not even powered off; a failure also deletes the apps, and a failed cleanup step is an error.
"""

from __future__ import annotations

import json
import secrets

from onetools.errors import OnetoolsError, UsageError
from onetools.one.api import DOC_SERVICE_TEMPLATE, DOCUMENT, FILTER_ALL, IMAGE, MARKET
from onetools.one.api import TEMPLATE as VM_TEMPLATE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from onetools.one.api import OneApi
    from onetools.one.template import Template
    from onetools.one.xml import OneObject

#: Image states (one.image.info STATE) an image can be published from, and the one waited for.
IMAGE_STATE_NAMES = {
    0: "INIT",
    1: "READY",
    2: "USED",
    3: "DISABLED",
    4: "LOCKED",
    5: "ERROR",
    6: "CLONE",
    7: "DELETE",
    8: "USED_PERS",
    9: "LOCKED_USED",
    10: "LOCKED_USED_PERS",
}
USABLE_IMAGE_STATES = frozenset({1, 2, 8})
LOCKED_IMAGE_STATES = frozenset({4, 9, 10})
#: How long a LOCKED image (its file still being copied) is waited for, in seconds.
IMAGE_WAIT_SECONDS = 300.0
#: NIC attributes that only make sense in the source cloud (its networks and leases).
NIC_SOURCE_KEYS = ("IP", "IP6", "IP6_GLOBAL", "IP6_ULA", "MAC", "AR_ID", "BRIDGE", "VN_MAD")


class MarketImportError(OnetoolsError):
    """An import that did not complete; the apps it had created are deleted (or the message
    says which could not be)."""


class Imported:
    """What an import created: app IDs in creation order, and the main app's name."""

    def __init__(self) -> None:
        self.image_apps: list[int] = []
        self.vmtemplate_apps: list[int] = []
        self.service_apps: list[int] = []
        self.name = ""

    @property
    def ids(self) -> list[int]:
        """Every created app: image apps, then VM template apps, then the service app."""
        return [*self.image_apps, *self.vmtemplate_apps, *self.service_apps]


class _PartFailed(Exception):
    def __init__(self, part: str, error: OnetoolsError) -> None:
        super().__init__(part)
        self.part = part
        self.error = error


def private_markets(one: OneApi) -> list[OneObject]:
    """The markets apps can be imported into (MARKET_MAD http or s3), by ID."""
    from onetools.market.apps import PRIVATE_MADS

    markets = [m for m in one.pool(MARKET) if m.text("MARKET_MAD") in PRIVATE_MADS]
    return sorted(markets, key=lambda market: market.id)


def check_market(one: OneApi, market_id: int) -> OneObject:
    """The market, if it is a private one; else a ``UsageError`` listing the private ones."""
    markets = private_markets(one)
    if not markets:
        raise UsageError("There are no http/s3 marketplaces")
    for market in markets:
        if market.id == market_id:
            return market
    choices = ", ".join(f"{m.id} ({m.name})" for m in markets)
    raise UsageError(f"Marketplace {market_id} is not an http/s3 marketplace; use one of {choices}")


def _suffixed(name: str) -> str:
    # As the original: <name>-<10 hex>, so importing the same object twice does not clash.
    return f"{name}-{secrets.token_hex(5)}"


def _decide(import_all: bool | Callable[[], bool]) -> bool:
    return import_all if isinstance(import_all, bool) else bool(import_all())


class _Importer:
    """One import: the apps it created, so that a failure removes all of them."""

    def __init__(self, one: OneApi, market_id: int) -> None:
        self.one = one
        self.market_id = market_id
        self.created: list[int] = []
        self._images: list[OneObject] | None = None

    def allocate(self, template: str) -> int:
        from onetools.market.apps import create

        oid = create(self.one, self.market_id, template)
        self.created.append(oid)
        return oid

    def rollback(self) -> list[str]:
        """Delete the created apps, newest first; one line per app that could not be."""
        from onetools.market.apps import delete

        failures = []
        for oid in reversed(self.created):
            try:
                delete(self.one, oid)  # with the driver's file, where we are the driver
            except OnetoolsError as exc:
                failures.append(f"app {oid} could not be deleted: {exc.log_line()}")
        self.created.clear()
        return failures

    def run(self, what: str, work: Callable[[], Imported]) -> Imported:
        try:
            return work()
        except _PartFailed as failed:
            message = f"Import of {what} failed: {failed.part}: {failed.error.log_line()}"
            error: OnetoolsError = failed.error
        except OnetoolsError as exc:
            message = f"Import of {what} failed: {exc.log_line()}"
            error = exc
        except BaseException:
            # Ctrl-C or a bug: still leave no half-made import behind, then let it through.
            self.rollback()
            raise
        left = self.rollback()
        if left:
            message += "; rollback incomplete: " + "; ".join(left)
        raise MarketImportError(message) from error

    # -- images ------------------------------------------------------------------------------
    def find_image(self, disk: dict[str, str], owner: str) -> int | None:
        """The image a DISK uses (by IMAGE_ID, or IMAGE + IMAGE_UNAME); None when volatile."""
        if disk.get("IMAGE_ID", "").strip():
            try:
                return int(disk["IMAGE_ID"])
            except ValueError:
                raise UsageError(f"IMAGE_ID '{disk['IMAGE_ID']}' is not a number") from None
        name = disk.get("IMAGE", "").strip()
        if not name:
            return None
        uname = disk.get("IMAGE_UNAME", "").strip() or owner
        if self._images is None:
            self._images = self.one.pool(IMAGE, FILTER_ALL)
        for image in self._images:
            if image.name == name and image.uname == uname:
                return image.id
        raise UsageError(f"Image {name} of user {uname} not found")

    def ready_image(self, image_id: int) -> OneObject:
        image = self.one.info(IMAGE, image_id)
        state = image.int("STATE")
        if state in LOCKED_IMAGE_STATES:
            image = self.one.wait_image_ready(image_id, timeout=IMAGE_WAIT_SECONDS)
        elif state not in USABLE_IMAGE_STATES:
            state_name = IMAGE_STATE_NAMES.get(state, str(state))
            raise UsageError(
                f"Image {image_id} ({image.name}) is {state_name}: only READY or USED images "
                "can be imported"
            )
        return image

    # -- VM templates ------------------------------------------------------------------------
    def vm_template(self, template_id: int, import_images: bool, name: str | None) -> Imported:
        from onetools.market.apps import IMAGE_TYPE_NAMES, image_app_template

        result = Imported()
        source = self.one.info(VM_TEMPLATE, template_id)
        disk_apps: list[tuple[str, str]] = []
        for index, element in enumerate(source.root.findall("TEMPLATE/DISK")):
            disk = {child.tag: (child.text or "") for child in element}
            part = f"disk {index} of VM template {template_id} ({source.name})"
            if not import_images:
                break  # no image apps, so no DISK=[APP] lines (the original's dangling ones)
            try:
                image_id = self.find_image(disk, source.uname)
                if image_id is None:
                    continue  # volatile: created on instantiation, nothing to publish
                image = self.ready_image(image_id)
                app_name = _suffixed(image.name)
                template = image_app_template(
                    self.one, image_id, name=app_name, version=self.one.version()
                )
                result.image_apps.append(self.allocate(template))
            except OnetoolsError as exc:
                raise _PartFailed(part, exc) from exc
            image_type = IMAGE_TYPE_NAMES.get(image.int("TYPE", 0), "OS")
            disk_apps.append((f"{image_type}_{index}", app_name))
        app_name = name or _suffixed(source.name)
        part = f"VM template {template_id} ({source.name})"
        try:
            template = vmtemplate_app_text(self.one, template_id, app_name, disk_apps)
            result.vmtemplate_apps.append(self.allocate(template))
        except OnetoolsError as exc:
            raise _PartFailed(part, exc) from exc
        result.name = app_name
        return result


def vmtemplate_app_text(
    one: OneApi, template_id: int, name: str, disk_apps: list[tuple[str, str]]
) -> str:
    """The VMTEMPLATE app's template: ``apps.vmtemplate_app_template`` (disks out, NICs auto),
    NICs without their source-cloud addresses, and one ``DISK=[NAME, APP]`` per entry of
    ``disk_apps`` (label ``<IMAGETYPE>_<disk index>`` as the original, app name)."""
    from onetools.market.apps import decode64, encode64, template_text, vmtemplate_app_template
    from onetools.one.template import parse

    app = parse(vmtemplate_app_template(one, template_id, name))
    app.remove("DISK")
    body = parse(decode64(app.get("APPTEMPLATE64") or ""))
    app.set("APPTEMPLATE64", encode64(template_text(_scrub_nics(body))))
    for label, app_name in disk_apps:
        app.add("DISK", [("NAME", label), ("APP", app_name)])
    return template_text(app)


def _scrub_nics(body: Template) -> Template:
    from onetools.one.template import Template

    scrubbed = Template()
    for key, value in body.attributes:
        if key in ("NIC", "NIC_ALIAS") and isinstance(value, list):
            value = [(k, v) for k, v in value if k not in NIC_SOURCE_KEYS]
        scrubbed.add(key, value)
    return scrubbed


def import_vm_template(
    one: OneApi,
    template_id: int,
    market_id: int,
    *,
    import_all: bool | Callable[[], bool] = True,
    name: str | None = None,
) -> Imported:
    """Publish VM template ``template_id`` in private market ``market_id`` (§6.1).

    ``import_all`` (or the function it is, asked once) says whether the template's images are
    published too; ``name`` names the VMTEMPLATE app (default ``<template name>-<10 hex>``).
    Raises ``MarketImportError`` after deleting whatever it created."""
    check_market(one, market_id)
    source = one.info(VM_TEMPLATE, template_id)
    images = _decide(import_all)
    importer = _Importer(one, market_id)
    return importer.run(
        f"VM template {template_id} ({source.name})",
        lambda: importer.vm_template(template_id, images, name),
    )


def _service_body(document: OneObject) -> dict[str, Any]:
    text = document.text("TEMPLATE/BODY")
    try:
        body = json.loads(text)
    except ValueError:
        raise UsageError(f"Service template {document.id} has no valid JSON BODY") from None
    if not isinstance(body, dict):
        raise UsageError(f"The BODY of service template {document.id} is not a JSON object")
    return body


def _role_template(role: dict[str, Any], service_id: int) -> int:
    # 6.x roles name their VM template in vm_template, OneFlow 7 in template_id.
    value = role.get("template_id", role.get("vm_template"))
    try:
        return int(str(value))
    except ValueError:
        raise UsageError(
            f"Role {role.get('name')} of service template {service_id} has no VM template"
        ) from None


def import_service_template(
    one: OneApi,
    doc_id: int,
    market_id: int,
    *,
    import_all: bool | Callable[[], bool] = True,
    name: str | None = None,
) -> Imported:
    """Publish service template document ``doc_id`` in private market ``market_id`` (§6.2):
    each distinct role VM template as a VMTEMPLATE app (with its images unless ``import_all``
    is false), then the SERVICE_TEMPLATE app with ``ROLE=[NAME, APP]`` per role. ``name``
    names the service app (default ``<service name>-<10 hex>``)."""
    from onetools.market.apps import encode64, template_text
    from onetools.one.template import Template

    check_market(one, market_id)
    document = one.info(DOCUMENT, doc_id)
    if document.int("TYPE", DOC_SERVICE_TEMPLATE) != DOC_SERVICE_TEMPLATE:
        raise UsageError(f"Document {doc_id} is not a service template")
    body = _service_body(document)
    roles = [role for role in body.get("roles") or [] if isinstance(role, dict)]
    if not roles:
        raise UsageError(f"Service template {doc_id} ({document.name}) has no roles")
    role_templates = [(str(role.get("name") or ""), _role_template(role, doc_id)) for role in roles]
    images = _decide(import_all)
    importer = _Importer(one, market_id)

    def work() -> Imported:
        result = Imported()
        app_of_template: dict[int, str] = {}
        for role_name, template_id in role_templates:
            if template_id in app_of_template:
                continue
            try:
                part = importer.vm_template(template_id, images, None)
            except _PartFailed as failed:
                raise _PartFailed(f"role {role_name}: {failed.part}", failed.error) from None
            result.image_apps.extend(part.image_apps)
            result.vmtemplate_apps.extend(part.vmtemplate_apps)
            app_of_template[template_id] = part.name
        # The source cloud's template IDs mean nothing elsewhere: export writes the new ones.
        for role in roles:
            for key in ("vm_template", "template_id"):
                if key in role:
                    role[key] = -1
        app_name = name or _suffixed(document.name)
        app = Template(
            [
                ("NAME", app_name),
                ("ORIGIN_ID", "-1"),
                ("TYPE", "SERVICE_TEMPLATE"),
                ("VERSION", one.version()),
                ("APPTEMPLATE64", encode64(json.dumps(body))),
            ]
        )
        for role_name, template_id in role_templates:
            app.add("ROLE", [("NAME", role_name), ("APP", app_of_template[template_id])])
        try:
            result.service_apps.append(importer.allocate(template_text(app)))
        except OnetoolsError as exc:
            raise _PartFailed(f"service template {doc_id} ({document.name})", exc) from exc
        result.name = app_name
        return result

    return importer.run(f"service template {doc_id} ({document.name})", work)


# -- vm import (§6.3) ------------------------------------------------------------------------
#: DISK attributes that belong to the VM's copy of the disk, not to a template (§6.3, HEAD's
#: list; SIZE and TYPE are dropped from saved image disks only, volatile disks need them).
VM_DISK_STRIP = frozenset(
    {
        "DEV_PREFIX",
        "SOURCE",
        "ORIGINAL_SIZE",
        "DISK_SNAPSHOT_TOTAL_SIZE",
        "DRIVER",
        "IMAGE_STATE",
        "SAVE",
        "CLONE",
        "READONLY",
        "PERSISTENT",
        "TARGET",
        "ALLOW_ORPHANS",
        "CLONE_TARGET",
        "CLUSTER_ID",
        "DATASTORE",
        "DATASTORE_ID",
        "DISK_ID",
        "DISK_TYPE",
        "IMAGE_ID",
        "IMAGE",
        "IMAGE_UNAME",
        "IMAGE_UID",
        "LN_TARGET",
        "TM_MAD",
        "OPENNEBULA_MANAGED",
        "FORMAT",
        "TM_MAD_SYSTEM",
        "PERSISTENT_SNAPSHOTS",
    }
)
VM_NIC_STRIP = frozenset(
    {
        "AR_ID",
        "BRIDGE",
        "CLUSTER_ID",
        "IP",
        "MAC",
        "TARGET",
        "NIC_ID",
        "NETWORK_ID",
        "VN_MAD",
        "SECURITY_GROUPS",
        "VLAN_ID",
        "BRIDGE_TYPE",
    }
)
#: How long a VM is waited for (poweroff), and its saved images and image apps (READY).
VM_WAIT_SECONDS = 300.0
SAVED_DESCRIPTION = "App to import"


class _SavedVm:
    """The intermediate objects of one ``vm import``: the VM powered off by us (to resume),
    the saved template and images (always deleted at the end)."""

    def __init__(self, one: OneApi, vm_id: int) -> None:
        self.one = one
        self.vm_id = vm_id
        self.powered_off = False
        self.template_id: int | None = None
        self.image_ids: list[int] = []

    def cleanup(self) -> list[str]:
        """Delete the saved template and images, resume the VM if we powered it off; one
        line per step that failed."""
        failures = []
        if self.template_id is not None:
            try:
                self.one.delete(VM_TEMPLATE, self.template_id)
                self.template_id = None
            except OnetoolsError as exc:
                failures.append(
                    f"saved VM template {self.template_id} could not be deleted: {exc.log_line()}"
                )
        for image_id in list(self.image_ids):
            try:
                self.one.delete(IMAGE, image_id)
                self.image_ids.remove(image_id)
            except OnetoolsError as exc:
                failures.append(f"saved image {image_id} could not be deleted: {exc.log_line()}")
        if self.powered_off:
            try:
                self.one.vm_action(self.vm_id, "resume")
                self.powered_off = False
            except OnetoolsError as exc:
                failures.append(f"VM {self.vm_id} could not be resumed: {exc.log_line()}")
        return failures


def _attributes(element: Any) -> list[tuple[str, str]]:
    """The ``(name, text)`` pairs of a vector element (a VM's DISK or NIC)."""
    return [(child.tag, child.text or "") for child in element]


def save_vm_as_template(
    one: OneApi,
    vm: OneObject,
    saved: _SavedVm,
    save_disks: bool,
    timeout: float,
    interval: float,
) -> int:
    """§6.3's ``save_as_template``: clone the VM's template as ``<vm name>-saved`` and merge
    in the VM's CPU/VCPU/MEMORY, its disks (image disks saved as ``<name>-disk-<id>``
    unless ``save_disks`` is false, CDROMs by their image, volatile ones as defined), its NICs
    without their leases, SAVED_TEMPLATE_ID and DESCRIPTION; the clone's id.  Everything
    made is recorded in ``saved`` (for the cleanup)."""
    from onetools.market.apps import template_text
    from onetools.one.template import Template

    template_id = int(vm.text("TEMPLATE/TEMPLATE_ID"))
    name = f"{vm.name}-saved"
    saved.template_id = one.clone(VM_TEMPLATE, template_id, name)
    changes = Template([("DESCRIPTION", SAVED_DESCRIPTION)])
    for key in ("CPU", "VCPU", "MEMORY"):
        value = vm.text(f"TEMPLATE/{key}")
        if value:
            changes.set(key, value)
    if save_disks:
        for element in vm.root.findall("TEMPLATE/DISK"):
            values = _attributes(element)
            given = dict(values)
            kept = [(k, v) for k, v in values if k not in VM_DISK_STRIP]
            if not given.get("IMAGE_ID", "").strip():
                changes.add("DISK", kept)  # volatile: made again on instantiation
                continue
            if given.get("TYPE", "").upper() == "CDROM":
                cdrom = [("IMAGE_ID", given["IMAGE_ID"])]
                if "OPENNEBULA_MANAGED" in given:
                    cdrom.append(("OPENNEBULA_MANAGED", given["OPENNEBULA_MANAGED"]))
                changes.add("DISK", cdrom)
                continue
            disk_id = int(given.get("DISK_ID") or 0)
            image_id = one.vm_disksaveas(vm.id, disk_id, f"{name}-disk-{disk_id}")
            saved.image_ids.append(image_id)
            one.wait_image_ready(image_id, timeout=timeout, interval=interval)
            rest = [(k, v) for k, v in kept if k not in ("SIZE", "TYPE")]
            changes.add("DISK", [("IMAGE_ID", str(image_id)), *rest])
    for element in vm.root.findall("TEMPLATE/NIC"):
        nic = [(k, v) for k, v in _attributes(element) if k not in VM_NIC_STRIP]
        changes.add("NIC", nic)
    changes.set("SAVED_TEMPLATE_ID", str(template_id))
    one.update(VM_TEMPLATE, saved.template_id, template_text(changes), merge=True)
    return saved.template_id


def _wait_apps_ready(one: OneApi, app_ids: list[int], timeout: float, interval: float) -> None:
    """Image apps copy their image's file (a driver's work on a front-end): the saved images
    may only go once every app is READY."""
    import time

    from onetools.market.apps import APP_DISABLED, APP_ERROR, APP_READY, STATE_NAMES
    from onetools.one.api import MARKETAPP

    deadline = time.monotonic() + timeout
    for app_id in app_ids:
        while True:
            state = one.info(MARKETAPP, app_id).int("STATE", 0)
            if state in (APP_READY, APP_DISABLED):
                break
            if state == APP_ERROR:
                raise MarketImportError(f"App {app_id} is in state ERROR")
            if time.monotonic() >= deadline:
                raise MarketImportError(
                    f"App {app_id} not READY after {timeout:g} s "
                    f"(it is {STATE_NAMES.get(state, state)})"
                )
            time.sleep(interval)


def import_vm(
    one: OneApi,
    vm_id: int,
    market_id: int,
    *,
    import_all: bool | Callable[[], bool] = True,
    name: str | None = None,
    timeout: float = VM_WAIT_SECONDS,
    interval: float = 1.0,
) -> Imported:
    """Publish VM ``vm_id`` in private market ``market_id`` (§6.3, fixed): save it as a VM
    template (powering it off first when it runs, for at most ``timeout`` seconds, and
    resuming it afterwards), import that template as ``vm-template import`` does, then delete
    the saved template and images (also on failure, and the apps with them).  ``name`` names
    the VMTEMPLATE app.  Without images (``import_all`` false) no disk is saved, so a running
    VM is left running.  Raises ``MarketImportError`` naming what failed and any cleanup
    step that failed too."""
    from onetools.one.api import LCM_RUNNING, VM, VM_ACTIVE, VM_POWEROFF, VM_STATE_NAMES

    check_market(one, market_id)
    vm = one.info(VM, vm_id)
    if not vm.text("TEMPLATE/TEMPLATE_ID").strip().isdigit():
        raise UsageError(f"VM {vm_id} ({vm.name}) has no associated template (TEMPLATE_ID)")
    state = vm.int("STATE")
    running = state == VM_ACTIVE and vm.int("LCM_STATE") == LCM_RUNNING
    if state != VM_POWEROFF and not running:
        state_name = VM_STATE_NAMES.get(state, str(state))
        raise UsageError(
            f"VM {vm_id} ({vm.name}) is {state_name}: only a RUNNING or POWEROFF VM can be imported"
        )
    images = _decide(import_all)
    saved = _SavedVm(one, vm_id)
    importer = _Importer(one, market_id)

    def work() -> Imported:
        current = vm
        if images and running:
            try:
                one.vm_action(vm_id, "poweroff")
                saved.powered_off = True
                current = one.wait_vm_state(vm_id, [VM_POWEROFF], timeout, interval)
            except OnetoolsError as exc:
                raise _PartFailed(f"poweroff of VM {vm_id}", exc) from exc
        try:
            template_id = save_vm_as_template(one, current, saved, images, timeout, interval)
        except OnetoolsError as exc:
            raise _PartFailed(f"saving VM {vm_id} as a VM template", exc) from exc
        result = importer.vm_template(template_id, images, name)
        try:
            _wait_apps_ready(one, result.image_apps, timeout, interval)
        except OnetoolsError as exc:
            raise _PartFailed("image apps", exc) from exc
        return result

    what = f"VM {vm_id} ({vm.name})"
    try:
        result = importer.run(what, work)
    except MarketImportError as exc:
        left = saved.cleanup()
        if not left:
            raise
        raise MarketImportError(f"{exc}; cleanup incomplete: {'; '.join(left)}") from exc
    except BaseException:
        saved.cleanup()
        raise
    left = saved.cleanup()
    if left:
        created = ", ".join(str(oid) for oid in result.ids)
        raise MarketImportError(
            f"Import of {what} created apps {created}, but the cleanup is incomplete: "
            + "; ".join(left)
        )
    return result
