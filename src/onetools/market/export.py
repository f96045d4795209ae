"""Exporting a marketplace app into the cloud (reference/onemarketapp.md §4, §5).

``export(one, app_id, name, datastore_id)`` creates, for

* an IMAGE app: the image (and, unless ``template=False``, the VM template of the app's
  VMTEMPLATE64 around it);
* a VMTEMPLATE app: one image per distinct ``DISK=[APP=…]`` child and the VM template;
* a SERVICE_TEMPLATE app: one VM template (with its images) per distinct ``ROLE=[APP=…]`` child
  and the OneFlow service template document (type 101).

Where the file comes from:

* on a real front-end the image is allocated with ``FROM_APP`` and ``PATH`` = the app's SOURCE;
  oned's datastore driver fetches it, and export waits until the image is READY (the original
  returned at once, §10.1 item 9) — an image entering ERROR fails the export;
* on the embedded store nothing fetches: the file is downloaded here, into
  ``$ONETOOLS_HOME/datastores/<datastore id>/``, verified against the app's MD5 while it
  streams, and only then is the image allocated (with that file as SOURCE), so an image that
  exists is READY and complete.  The files of a VMTEMPLATE app's disks are downloaded
  concurrently (``parallel``, default at most 4 at once); the store is only used from the
  calling thread, and the images are allocated in disk order once every file has verified.

Fixed on purpose (§10.1 item 1, §11): TYPE is parsed (quoted values too) and KERNEL, RAMDISK and
CONTEXT images go to ``file_datastore`` (else the first FILE datastore); RAMDISK is wired to
``OS/INITRD_DS``; ``$FILE[IMAGE_ID=n]`` has the scalar ID; child apps are looked up among all
apps the user can see; names are de-duplicated (``name``, ``name_1``, …) so they never clash;
and if any part fails, **every object this export created is deleted** (and every downloaded or
partial file removed; the other downloads are stopped and waited for) and the error names the
part that failed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from onetools.errors import OnetoolsError
from onetools.one.api import DATASTORE, DOCUMENT, FILTER_ALL, IMAGE, MARKETAPP, TEMPLATE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from onetools.market.download import Progress
    from onetools.one.api import OneApi
    from onetools.one.template import Template
    from onetools.one.xml import OneObject

#: Image types that live in a FILE datastore, and where a VM template references them.
FILE_TYPES = frozenset({"KERNEL", "RAMDISK", "CONTEXT"})
DOC_SERVICE_TEMPLATE = 101
FILE_DS_TYPE = 2
#: How many files an export downloads at once at most (the embedded store).
DEFAULT_PARALLEL = 4


class ExportError(OnetoolsError):
    """An export that did not complete; what it had created is gone."""


class _PartFailed(Exception):
    def __init__(self, part: str, error: BaseException) -> None:
        super().__init__(part)
        self.part = part
        self.error = error


class _Cancelled(Exception):
    """Raised inside a download (from its progress callback) once another one failed."""


class _PendingImage:
    """An image of the export before it is allocated: its template, datastore, and (on the
    embedded store) the verified file once downloaded."""

    def __init__(
        self, app: OneObject, part: str, template: Template, datastore: int, image_type: str
    ) -> None:
        self.app = app
        self.part = part
        self.template = template
        self.datastore = datastore
        self.image_type = image_type
        self.target: Path | None = None
        self.path: Path | None = None


class _Aggregate:
    """One progress line for several concurrent downloads: the bytes of all of them against
    the sum of their sizes (a size not announced yet is estimated from the app's SIZE; None
    while one is unknown).  Calls ``progress`` under a lock, so never from two threads at
    once; every report checks ``cancel`` first, which is how a running download is stopped."""

    def __init__(
        self, progress: Progress | None, estimates: list[int | None], cancel: threading.Event
    ) -> None:
        self.progress = progress
        self.done = [0] * len(estimates)
        self.totals = list(estimates)
        self.cancel = cancel
        self.lock = threading.Lock()

    def reporter(self, slot: int) -> Progress:
        def report(done: int, total: int | None) -> None:
            if self.cancel.is_set():
                raise _Cancelled
            if self.progress is None:
                return
            with self.lock:
                self.done[slot] = done
                if total is not None:
                    self.totals[slot] = total
                totals = self.totals
                whole = None if None in totals else sum(t or 0 for t in totals)
                done_all = sum(self.done)
                self.progress(min(done_all, whole) if whole else done_all, whole)

        return report


class Exported:
    """What an export created: IDs per kind, in creation order."""

    def __init__(self) -> None:
        self.images: list[int] = []
        self.vmtemplates: list[int] = []
        self.service_templates: list[int] = []
        self.image_type: str | None = None

    def as_dict(self) -> dict[str, list[int]]:
        """``{"IMAGE": [...], "VMTEMPLATE": [...], "SERVICE_TEMPLATE": [...]}``, empty ones out
        (the CLI prints them in this order, §1.3)."""
        result = {
            "IMAGE": self.images,
            "VMTEMPLATE": self.vmtemplates,
            "SERVICE_TEMPLATE": self.service_templates,
        }
        return {key: ids for key, ids in result.items() if ids}


class _Export:
    """One export run: the created objects (for rollback) and the names taken."""

    def __init__(
        self,
        one: OneApi,
        datastore_id: int,
        file_datastore: int | None,
        progress: Progress | None,
        wait_timeout: float,
        parallel: int = DEFAULT_PARALLEL,
    ) -> None:
        self.one = one
        self.parallel = parallel
        self.datastore_id = datastore_id
        self.file_datastore = file_datastore
        self.progress = progress
        self.wait_timeout = wait_timeout
        self.created: list[tuple[str, int]] = []
        self.files: list[Path] = []
        self.taken: dict[str, set[str]] = {}
        self._apps: list[OneObject] | None = None
        #: ``--template``: None (use VMTEMPLATE64), -1 (no VM template) or a VM template ID.
        self.base_template: int | None = None

    # -- names ---------------------------------------------------------------------------------
    def free_name(self, kind: str, wanted: str) -> str:
        """``wanted``, else ``wanted_1``, ``wanted_2``…: the first the user does not own yet
        (oned refuses a second image or template of the same name for one owner)."""
        if kind not in self.taken:
            uid = self.one.whoami().uid
            doc_type = DOC_SERVICE_TEMPLATE if kind == DOCUMENT else None
            pool = self.one.pool(kind, FILTER_ALL, doc_type=doc_type)
            self.taken[kind] = {o.name for o in pool if o.uid == uid}
        names = self.taken[kind]
        name, counter = wanted, 0
        while name in names:
            counter += 1
            name = f"{wanted}_{counter}"
        names.add(name)
        return name

    def apps(self) -> list[OneObject]:
        if self._apps is None:
            self._apps = self.one.pool(MARKETAPP, FILTER_ALL)
        return self._apps

    def child_app(self, app_name: str, market_id: int) -> OneObject:
        """The app named ``app_name``: in the parent's market first, else any market."""
        matches = [a for a in self.apps() if a.name == app_name]
        matches.sort(key=lambda a: (a.int("MARKETPLACE_ID") != market_id, a.id))
        if not matches:
            raise ExportError(f"App '{app_name}' not found")
        return matches[0]

    # -- rollback ------------------------------------------------------------------------------
    def rollback(self) -> list[str]:
        """Delete what was created, newest first; the problems (an empty list if none)."""
        from onetools.one.errors import NotFoundError

        problems = []
        for kind, oid in reversed(self.created):
            try:
                self.one.delete(kind, oid, force=kind == IMAGE)
            except NotFoundError:
                pass
            except OnetoolsError as exc:
                problems.append(f"{kind} {oid}: {exc}")
        for path in self.files:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror}")
        return problems

    # -- IMAGE ---------------------------------------------------------------------------------
    def image(
        self, app: OneObject, name: str, result: Exported, with_template: bool, vmname: str | None
    ) -> None:
        from onetools.market.apps import decode64
        from onetools.one.template import parse

        pending = self.prepare_image(app, name)
        (image_id,) = self.materialize([pending])
        image_type = pending.image_type
        result.images.append(image_id)
        result.image_type = image_type
        vmtemplate64 = app.text("TEMPLATE/VMTEMPLATE64")
        if not with_template or self.base_template == -1:
            return
        if self.base_template is None and not vmtemplate64:
            return
        part = f"VM template of app {app.id} ({app.name})"
        try:
            if self.base_template is not None:
                # --template T: a copy of VM template T around the image (the original also
                # appended the image's attributes to it; they do not belong in a VM template).
                from onetools.market.apps import element_text

                base = self.one.info(TEMPLATE, self.base_template).root.find("TEMPLATE")
                vm = parse(element_text(base))
            else:
                vm = parse(decode64(vmtemplate64))
            vm.set("NAME", self.free_name(TEMPLATE, vmname or name))
            wire_images(vm, [(image_id, image_type)])
            result.vmtemplates.append(self.allocate_template(vm))
        except OnetoolsError as exc:
            raise _PartFailed(part, exc) from exc

    def prepare_image(self, app: OneObject, name: str) -> _PendingImage:
        """The image template of an IMAGE app (name taken, datastore chosen), not allocated."""
        from onetools.market.apps import decode64
        from onetools.one.template import parse

        part = f"image of app {app.id} ({app.name})"
        try:
            if not app.text("SOURCE"):
                raise ExportError(f"App {app.id} has no SOURCE to download")
            image_template = parse(decode64(app.text("APPTEMPLATE64")))
            image_type = (image_template.get("TYPE") or "OS").upper()
            image_template.set("TYPE", image_type)
            datastore = self.image_datastore(image_type)
            image_template.set("NAME", self.free_name(IMAGE, name))
            image_template.set("FROM_APP", str(app.id))
            image_template.set("FROM_APP_NAME", app.name)
            if app.text("MD5"):
                image_template.set("FROM_APP_MD5", app.text("MD5"))
        except (OnetoolsError, OSError) as exc:
            raise _PartFailed(part, exc) from exc
        return _PendingImage(app, part, image_template, datastore, image_type)

    def materialize(self, pending: list[_PendingImage]) -> list[int]:
        """Allocate the images of ``pending`` (in order) and return their IDs.

        Embedded store: every file is downloaded first, ``parallel`` at a time, and only when
        all verified are the images allocated.  Front-end: the images are allocated
        ``parallel`` at a time and waited for (oned's datastore drivers fetch them meanwhile).
        """
        ids: list[int] = []
        if self.one.backend_name == "embedded":
            self.download_all(pending)
            for item in pending:
                ids.append(self.allocate_pending(item))
            return ids
        step = max(1, self.parallel)
        for start in range(0, len(pending), step):
            batch = pending[start : start + step]
            batch_ids = [self.allocate_pending(item) for item in batch]
            for item, image_id in zip(batch, batch_ids, strict=True):
                try:
                    self.one.wait_image_ready(image_id, timeout=self.wait_timeout, interval=1.0)
                except OnetoolsError as exc:
                    raise _PartFailed(item.part, exc) from exc
            ids.extend(batch_ids)
        return ids

    def image_datastore(self, image_type: str) -> int:
        if image_type not in FILE_TYPES:
            return self.datastore_id
        if self.file_datastore is not None:
            return self.file_datastore
        for datastore in self.one.pool(DATASTORE):
            if datastore.int("TYPE") == FILE_DS_TYPE:
                return datastore.id
        raise ExportError(
            f"A {image_type} image needs a FILE datastore: none exists (give --file-datastore)"
        )

    def allocate_pending(self, item: _PendingImage) -> int:
        """Allocate one prepared image: with its downloaded file as SOURCE on the embedded
        store, with PATH = the app's SOURCE on a front-end."""
        from onetools.market.apps import template_text

        app, image_template = item.app, item.template
        image_format = app.text("FORMAT") or "raw"
        try:
            if item.path is not None:
                size_mb = (item.path.stat().st_size + 1024 * 1024 - 1) // (1024 * 1024)
                image_template.set("SOURCE", str(item.path))
                image_template.set("FORMAT", image_format)
                image_template.set("SIZE", str(max(size_mb, app.int("SIZE", 0), 1)))
            else:
                # oned sets PATH from FROM_APP itself; giving it too keeps test servers and
                # older front-ends (that do not expand FROM_APP) fetching the same file.
                image_template.set("PATH", app.text("SOURCE"))
                image_template.set("FORMAT", image_format)
            image_id = self.one.allocate_image(template_text(image_template), item.datastore)
        except (OnetoolsError, OSError) as exc:
            raise _PartFailed(item.part, exc) from exc
        self.created.append((IMAGE, image_id))
        return image_id

    def download_all(self, pending: list[_PendingImage]) -> None:
        """Download the files of ``pending`` into the embedded store's datastore directories,
        verified, at most ``parallel`` at once (threads: the downloads only; the store is not
        touched from them).  The first failure stops the others, waits for them and raises
        ``_PartFailed`` for the first failed part in disk order; the files are in
        ``self.files`` for the rollback either way."""
        import secrets
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        from onetools.market.apps import checksums
        from onetools.market.download import download

        if not pending:
            return
        home = Path(getattr(self.one, "home", "."))
        for item in pending:
            directory = home / "datastores" / str(item.datastore)
            directory.mkdir(parents=True, exist_ok=True)
            item.target = directory / secrets.token_hex(16)
            self.files.append(item.target)
            self.files.append(item.target.with_name(item.target.name + ".part"))
        cancel = threading.Event()
        estimates = [(i.app.int("SIZE", 0) * 1024 * 1024) or None for i in pending]
        aggregate = _Aggregate(self.progress, estimates, cancel)

        def fetch(slot: int, item: _PendingImage) -> Path:
            if cancel.is_set():
                raise _Cancelled
            assert item.target is not None
            md5, sha256 = checksums(item.app)
            return download(
                item.app.text("SOURCE"),
                item.target,
                md5=md5,
                sha256=sha256,
                progress=aggregate.reporter(slot),
                resume=False,
            )

        workers = max(1, min(self.parallel, len(pending)))
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export-download")
        futures = [executor.submit(fetch, slot, item) for slot, item in enumerate(pending)]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            # After a failure (or Ctrl-C here) the running downloads stop at their next chunk
            # and the queued ones are dropped; every thread has ended before the rollback.
            cancel.set()
            executor.shutdown(wait=True, cancel_futures=True)
        for item, future in zip(pending, futures, strict=True):
            error = None if future.cancelled() else future.exception()
            if error is None or isinstance(error, _Cancelled):
                continue
            if isinstance(error, (OnetoolsError, OSError)):
                raise _PartFailed(item.part, error) from error
            raise error
        for item, future in zip(pending, futures, strict=True):
            item.path = future.result()

    def allocate_template(self, vm: Template) -> int:
        from onetools.market.apps import template_text

        oid = self.one.allocate_template(template_text(vm))
        self.created.append((TEMPLATE, oid))
        return oid

    # -- VMTEMPLATE ----------------------------------------------------------------------------
    def vmtemplate(self, app: OneObject, name: str, result: Exported) -> int:
        from onetools.market.apps import decode64
        from onetools.one.template import parse

        # Every child is looked up and named first (in disk order, so the names are those a
        # one-by-one export gives), then their files are fetched together.
        pending: list[_PendingImage] = []
        index_of: dict[str, int] = {}
        disk_images: list[int] = []
        for disk in app.root.findall("TEMPLATE/DISK"):
            child_name = (disk.findtext("APP") or "").strip()
            label = (disk.findtext("NAME") or "").strip()
            if not child_name:
                continue
            if child_name not in index_of:
                try:
                    child = self.child_app(child_name, app.int("MARKETPLACE_ID"))
                    check_exportable(child, ("IMAGE",))
                except OnetoolsError as exc:
                    raise _PartFailed(f"disk {label or child_name} of app {app.id}", exc) from exc
                index = len(index_of)
                suffix = f"-{label}" if label else ""
                pending.append(self.prepare_image(child, f"{name}-{child_name}{suffix}-{index}"))
                index_of[child_name] = index
            disk_images.append(index_of[child_name])
        ids = self.materialize(pending)
        result.images.extend(ids)
        disks = [(ids[index], pending[index].image_type) for index in disk_images]
        part = f"VM template of app {app.id} ({app.name})"
        try:
            body = decode64(app.text("TEMPLATE/APPTEMPLATE64") or app.text("APPTEMPLATE64"))
            if not body.strip():
                raise ExportError(f"Missing APPTEMPLATE64 for app {app.id}")
            vm = parse(body)
            vm.remove("DISK")
            vm.set("NAME", self.free_name(TEMPLATE, name))
            wire_images(vm, disks)
            oid = self.allocate_template(vm)
        except OnetoolsError as exc:
            raise _PartFailed(part, exc) from exc
        result.vmtemplates.append(oid)
        return oid

    # -- SERVICE_TEMPLATE ----------------------------------------------------------------------
    def service(self, app: OneObject, name: str, result: Exported) -> None:
        import json

        from onetools.market.apps import decode64

        by_app: dict[str, int] = {}
        role_template: dict[str, int] = {}
        for role in app.root.findall("TEMPLATE/ROLE"):
            role_name = (role.findtext("NAME") or "").strip()
            child_name = (role.findtext("APP") or "").strip()
            if not child_name:
                continue
            if child_name not in by_app:
                try:
                    child = self.child_app(child_name, app.int("MARKETPLACE_ID"))
                    check_exportable(child, ("VMTEMPLATE",))
                except OnetoolsError as exc:
                    raise _PartFailed(f"role {role_name} of app {app.id}", exc) from exc
                index = len(by_app)
                by_app[child_name] = self.vmtemplate(child, f"{name}-{role_name}-{index}", result)
            role_template[role_name] = by_app[child_name]
        part = f"service template of app {app.id} ({app.name})"
        try:
            text = decode64(app.text("TEMPLATE/APPTEMPLATE64") or app.text("APPTEMPLATE64"))
            try:
                body: dict[str, Any] = json.loads(text)
            except ValueError:
                raise ExportError(f"APPTEMPLATE64 of app {app.id} is not JSON") from None
            if not isinstance(body, dict):
                raise ExportError(f"APPTEMPLATE64 of app {app.id} is not a JSON object")
            service_name = self.free_name(DOCUMENT, name)
            body["name"] = service_name
            for role in body.get("roles") or []:
                if isinstance(role, dict) and role.get("name") in role_template:
                    new_id = role_template[role["name"]]
                    role["vm_template"] = new_id
                    if "template_id" in role:  # OneFlow 7 schema
                        role["template_id"] = new_id
            from onetools.one.template import quote

            document = f"NAME = {quote(service_name)}\nBODY = {quote(json.dumps(body))}\n"
            oid = self.one.allocate_document(document, DOC_SERVICE_TEMPLATE)
            self.created.append((DOCUMENT, oid))
        except OnetoolsError as exc:
            raise _PartFailed(part, exc) from exc
        result.service_templates.append(oid)


def check_exportable(app: OneObject, types: tuple[str, ...]) -> None:
    """The app is READY and of one of ``types``."""
    from onetools.market.apps import state_name, type_name

    if app.int("STATE") != 1:
        raise ExportError(f"App {app.id} ({app.name}) is not READY (it is {state_name(app)})")
    if type_name(app) not in types:
        raise ExportError(
            f"App {app.id} ({app.name}) is a {type_name(app)} app, {' or '.join(types)} expected"
        )


def wire_images(vm: Template, images: list[tuple[int, str]]) -> None:
    """Reference exported images from a VM template by their type (§4.3 step 3, fixed): disks
    for OS/DATABLOCK/CDROM, ``CONTEXT/FILES_DS``, ``OS/KERNEL_DS``, ``OS/INITRD_DS`` with scalar
    IDs."""
    files = []
    for image_id, image_type in images:
        if image_type == "CONTEXT":
            files.append(f'$FILE[IMAGE_ID="{image_id}"]')
        elif image_type in ("KERNEL", "RAMDISK"):
            key = "KERNEL_DS" if image_type == "KERNEL" else "INITRD_DS"
            _set_member(vm, "OS", key, f'$FILE[IMAGE_ID="{image_id}"]')
        else:
            vm.add("DISK", [("IMAGE_ID", str(image_id))])
    if files:
        context = vm.vectors("CONTEXT")
        existing = dict(context[0]).get("FILES_DS", "") if context else ""
        _set_member(vm, "CONTEXT", "FILES_DS", " ".join(([existing] if existing else []) + files))


def _set_member(vm: Template, vector: str, key: str, value: str) -> None:
    vectors = vm.vectors(vector)
    members = [(k, v) for k, v in (vectors[0] if vectors else []) if k != key]
    members.append((key, value))
    vm.set(vector, members)


def export(
    one: OneApi,
    app_id: int,
    name: str,
    datastore_id: int,
    *,
    file_datastore: int | None = None,
    template: bool = True,
    vmname: str | None = None,
    base_template: int | None = None,
    progress: Progress | None = None,
    wait_timeout: float = 3600.0,
    parallel: int = DEFAULT_PARALLEL,
) -> Exported:
    """Export app ``app_id`` as ``name`` into image datastore ``datastore_id``; see the module
    docstring.  ``template=False`` skips the VM template of an IMAGE app (``--no``);
    ``vmname`` names that VM template (default ``name``); ``base_template`` (``--template``)
    builds it from a copy of that VM template instead of VMTEMPLATE64, ``-1`` skips it.
    ``parallel`` is how many disk files of a VMTEMPLATE app are fetched at once (1: one after
    the other); ``progress`` then sees their sum.
    Raises ``ExportError`` after deleting everything it created."""
    if parallel < 1:
        raise ExportError(f"Invalid parallel {parallel}: at least 1")
    if not name.strip():
        raise ExportError("Missing name to export app")
    app = one.info(MARKETAPP, app_id)
    check_exportable(app, ("IMAGE", "VMTEMPLATE", "SERVICE_TEMPLATE"))
    ds = one.info(DATASTORE, datastore_id)
    if ds.int("TYPE") != 0:
        raise ExportError(f"Datastore {datastore_id} ({ds.name}) is not an image datastore")
    if file_datastore is not None and one.info(DATASTORE, file_datastore).int("TYPE") != 2:
        raise ExportError(f"Datastore {file_datastore} is not a FILE datastore")
    if base_template is not None and base_template < -1:
        raise ExportError(f"Invalid --template {base_template}: a VM template ID or -1")
    run = _Export(one, datastore_id, file_datastore, progress, wait_timeout, parallel)
    run.base_template = base_template
    result = Exported()
    from onetools.market.apps import type_name

    kind = type_name(app)
    try:
        if kind == "IMAGE":
            run.image(app, name, result, template, vmname)
        elif kind == "VMTEMPLATE":
            run.vmtemplate(app, name, result)
        else:
            run.service(app, name, result)
    except (_PartFailed, OnetoolsError, OSError) as exc:
        problems = run.rollback()
        if isinstance(exc, _PartFailed):
            message = f"Export of app {app_id} failed at the {exc.part}: {exc.error}"
        else:
            message = f"Export of app {app_id} failed: {exc}"
        if run.created:
            undone = ", ".join(f"{what} {oid}" for what, oid in run.created)
            message += f" (deleted what it had created: {undone})"
        if problems:
            message += "; the rollback failed for " + "; ".join(problems)
        raise ExportError(message) from None
    except BaseException:
        # Ctrl-C or a bug: the objects made so far must not stay behind either.
        run.rollback()
        raise
    finally:
        # nothing of a failed or finished download stays next to the image files
        for path in run.files:
            if path.name.endswith(".part") and path.exists():
                os.unlink(path)
    return result
