"""The provision lifecycle: create, resume, configure, delete (``reference/oneprovision.md`` §4).

Public API (independent of the CLI)::

    CreateOptions(...), DeleteOptions(...)          what the command line gives
    create(one, plan, options, ui, handler) -> Provision
    resume(one, provision_id, options, ui, handler) -> Provision      (create --resume ID)
    configure(one, provision_id, force, ui, handler, ...) -> Provision
    delete(one, provision_id, options, ui, handler) -> None
    delete_object(one, kind, oid, ui, handler, force=False) -> int    (host/datastore/... delete)
    configure_host(one, host_id, ui, policy) -> int,  ssh_command(one, host_id, command) -> argv
    add_hosts(one, id, ui, policy, amount, hostnames, host_params) -> [host id]   (host add)
    add_ips(one, id, ui, policy, amount) -> network id                             (ip add)
    get_provision(one, id) -> Provision, list_provisions(one) -> [Provision]
    provision_objects(one, kind) -> [OneObject]      objects of a kind owned by some provision
    STATES, state_name()

The provision is a document of type 103 whose ``TEMPLATE/BODY`` holds the JSON body of §6.2
(``name``, ``state``, ``provider``, ``provision.infrastructure/resource`` lists of
``{id, name}``, ``tf``, extra keys).  We add one key, ``onetools``, that makes runs resumable:

* ``plan``: the resolved template (inputs substituted), so ``create --resume`` needs no file;
* ``options``: skip-provision/skip-config/wait settings of the create;
* ``steps``: the names of the finished steps, in order (``STEPS``);
* ``done``: ``"<section>/<position>"`` → object ID (or ``"skipped"``) for every plan object;
* ``pending``: the two-phase intent of the object being created right now: written BEFORE the
  allocate (``{section, position, kind, name}``; hosts get their random name here first), the ID
  added in the same document update that records the object; cleared when the object is
  finished.  After a crash the pending object is found again by that exact name (and its
  ``PROVISION/ID``), so nothing is created twice and nothing is left unrecorded;
* ``lock``: who holds the document lock (host, pid; written before locking, the lock time
  added after), so that a run killed while holding it does not block the next one for 120 s:
  a lock whose recorded holder is a dead process of this machine is taken over at once (any
  other lock follows the 120 s rule).

Every mutating function takes the document lock (``OneApi.synchronize``; the original locked
only delete, §8.1 #16).  Order of create (6.4+, §4.2): document (DEPLOYING, ``ID: n``), cluster,
datastores, networks, hosts (OFFLINE), Terraform, hosts renamed to their IPs with ``DEPLOY_ID``
(matched by the host ID in the output names), virtual objects, Ansible (CONFIGURING), late
``${updates.*}``, hosts enabled (also with ``--skip-config``: §8.1 #6), RUNNING.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets as random_source
import socket
import time
from dataclasses import dataclass, field

from onetools.errors import OnetoolsError
from onetools.one.api import (
    CLUSTER,
    DATASTORE,
    DOC_PROVISION,
    DOC_SERVICE_TEMPLATE,
    DOCUMENT,
    HOST,
    HOST_ENABLED,
    HOST_OFFLINE,
    IMAGE,
    TEMPLATE,
    VNET,
    VNTEMPLATE,
    Permissions,
)
from onetools.one.errors import LockedError, NotFoundError, OneError
from onetools.provision.failmode import (
    SKIPPED,
    CleanupRequested,
    FailPolicy,
    FailureHandler,
    Skipped,
    StepFailed,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from typing import Any

    from onetools.one.api import OneApi
    from onetools.one.xml import OneObject
    from onetools.provision.failmode import Ui
    from onetools.provision.template import PlanObject, ProvisionPlan

# -- states (§4.1) ----------------------------------------------------------------------------
PENDING, DEPLOYING, CONFIGURING, RUNNING, ERROR, DELETING = range(6)
STATES = ("PENDING", "DEPLOYING", "CONFIGURING", "RUNNING", "ERROR", "DELETING")

#: Steps of create, in order; ``onetools.steps`` lists the finished ones.
STEPS = (
    "cluster",
    "datastores",
    "networks",
    "hosts",
    "infrastructure",
    "resources",
    "configuration",
    "updates",
    "enable",
)

#: Plan section → (object kind, body group, record list).
SECTIONS: dict[str, tuple[str, str, str]] = {
    "cluster": (CLUSTER, "infrastructure", "clusters"),
    "datastores": (DATASTORE, "infrastructure", "datastores"),
    "networks": (VNET, "infrastructure", "networks"),
    "hosts": (HOST, "infrastructure", "hosts"),
    "images": (IMAGE, "resource", "images"),
    "templates": (TEMPLATE, "resource", "templates"),
    "vntemplates": (VNTEMPLATE, "resource", "vntemplates"),
    "flowtemplates": (DOCUMENT, "resource", "flowtemplates"),
}
RESOURCE_SECTIONS = ("images", "marketplaceapps", "templates", "vntemplates", "flowtemplates")
#: The user-facing names of the resource groups of the CLI → record list and object kind.
GROUPS: dict[str, tuple[str, str, str]] = {
    "cluster": ("infrastructure", "clusters", CLUSTER),
    "datastore": ("infrastructure", "datastores", DATASTORE),
    "network": ("infrastructure", "networks", VNET),
    "host": ("infrastructure", "hosts", HOST),
    "image": ("resource", "images", IMAGE),
    "template": ("resource", "templates", TEMPLATE),
    "vntemplate": ("resource", "vntemplates", VNTEMPLATE),
    "flowtemplate": ("resource", "flowtemplates", DOCUMENT),
}
#: Plan section → what messages call one of its objects.
LABELS = {
    "cluster": "cluster",
    "datastores": "datastore",
    "networks": "network",
    "hosts": "host",
    "images": "image",
    "templates": "template",
    "vntemplates": "VN template",
    "flowtemplates": "service template",
}
#: ``${TYPE.REF.ATTR}`` type → plan section.
REFERENCE_SECTIONS = {
    "cluster": "cluster",
    "datastore": "datastores",
    "network": "networks",
    "host": "hosts",
    "image": "images",
    "template": "templates",
    "vntemplate": "vntemplates",
    "marketplaceapp": "marketplaceapps",
}
NOOP_PROVIDERS = frozenset({"onprem", "dummy"})
#: Virtual network states (``VirtualNetwork::VirtualNetworkState``) and the wait for READY.
VNET_READY, VNET_ERROR = 1, 5
NETWORK_WAIT = 300.0
DEFAULT_PUBLIC_KEY = "/var/lib/one/.ssh-oneprovision/id_rsa.pub"


class ProvisionError(OnetoolsError):
    """A lifecycle operation the provision's state or content does not allow."""


def state_name(state: Any) -> str:
    """``3`` → ``RUNNING``; ``-`` when unreadable (as the original's list)."""
    try:
        return STATES[int(state)]
    except (TypeError, ValueError, IndexError):
        return "-"


# -- options ----------------------------------------------------------------------------------
@dataclass
class CreateOptions:
    """The options of ``create`` (§1.2, §1.3) that the library needs."""

    skip_provision: bool = False
    skip_config: bool = False
    wait_ready: bool = False
    wait_timeout: int = 60
    cleanup: bool = False
    cleanup_timeout: int = 20
    threads: int = 3
    ping_retries: int = 30
    ping_timeout: float = 20.0
    playbook_dir: str | None = None
    template_dir: str | None = None
    terraform_binary: str | None = None
    #: where Terraform run directories are made (one per provision below it); None: the
    #: embedded store's home, else the temp dir
    workdir_root: str | None = None

    def stored(self) -> dict[str, Any]:
        """What a resumed create reuses."""
        return {
            "skip_provision": self.skip_provision,
            "skip_config": self.skip_config,
            "wait_ready": self.wait_ready,
            "wait_timeout": self.wait_timeout,
        }


@dataclass
class DeleteOptions:
    """The options of ``delete`` (§4.7)."""

    cleanup: bool = False
    cleanup_timeout: int = 20
    force: bool = False
    template_dir: str | None = None
    terraform_binary: str | None = None
    workdir_root: str | None = None


# -- the document -----------------------------------------------------------------------------
def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _body_of(document: OneObject) -> dict[str, Any] | None:
    text = document.text("TEMPLATE/BODY")
    if not text:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def empty_record() -> dict[str, Any]:
    return {
        "infrastructure": {"clusters": [], "datastores": [], "networks": [], "hosts": []},
        "resource": {"images": [], "templates": [], "vntemplates": [], "flowtemplates": []},
    }


class Provision:
    """A provision document: ``id``, its ``body`` (mutable; ``save()`` writes it back)."""

    def __init__(self, one: OneApi, document: OneObject, body: dict[str, Any]) -> None:
        self.one = one
        self.document = document
        self.id = document.id
        self.body = body

    # - plain accessors -
    @property
    def name(self) -> str:
        return str(self.body.get("name") or self.document.name)

    @property
    def state(self) -> int:
        try:
            return int(self.body.get("state", -1))
        except (TypeError, ValueError):
            return -1

    @property
    def state_name(self) -> str:
        return state_name(self.body.get("state"))

    @property
    def provider(self) -> str:
        return str(self.body.get("provider") or "")

    @property
    def record(self) -> dict[str, Any]:
        record = self.body.setdefault("provision", empty_record())
        for group, lists in empty_record().items():
            section = record.setdefault(group, {})
            for key in lists:
                section.setdefault(key, [])
        return record  # type: ignore[no-any-return]

    def entries(self, group: str, key: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.record[group][key]
        return entries

    def ids(self, group: str, key: str) -> list[int]:
        return [int(entry["id"]) for entry in self.entries(group, key)]

    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = self.body.setdefault("onetools", {})
        meta.setdefault("steps", [])
        meta.setdefault("done", {})
        return meta

    def finished(self, step: str) -> bool:
        return step in self.meta["steps"]

    def finish(self, step: str) -> None:
        if step not in self.meta["steps"]:
            self.meta["steps"].append(step)
        self.save()

    # - persistence -
    def save(self) -> None:
        """Write the body back (update type 0 replaces the template: BODY is all of it)."""
        self.one.update(
            DOCUMENT, self.id, f"<TEMPLATE><BODY>{_cdata(_dumps(self.body))}</BODY></TEMPLATE>"
        )

    def set_state(self, state: int) -> None:
        self.body["state"] = state
        self.save()

    def reload(self) -> None:
        self.document = self.one.info(DOCUMENT, self.id, decrypt=True)
        self.body = _body_of(self.document) or self.body

    def add_entry(self, group: str, key: str, oid: int, name: str) -> None:
        entries = self.entries(group, key)
        if all(int(entry["id"]) != oid for entry in entries):
            entries.append({"id": oid, "name": name})

    def remove_entry(self, group: str, key: str, oid: int) -> None:
        self.record[group][key] = [e for e in self.entries(group, key) if int(e["id"]) != oid]

    def rename_entry(self, group: str, key: str, oid: int, name: str) -> None:
        for entry in self.entries(group, key):
            if int(entry["id"]) == oid:
                entry["name"] = name

    def to_dict(self) -> dict[str, Any]:
        """``{"DOCUMENT": {...}}`` with ``TEMPLATE/BODY`` decoded (``-j``/``-y``, §1.2)."""
        data = self.document.to_dict()
        template = data["DOCUMENT"].get("TEMPLATE")
        if isinstance(template, dict):
            template["BODY"] = self.body
        return data


def get_provision(one: OneApi, oid: int) -> Provision:
    """The provision document ``oid`` (a document of another type is not found)."""
    document = one.info(DOCUMENT, oid, decrypt=True)
    if document.int("TYPE") != DOC_PROVISION:
        raise NotFoundError(f"[one.document.info] Error getting document [{oid}].", oid)
    body = _body_of(document)
    if body is None:
        raise ProvisionError(f"Provision {oid}: the body cannot be read")
    return Provision(one, document, body)


def list_provisions(one: OneApi) -> list[Provision]:
    """Every provision the session sees, in ID order (unreadable bodies give empty ones)."""
    provisions = []
    for document in one.pool(DOCUMENT, doc_type=DOC_PROVISION):
        if document.int("TYPE", DOC_PROVISION) != DOC_PROVISION:
            continue
        provisions.append(Provision(one, document, _body_of(document) or {}))
    return provisions


def provision_objects(one: OneApi, kind: str) -> list[OneObject]:
    """Objects of ``kind`` that carry ``PROVISION/ID`` (owned by a provision), for the
    ``<type> list`` commands."""
    if kind == DOCUMENT:
        found = []
        for document in one.pool(DOCUMENT, doc_type=DOC_SERVICE_TEMPLATE):
            body = _body_of(document) or {}
            if _provision_id_of_flow(body) is not None:
                found.append(document)
        return found
    return [obj for obj in one.pool(kind) if obj.text("TEMPLATE/PROVISION/ID").strip()]


def _provision_id_of_flow(body: Mapping[str, Any]) -> int | None:
    # we write lower-case keys; the original looked for upper-case ones (§8.1 #19): read both
    for key in ("provision", "PROVISION"):
        value = body.get(key)
        if isinstance(value, dict):
            for id_key in ("id", "ID"):
                if str(value.get(id_key, "")).isdigit():
                    return int(value[id_key])
    return None


# -- the lock ---------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _dead_holder(body: Mapping[str, Any], lock_time: int | None) -> bool:
    """Whether the lock was taken by a process of this machine that no longer runs."""
    holder = (body.get("onetools") or {}).get("lock")
    if not isinstance(holder, dict) or holder.get("host") != socket.gethostname():
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if _alive(pid):
        return False
    recorded = holder.get("time")
    # a lock younger than the record is someone else's that has not said so yet
    return recorded is None or lock_time is None or int(recorded) == int(lock_time)


@contextlib.contextmanager
def locked(one: OneApi, oid: int) -> Iterator[Provision]:
    """Hold the provision's document lock while the block runs and yield the provision.

    A concurrent run is refused (``LockedError``: "Object is locked…"); a lock left by a
    killed run of this machine is taken over; afterwards the lock is released only if the
    document still exists (``OneApi.synchronize``).
    """
    provision = get_provision(one, oid)
    if provision.document.lock is None:
        # say who is about to lock BEFORE locking: a run killed right after taking the lock
        # is then known to be dead (no window in which a lock has no recorded holder)
        provision.meta["lock"] = _holder()
        provision.save()
    try:
        guard = one.synchronize(DOCUMENT, oid)
        guard.__enter__()
    except LockedError as exc:
        if not _dead_holder(provision.body, exc.lock_time):
            raise LockedError(
                f"Provision {oid} is being changed by another command ({exc.message})",
                oid,
                lock_time=exc.lock_time,
            ) from None
        one.unlock(DOCUMENT, oid)
        guard = one.synchronize(DOCUMENT, oid)
        guard.__enter__()
    try:
        provision.reload()
        lock = provision.document.lock or {}
        provision.meta["lock"] = {**_holder(), "time": lock.get("TIME")}
        provision.save()
        yield provision
    except BaseException as exc:
        if not guard.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        guard.__exit__(None, None, None)


# -- rendering OpenNebula templates -----------------------------------------------------------
def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return _dumps(value)
    return "" if value is None else str(value)


def _quote(value: Any) -> str:
    text = _scalar(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def template_text(attributes: Mapping[str, Any]) -> str:
    """OpenNebula template text: keys upper-cased, maps as vectors (their nested values as
    text), lists as repeated attributes, ``None`` skipped."""
    lines = []
    for key, value in attributes.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None:
                continue
            if isinstance(item, dict):
                inner = ", ".join(
                    f"{str(k).upper()} = {_quote(v)}" for k, v in item.items() if v is not None
                )
                lines.append(f"{str(key).upper()} = [ {inner} ]")
            else:
                lines.append(f"{str(key).upper()} = {_quote(item)}")
    return "\n".join(lines) + "\n"


def _upper(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key).upper(): value for key, value in mapping.items()}


# -- plan storage -----------------------------------------------------------------------------
def plan_to_dict(plan: ProvisionPlan) -> dict[str, Any]:
    """The plan as JSON data (what ``onetools.plan`` stores)."""

    def obj(item: PlanObject) -> dict[str, Any]:
        data = {"kind": item.kind, "position": item.position, "attributes": item.attributes}
        data["meta"] = item.meta.to_dict()
        for extra in ("index", "group", "hostname"):
            if hasattr(item, extra):
                data[extra] = getattr(item, extra)
        return data

    data: dict[str, Any] = {
        "name": plan.name,
        "description": plan.description,
        "provider_name": plan.provider_name,
        "ansible": {
            "playbooks": list(plan.ansible.playbooks),
            "ver_min": plan.ansible.ver_min,
            "ver_max": plan.ansible.ver_max,
            "form": plan.ansible.form,
        },
        "cluster": obj(plan.cluster),
        "ceph_vars": plan.ceph_vars,
        "extra": plan.extra,
        "source": plan.source,
    }
    for section in ("datastores", "networks", "hosts", *RESOURCE_SECTIONS):
        data[section] = [obj(item) for item in getattr(plan, section)]
    return data


def plan_from_dict(data: Mapping[str, Any]) -> ProvisionPlan:
    """The inverse of ``plan_to_dict``."""
    from onetools.provision.template import (
        AnsibleSettings,
        Meta,
        PlanHost,
        PlanObject,
        ProvisionPlan,
    )

    def obj(item: Mapping[str, Any]) -> PlanObject:
        meta = Meta(**item.get("meta", {}))
        if item.get("kind") == "host":
            return PlanHost(
                "host",
                int(item["position"]),
                dict(item["attributes"]),
                meta,
                None,
                int(item.get("index", 0)),
                int(item.get("group", 0)),
                str(item.get("hostname", "")),
            )
        return PlanObject(str(item["kind"]), int(item["position"]), dict(item["attributes"]), meta)

    ansible = data.get("ansible") or {}
    plan = ProvisionPlan(
        name=str(data["name"]),
        description=data.get("description"),
        provider_name=data.get("provider_name"),
        ansible=AnsibleSettings(
            tuple(ansible.get("playbooks", ())),
            ansible.get("ver_min"),
            ansible.get("ver_max"),
            ansible.get("form", "playbook"),
        ),
        inputs={},
        defaults={},
        cluster=obj(data["cluster"]),
        ceph_vars=data.get("ceph_vars"),
        extra=dict(data.get("extra") or {}),
        source=str(data.get("source", "")),
    )
    for section in ("datastores", "networks", "hosts", *RESOURCE_SECTIONS):
        setattr(plan, section, [obj(item) for item in data.get(section, [])])
    return plan


# -- provider ---------------------------------------------------------------------------------
@dataclass
class ProviderInfo:
    """The provider a provision runs on: ``name`` as the body stores it, ``driver`` its type,
    ``connection`` in clear (empty for onprem)."""

    name: str
    driver: str
    connection: dict[str, Any] = field(default_factory=dict)
    inputs: list[Any] = field(default_factory=list)


def find_provider(one: OneApi, reference: str | None) -> ProviderInfo:
    """The provider named or numbered ``reference``; ``onprem`` is built in (§3.2: the
    original uses an in-memory provider for it).  Not found → ``No provider found``."""
    from onetools.provision.provider import Provider, provider_names, show_provider

    text = (reference or "").strip()
    if not text:
        raise ProvisionError("No provider found: the template names none (provider_name)")
    oid: int | None = None
    if text.isdigit():
        oid = int(text)
    else:
        matches = [doc.id for doc in provider_names(one) if doc.name == text]
        if matches:
            oid = matches[0]
    if oid is None:
        if text in NOOP_PROVIDERS:
            return ProviderInfo(text, "onprem")
        raise ProvisionError(f"No provider found: '{text}'")
    try:
        provider: Provider = show_provider(one, oid)
    except NotFoundError:
        raise ProvisionError(f"Provider not found: '{text}'") from None
    body = provider.body or {}
    connection = provider.connection if provider.connection_in_clear else {}
    return ProviderInfo(
        provider.name,
        provider.driver or "onprem",
        dict(connection or {}),
        list(body.get("inputs") or []),
    )


def _provider_of(one: OneApi, provision: Provision) -> ProviderInfo:
    name = provision.provider
    if name in NOOP_PROVIDERS or not name:
        try:
            return find_provider(one, name or "onprem")
        except ProvisionError:
            return ProviderInfo(name or "onprem", "onprem")
    return find_provider(one, name)


# -- create -----------------------------------------------------------------------------------
class _Run:
    """One create (or resume) in progress: the provision, its plan, the handler."""

    def __init__(
        self,
        one: OneApi,
        provision: Provision,
        plan: ProvisionPlan,
        provider: ProviderInfo,
        options: CreateOptions,
        ui: Ui,
        handler: FailureHandler,
    ) -> None:
        self.one = one
        self.provision = provision
        self.plan = plan
        self.provider = provider
        self.options = options
        self.ui = ui
        self.handler = handler
        #: plan positions of the hosts the configuration is limited to (host add); None: all
        self.limit: list[int] | None = None

    # - references -
    def _lookup(self, kind: str, ref: str, attribute: str) -> Any:
        section = REFERENCE_SECTIONS[kind]
        oid: int | None = None
        done = self.provision.meta["done"]
        if ref.isdigit():
            value = done.get(f"{section}/{int(ref)}")
            oid = value if isinstance(value, int) else None
        else:
            _, group, key = SECTIONS.get(section, (None, "resource", section))
            for entry in self.provision.record.get(group, {}).get(key, []):
                if entry.get("name") == ref:
                    oid = int(entry["id"])
        if oid is None:
            raise LookupError(ref)
        obj = self.one.info(SECTIONS[section][0], oid)
        name = attribute.upper()
        for path in (name, f"TEMPLATE/{name}", f"TEMPLATE/PROVISION/{name}"):
            if obj.has(path):
                return obj.text(path)
        return None

    def substitute(self, value: Any, index: int | None = None) -> Any:
        from onetools.provision.template import SubstitutionContext, substitute

        context = SubstitutionContext(
            provision=self.provision.name,
            provision_id=self.provision.id,
            index=index,
            lookup=self._lookup,
        )
        return substitute(value, context)

    # - the two-phase record of one object -
    def _create_object(
        self,
        section: str,
        item: PlanObject,
        name: str,
        allocate: Callable[[], int],
        finish: Callable[[int], None],
    ) -> None:
        """Create one plan object so that a crash at any point leaves it findable."""
        key = f"{section}/{item.position}"
        meta = self.provision.meta
        if key in meta["done"]:
            return
        kind, group, record = SECTIONS[section]

        def attempt() -> int:
            pending = meta.get("pending")
            oid: int | None = None
            if isinstance(pending, dict) and pending.get("key") == key:
                oid = self._find_pending(pending)
            if oid is None:
                meta["pending"] = {"key": key, "kind": kind, "name": name}
                self.provision.save()
                oid = allocate()
            # record in the same update that gives the intent its ID
            meta["pending"] = {"key": key, "kind": kind, "name": name, "id": oid}
            self.provision.add_entry(group, record, oid, name)
            self.provision.save()
            finish(oid)
            return oid

        result = self.handler.run(f"Failed to create {LABELS[section]} {name}", attempt)
        meta["done"][key] = "skipped" if result is SKIPPED else result
        meta.pop("pending", None)
        self.provision.save()

    def _find_pending(self, pending: Mapping[str, Any]) -> int | None:
        return find_pending(self.one, self.provision, pending)

    # - ownership -
    def _ownership(self, kind: str, oid: int, item: PlanObject) -> None:
        meta = item.meta
        if kind in (CLUSTER, HOST):
            return
        uid = meta.uid if meta.uid is not None else self._user_id(meta.uname)
        gid = meta.gid if meta.gid is not None else self._group_id(meta.gname)
        if uid is not None or gid is not None:
            # both given ones are set (the original skipped the call when either matched)
            self.one.chown(kind, oid, -1 if uid is None else uid, -1 if gid is None else gid)
        if meta.mode:
            self.one.chmod(kind, oid, Permissions.from_octet(meta.mode))

    def _user_id(self, name: str | None) -> int | None:
        from onetools.one.api import USER

        return self._id_by_name(USER, "User", name)

    def _group_id(self, name: str | None) -> int | None:
        from onetools.one.api import GROUP

        return self._id_by_name(GROUP, "Group", name)

    def _id_by_name(self, kind: str, label: str, name: str | None) -> int | None:
        """The ID of a ``meta`` uname/gname (None: not given)."""
        if name is None:
            return None
        for obj in self.one.pool(kind):
            if obj.name == name:
                return obj.id
        raise ProvisionError(f"{label} {name} not found")

    # - steps -
    def cluster_id(self) -> int:
        ids = self.provision.ids("infrastructure", "clusters")
        if not ids:
            raise ProvisionError(f"Provision {self.provision.id} has no cluster")
        return ids[0]

    def step_cluster(self) -> None:
        item = self.plan.cluster
        attributes = self.substitute(dict(item.attributes))
        name = str(attributes.pop("name", self.plan.name))
        existing = attributes.pop("datastores", []) or []
        provision = dict(attributes.pop("provision", {}) or {})
        provision["id"] = self.provision.id
        attributes["provision"] = provision

        def finish(oid: int) -> None:
            self.one.update(CLUSTER, oid, template_text(attributes), merge=True)
            cluster = self.one.info(CLUSTER, oid)
            attached = set(cluster.ids("DATASTORES"))
            for ds in existing:
                if int(ds) not in attached:
                    self.one.cluster_add(oid, DATASTORE, int(ds))

        self._create_object("cluster", item, name, lambda: self.one.allocate_cluster(name), finish)
        if self.provision.meta["done"].get("cluster/0") == "skipped":
            # nothing can be built without the cluster (the original exited 0 here, §8.1 #20)
            raise StepFailed("The cluster was skipped: nothing more can be created")

    def _with_provision(
        self, attributes: dict[str, Any], extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``attributes`` with ``PROVISION = [ ID = <provision id>, ... ]``."""
        provision = dict(attributes.pop("provision", {}) or {})
        provision["id"] = self.provision.id
        provision.update(extra or {})
        attributes["provision"] = provision
        return attributes

    def step_datastores(self) -> None:
        for item in self.plan.datastores:
            attributes = self._with_provision(self.substitute(dict(item.attributes)))
            name = str(attributes.get("name") or f"{self.plan.name}-datastore-{item.position}")
            attributes["name"] = name
            text = template_text(attributes)
            self._create_object(
                "datastores",
                item,
                name,
                lambda text=text: self.one.allocate_datastore(text, self.cluster_id()),  # type: ignore[misc]
                lambda oid, item=item: self._ownership(DATASTORE, oid, item),  # type: ignore[misc]
            )

    def step_networks(self) -> None:
        for item in self.plan.networks:
            attributes = self._with_provision(self.substitute(dict(item.attributes)))
            name = str(attributes.get("name") or f"{self.plan.name}-network-{item.position}")
            attributes["name"] = name
            ars = attributes.get("ar")
            if isinstance(ars, list) and ars and "ar_template" not in self.provision.body:
                self.provision.body["ar_template"] = template_text({"ar": ars[0]}).strip()
            text = template_text(attributes)
            self._create_object(
                "networks",
                item,
                name,
                lambda text=text: self.one.allocate_vnet(text, self.cluster_id()),  # type: ignore[misc]
                lambda oid, item=item: self._network_ready(oid, item),  # type: ignore[misc]
            )

    def _network_ready(self, oid: int, item: PlanObject) -> None:
        """Ownership, then wait for the network to be READY (6.4+, §2.8): one in ERROR is
        deleted and the step fails; a timeout is only a warning."""
        self._ownership(VNET, oid, item)
        deadline = time.monotonic() + NETWORK_WAIT
        while True:
            network = self.one.info(VNET, oid)
            state = network.int("STATE")
            if state == VNET_READY:
                return
            if state == VNET_ERROR:
                self.one.delete(VNET, oid)
                self.provision.remove_entry("infrastructure", "networks", oid)
                self.provision.meta.pop("pending", None)
                self.provision.save()
                raise ProvisionError(f"Error creating network {oid}")
            if time.monotonic() >= deadline:
                self.ui.warning(f"Network {oid} not READY after {NETWORK_WAIT:g} s")
                return
            time.sleep(2)

    def host_template(self, item: PlanObject) -> dict[str, Any]:
        """The host template of §4.3 (without NAME)."""
        import yaml

        attributes = self.substitute(dict(item.attributes), getattr(item, "index", None))
        provision = {
            k: v for k, v in dict(attributes.pop("provision", {}) or {}).items() if k != "provider"
        }
        provision["id"] = self.provision.id
        connection = dict(attributes.pop("connection", {}) or {})
        configuration = dict(attributes.pop("configuration", {}) or {})
        template: dict[str, Any] = {}
        template["im_mad"] = attributes.pop("im_mad", None)
        template["vm_mad"] = attributes.pop("vm_mad", None)
        template["provision"] = provision
        template["provision_configuration_base64"] = base64.b64encode(
            yaml.safe_dump(configuration, default_flow_style=False).encode("utf-8")
        ).decode("ascii")
        template["provision_connection"] = {
            key: connection.get(key)
            for key in ("remote_user", "remote_port", "public_key", "private_key")
        }
        public_key = _public_key_text(str(connection.get("public_key") or DEFAULT_PUBLIC_KEY))
        if public_key:
            template["context"] = {"ssh_public_key": public_key}
        template.update(attributes)
        return template

    def step_hosts(self) -> None:
        for item in self.plan.hosts:
            key = f"hosts/{item.position}"
            if key in self.provision.meta["done"]:
                continue
            pending = self.provision.meta.get("pending")
            if isinstance(pending, dict) and pending.get("key") == key:
                name = str(pending["name"])  # the random name chosen before the crash
            else:
                name = "provision-" + random_source.token_hex(24)
            template = self.host_template(item)
            im_mad, vm_mad = str(template["im_mad"]), str(template["vm_mad"])

            def finish(oid: int, template: dict[str, Any] = template) -> None:
                self.one.update(HOST, oid, template_text(template), merge=True)
                host = self.one.info(HOST, oid)
                if host.int("STATE") != 8:  # OFFLINE
                    self.one.host_status(oid, HOST_OFFLINE)

            self._create_object(
                "hosts",
                item,
                name,
                lambda name=name, im=im_mad, vm=vm_mad: self.one.allocate_host(  # type: ignore[misc]
                    name, im, vm, self.cluster_id()
                ),
                finish,
            )
        # from here on the hosts exist: cleanup is offered (§1.4, §4.9), but not while hosts
        # are added to a running provision (it would delete the whole provision)
        if self.limit is None:
            self.handler.cleanup_allowed = True

    def step_infrastructure(self) -> None:
        hosts = self.provision.ids("infrastructure", "hosts")
        if not hosts:
            return
        if self.provider.driver in NOOP_PROVIDERS:
            self.ui.info("Deploy skipped (on-premise provider)")
            self._rename_hosts({oid: ("", "") for oid in hosts})
            return
        if self.options.skip_provision:
            self.ui.info("Deploy skipped (--skip-provision)")
            return
        from onetools.provision import terraform

        self.ui.warning("This operation can take tens of minutes. Please be patient.")
        objects = tf_objects(self.one, self.provision)

        def render() -> str:
            return terraform.render_configuration(
                self.provider.driver,
                self.provider.connection,
                objects,
                self.options.template_dir,
                self.plan.ceph_vars,
            )

        # a template that does not render is a failed step like any other: the fail modes
        # decide (retry after fixing the template, cleanup, quit)
        rendered = self.handler.run("Failed to render the Terraform configuration", render)
        if isinstance(rendered, Skipped):
            return
        conf: str = rendered
        variables = terraform.terraform_variables(self.provider.driver, self.provider.connection)
        runner = terraform.TerraformRunner(
            workdir_parent(self.provision, self.options.workdir_root),
            binary=self.options.terraform_binary,
            log=self.ui.info,
        )
        tf = self.provision.body.setdefault("tf", {})
        # the conf is stored before the apply: a delete after a crash can destroy with it
        tf["conf"] = terraform.encode(conf)
        self.provision.save()
        state = terraform.decode(tf["state"]) if tf.get("state") else None

        def apply() -> Any:
            try:
                return runner.apply(conf, state, variables)
            except terraform.TerraformError as exc:
                if exc.state:
                    tf["state"] = terraform.encode(exc.state)
                    self.provision.save()
                raise

        result = self.handler.run("Failed to deploy the hosts with Terraform", apply)
        if isinstance(result, Skipped):
            return
        tf["state"] = terraform.encode(result.state)
        self.provision.save()
        self._rename_hosts(result.hosts)

    def _rename_hosts(self, facts: Mapping[int, tuple[str, str]]) -> None:
        hostnames = {}
        for item in self.plan.hosts:
            oid = self.provision.meta["done"].get(f"hosts/{item.position}")
            if isinstance(oid, int):
                hostnames[oid] = getattr(item, "hostname", "")
        for oid in self.provision.ids("infrastructure", "hosts"):
            deploy_id, ip = facts.get(oid, ("", ""))
            host = self.one.info(HOST, oid)
            name = ip or hostnames.get(oid) or host.text("TEMPLATE/PROVISION/HOSTNAME")
            if not name:
                self.ui.warning(f"Host {oid}: Terraform gave no IP, name kept")
                continue
            if deploy_id:
                provision = host.template("TEMPLATE").get("PROVISION") or {}
                if isinstance(provision, dict) and provision.get("DEPLOY_ID") != deploy_id:
                    provision = {**provision, "DEPLOY_ID": deploy_id}
                    self.one.update(HOST, oid, template_text({"provision": provision}), merge=True)
            if host.name != name:
                self.handler.run(
                    f"Failed to rename host {oid} to {name}",
                    lambda oid=oid, name=name: self.one.rename(HOST, oid, name),  # type: ignore[misc]
                )
            self.provision.rename_entry("infrastructure", "hosts", oid, name)
        self.provision.save()

    def step_resources(self) -> None:
        for item in self.plan.images:
            self._create_image(item)
        for item in self.plan.marketplaceapps:
            self._export_app(item)
        for section, allocate in (
            ("templates", self.one.allocate_template),
            ("vntemplates", self.one.allocate_vntemplate),
        ):
            kind = SECTIONS[section][0]
            for item in getattr(self.plan, section):
                attributes = self._with_provision(self.substitute(dict(item.attributes)))
                name = str(attributes.get("name") or f"{self.plan.name}-{section}-{item.position}")
                attributes["name"] = name
                text = template_text(attributes)
                self._create_object(
                    section,
                    item,
                    name,
                    lambda text=text, allocate=allocate: allocate(text),  # type: ignore[misc]
                    lambda oid, item=item, kind=kind: self._ownership(kind, oid, item),  # type: ignore[misc]
                )
        for item in self.plan.flowtemplates:
            body = self.substitute(dict(item.attributes))
            name = str(body.get("name") or f"{self.plan.name}-flow-{item.position}")
            body["name"] = name
            body["provision"] = {"id": self.provision.id}
            text = (
                f"<TEMPLATE><NAME>{_escape(name)}</NAME>"
                f"<BODY>{_cdata(_dumps(body))}</BODY></TEMPLATE>"
            )
            self._create_object(
                "flowtemplates",
                item,
                name,
                lambda text=text: self.one.allocate_document(text, DOC_SERVICE_TEMPLATE),  # type: ignore[misc]
                lambda oid, item=item: self._ownership(DOCUMENT, oid, item),  # type: ignore[misc]
            )

    def _create_image(self, item: PlanObject) -> None:
        attributes = self.substitute(dict(item.attributes))
        name = str(attributes.get("name") or f"{self.plan.name}-image-{item.position}")
        attributes["name"] = name
        ds_text = str(attributes.pop("ds_id", "")).strip()
        if not ds_text.lstrip("-").isdigit():
            raise ProvisionError(f"Image {name}: ds_id '{ds_text}' is not a datastore ID")
        wait = item.meta.wait if item.meta.wait is not None else self.options.wait_ready
        timeout = item.meta.wait_timeout or self.options.wait_timeout
        attributes = self._with_provision(
            attributes, {"wait": "true" if wait else "false", "wait_timeout": timeout}
        )
        text = template_text(attributes)

        def finish(oid: int) -> None:
            self._ownership(IMAGE, oid, item)
            if wait:
                self.one.wait_image_ready(oid, timeout=float(timeout))

        self._create_object(
            "images", item, name, lambda: self.one.allocate_image(text, int(ds_text)), finish
        )

    def _export_app(self, item: PlanObject) -> None:
        """Export one ``marketplaceapps`` entry (§2.9): the images/templates the export creates
        are recorded (two-phase, like the other objects), get ``PROVISION/ID`` and the meta
        ownership; the app itself is not recorded.  A failed export has rolled itself back."""
        from onetools.market.export import export

        key = f"marketplaceapps/{item.position}"
        meta = self.provision.meta
        if key in meta["done"]:
            return
        attributes = self.substitute(dict(item.attributes))
        label = str(attributes.get("appname") or attributes.get("appid") or item.position)
        records = (("images", IMAGE), ("templates", TEMPLATE), ("flowtemplates", DOCUMENT))

        def finish(created: Mapping[str, list[int]]) -> int:
            first: int | None = None
            for record, kind in records:
                for oid in created.get(record, []):
                    first = oid if first is None else first
                    if kind == DOCUMENT:
                        doc = self.one.info(DOCUMENT, oid)
                        body = _body_of(doc) or {}
                        body["provision"] = {"id": self.provision.id}
                        text = f"<TEMPLATE><BODY>{_cdata(_dumps(body))}</BODY></TEMPLATE>"
                        self.one.update(DOCUMENT, oid, text)
                    else:
                        text = template_text({"provision": {"id": self.provision.id}})
                        self.one.update(kind, oid, text, merge=True)
                    self._ownership(kind, oid, item)
            if first is None:
                raise ProvisionError(f"Marketplace app {label}: the export created nothing")
            return first

        def attempt() -> int:
            pending = meta.get("pending")
            if isinstance(pending, dict) and pending.get("key") == key and pending.get("created"):
                # a crash after the export was recorded: only the finishing is left
                return finish(pending["created"])
            app = self._find_app(attributes)
            name = str(attributes.get("name") or app.name)
            ds_text = str(attributes.get("dsid", attributes.get("ds_id", ""))).strip()
            if not ds_text.lstrip("-").isdigit():
                raise ProvisionError(
                    f"Marketplace app {label}: dsid '{ds_text}' is not a datastore ID"
                )
            vmname = attributes.get("vmname")
            if isinstance(pending, dict) and pending.get("key") == key:
                # killed inside an earlier export: what it had made is not wanted (§4.2)
                remove_export_orphans(self.one, pending)
            meta["pending"] = {
                "key": key,
                "kind": "marketplaceapp",
                "name": name,
                "prefixes": [name] + ([str(vmname)] if vmname else []),
                "after": _last_ids(self.one),
            }
            self.provision.save()
            wait = item.meta.wait_timeout or self.options.wait_timeout
            result = export(
                self.one,
                app.id,
                name,
                int(ds_text),
                vmname=str(vmname) if vmname else None,
                wait_timeout=float(wait),
            )
            created = {
                "images": list(result.images),
                "templates": list(result.vmtemplates),
                "flowtemplates": list(result.service_templates),
            }
            # record in the same update that names what the export created
            meta["pending"] = {
                "key": key,
                "kind": "marketplaceapp",
                "name": name,
                "created": created,
            }
            for record, kind in records:
                for oid in created[record]:
                    self.provision.add_entry("resource", record, oid, self.one.info(kind, oid).name)
            self.provision.save()
            return finish(created)

        result = self.handler.run(f"Failed to export marketplace app {label}", attempt)
        meta["done"][key] = "skipped" if result is SKIPPED else result
        meta.pop("pending", None)
        self.provision.save()

    def _find_app(self, attributes: Mapping[str, Any]) -> OneObject:
        """The app of a ``marketplaceapps`` entry: by ``appid``, else by ``appname`` among all
        apps the user can see (§2.9)."""
        from onetools.one.api import FILTER_ALL, MARKETAPP

        appid = attributes.get("appid")
        if appid is not None and str(appid).strip().isdigit():
            try:
                return self.one.info(MARKETAPP, int(str(appid).strip()))
            except NotFoundError:
                raise ProvisionError(f"App {appid} not found") from None
        name = str(attributes.get("appname") or "")
        for app in self.one.pool(MARKETAPP, FILTER_ALL):
            if app.name == name:
                return app
        raise ProvisionError(f"App {name} not found")

    def step_configuration(self) -> None:
        if self.options.skip_provision or self.options.skip_config:
            self.ui.info("Configuration skipped")
            return
        if not self.provision.ids("infrastructure", "hosts"):
            return
        configure_hosts(
            self.one,
            self.provision,
            self.plan.ansible,
            self.ui,
            self.handler,
            threads=self.options.threads,
            playbook_dir=self.options.playbook_dir,
            ping_retries=self.options.ping_retries,
            ping_timeout=self.options.ping_timeout,
            limit=self._limit_names(),
        )

    def _limit_names(self) -> list[str] | None:
        if self.limit is None:
            return None
        done = self.provision.meta["done"]
        ids = [done.get(f"hosts/{position}") for position in self.limit]
        return [self.one.info(HOST, oid).name for oid in ids if isinstance(oid, int)]

    def step_updates(self) -> None:
        """``${updates.KEY}`` of datastores, networks and VN templates, and the HCI host
        reservations (§2.11, §2.14)."""
        configured = not (self.options.skip_provision or self.options.skip_config)
        apply_updates(
            self.one,
            self.provision,
            self.plan,
            self.ui,
            self.handler,
            configured=configured,
            threads=self.options.threads,
        )

    def step_enable(self) -> None:
        for oid in self.provision.ids("infrastructure", "hosts"):
            self.handler.run(
                f"Failed to enable host {oid}",
                lambda oid=oid: self.one.host_status(oid, HOST_ENABLED),  # type: ignore[misc]
            )

    def run(self) -> None:
        for step in STEPS:
            if self.provision.finished(step):
                continue
            self.ui.info(f"Provision {self.provision.id}: {step}")
            getattr(self, f"step_{step}")()
            self.provision.finish(step)
        self.provision.set_state(RUNNING)


def _public_key_text(value: str) -> str:
    """A public key file's content, or the value itself when it is not a readable file
    (§2.3)."""
    try:
        with open(os.path.expanduser(value), encoding="utf-8") as stream:
            return stream.read().strip()
    except OSError:
        return value if value.startswith(("ssh-", "ecdsa-")) else ""


def workdir_parent(provision: Provision, root: str | None) -> str:
    """This provision's own directory for Terraform runs (crash recovery looks there)."""
    import tempfile

    base = root or os.path.join(tempfile.gettempdir(), f"onetools-provisions-{os.getuid()}")
    # the registration time tells two provisions with the same ID on different stores apart
    regtime = provision.document.text("REGTIME") or "0"
    path = os.path.join(base, f"{provision.id}-{regtime}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def tf_objects(one: OneApi, provision: Provision) -> list[Any]:
    """The provision's cluster, datastores, networks and hosts as ``TfObject``s, skipping
    hosts already deployed (with ``DEPLOY_ID``)."""
    from onetools.provision.terraform import TfObject

    objects = []
    for key, kind, tf_type in (
        ("clusters", CLUSTER, "cluster"),
        ("datastores", DATASTORE, "datastore"),
        ("networks", VNET, "network"),
        ("hosts", HOST, "host"),
    ):
        for oid in provision.ids("infrastructure", key):
            try:
                obj = one.info(kind, oid)
            except NotFoundError:
                continue
            data = obj.to_dict()[obj.root.tag]
            template = data.get("TEMPLATE") or {}
            provision_data = template.get("PROVISION") if isinstance(template, dict) else None
            provision_map = dict(provision_data) if isinstance(provision_data, dict) else {}
            objects.append(TfObject(tf_type, oid, obj.name, provision_map, data))
    return objects


EXPORT_KINDS = (IMAGE, TEMPLATE, DOCUMENT)


def _export_pool(one: OneApi, kind: str) -> list[OneObject]:
    if kind == DOCUMENT:
        return list(one.pool(DOCUMENT, doc_type=DOC_SERVICE_TEMPLATE))
    return list(one.pool(kind))


def _last_ids(one: OneApi) -> dict[str, int]:
    """The highest ID of each kind an export makes (IDs only grow)."""
    return {kind: max((o.id for o in _export_pool(one, kind)), default=-1) for kind in EXPORT_KINDS}


def remove_export_orphans(one: OneApi, pending: Mapping[str, Any]) -> None:
    """Delete what a process killed inside a marketplace app export had made but not recorded:
    this user's objects newer than the pending record whose names the export gives (``name``,
    ``name_1``, ``name-child…``, or ``vmname``).  Nothing when the export was recorded."""
    after = pending.get("after")
    prefixes = [str(p) for p in pending.get("prefixes") or [] if str(p)]
    if pending.get("created") or not isinstance(after, dict) or not prefixes:
        return
    uid = one.whoami().uid
    # the service template first, then VM templates, then images (they are in use by those)
    for kind in (DOCUMENT, TEMPLATE, IMAGE):
        last = after.get(kind)
        if not isinstance(last, int):
            continue
        for obj in _export_pool(one, kind):
            if (
                obj.id > last
                and obj.uid == uid
                and any(obj.name.startswith(prefix) for prefix in prefixes)
            ):
                with contextlib.suppress(NotFoundError):
                    one.delete(kind, obj.id)


def find_pending(one: OneApi, provision: Provision, pending: Mapping[str, Any]) -> int | None:
    """The object a crashed run was creating: by the ID it recorded, else by the exact name
    it was about to use (and, for objects with a template, this provision's ``PROVISION/ID``)."""
    kind = str(pending.get("kind"))
    if kind == "marketplaceapp":
        # an export rolls itself back when it fails, and what it created is recorded in the
        # same update that names it (``created``); what a killed export left is removed by
        # remove_export_orphans, not adopted
        return None
    oid = pending.get("id")
    if isinstance(oid, int):
        try:
            one.info(kind, oid)
            return oid
        except NotFoundError:
            return None
    name = pending.get("name")
    if kind == DOCUMENT:
        pool = one.pool(DOCUMENT, doc_type=DOC_SERVICE_TEMPLATE)
        for doc in pool:
            body = _body_of(doc) or {}
            if doc.name == name and _provision_id_of_flow(body) == provision.id:
                return doc.id
        return None
    for obj in one.pool(kind):
        if obj.name != name:
            continue
        owner = obj.text("TEMPLATE/PROVISION/ID").strip()
        # clusters and hosts get their PROVISION after the allocate: the name decides
        if owner == str(provision.id) or (kind in (CLUSTER, HOST) and not owner):
            return obj.id
    return None


def new_document(
    one: OneApi, plan: ProvisionPlan, provider: ProviderInfo, options: CreateOptions
) -> Provision:
    """Allocate the provision document (DEPLOYING) with the plan, before any object."""
    body: dict[str, Any] = {
        "name": plan.name,
        "description": plan.description or "",
        "start_time": int(time.time()),
        "state": DEPLOYING,
        "provider": provider.name,
        "provision": empty_record(),
    }
    if plan.ansible.form == "ansible":
        body["ansible"] = {
            "ver_min": plan.ansible.ver_min,
            "ver_max": plan.ansible.ver_max,
            "playbook": list(plan.ansible.playbooks),
        }
    if plan.ceph_vars is not None:
        ceph_vars = dict(plan.ceph_vars)
        ceph_vars.setdefault("ceph_secret_uuid", _uuid())
        body["ceph_vars"] = ceph_vars
    for key, value in plan.extra.items():
        body.setdefault(key, value)
    body["onetools"] = {
        "plan": plan_to_dict(plan),
        "options": options.stored(),
        "steps": [],
        "done": {},
        # a process killed before it locks leaves a record of itself all the same
        "lock": _holder(),
    }
    text = (
        f"<TEMPLATE><NAME>{_escape(plan.name)}</NAME><BODY>{_cdata(_dumps(body))}</BODY></TEMPLATE>"
    )
    oid = one.allocate_document(text, DOC_PROVISION)
    return get_provision(one, oid)


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _mark_error(provision: Provision) -> Callable[[], None]:
    def mark() -> None:
        with contextlib.suppress(OneError):
            provision.body["state"] = ERROR
            provision.save()

    return mark


def create(
    one: OneApi,
    plan: ProvisionPlan,
    options: CreateOptions,
    ui: Ui,
    policy: FailPolicy | None = None,
    provider: ProviderInfo | None = None,
    on_allocated: Callable[[int], None] | None = None,
) -> Provision:
    """Deploy ``plan`` (§4.2, 6.4+ order) and return the RUNNING provision.

    ``provider`` defaults to the one the plan names; ``on_allocated(id)`` is called as soon as
    the document exists (the CLI prints ``ID: n`` there).  A failure the fail modes turn into
    ``quit`` raises ``StepFailed`` (the provision stays in ERROR, resumable); ``cleanup``
    deletes everything and raises ``StepFailed`` too (exit 255, not the original's 0).
    """
    if provider is None:
        provider = find_provider(one, plan.provider_name)
    _check_ansible(plan, options)
    document = new_document(one, plan, provider, options)
    if on_allocated is not None:
        on_allocated(document.id)
    return _continue(one, document.id, options, ui, policy or FailPolicy(), provider)


def _check_ansible(plan: ProvisionPlan, options: CreateOptions) -> None:
    if options.skip_provision or options.skip_config or not plan.hosts:
        return
    from onetools.provision.ansible import check_version

    check_version(plan.ansible.ver_min, plan.ansible.ver_max)


def resume(
    one: OneApi,
    oid: int,
    ui: Ui,
    policy: FailPolicy | None = None,
    options: CreateOptions | None = None,
) -> Provision:
    """Finish a create that was interrupted (killed, or quit after a failure): continue from
    the first unfinished step, adopting the object being created when it stopped."""
    provision = get_provision(one, oid)
    stored = provision.body.get("onetools")
    if not isinstance(stored, dict) or "plan" not in stored:
        raise ProvisionError(f"Provision {oid} was not created by onetools: it cannot be resumed")
    if provision.state == DELETING:
        raise ProvisionError(f"Provision {oid} is being deleted: it cannot be resumed")
    if provision.state == RUNNING and all(provision.finished(step) for step in STEPS):
        raise ProvisionError(f"Provision {oid} is already RUNNING: nothing to resume")
    options = options or CreateOptions()
    for key, value in (stored.get("options") or {}).items():
        if hasattr(options, key):
            setattr(options, key, value)
    return _continue(one, oid, options, ui, policy or FailPolicy(), None)


def _continue(
    one: OneApi,
    oid: int,
    options: CreateOptions,
    ui: Ui,
    policy: FailPolicy,
    provider: ProviderInfo | None,
    prepare: Callable[[Provision], list[int] | None] | None = None,
) -> Provision:
    with locked(one, oid) as provision:
        limit = prepare(provision) if prepare is not None else None
        plan = plan_from_dict(provision.meta["plan"])
        if provider is None:
            provider = _provider_of(one, provision)
        handler = FailureHandler(policy, ui, _mark_error(provision))
        if provision.finished("hosts") and limit is None:
            handler.cleanup_allowed = True
        if provision.state != DEPLOYING:
            provision.set_state(DEPLOYING)
        _recover_terraform(provision, options.workdir_root)
        run = _Run(one, provision, plan, provider, options, ui, handler)
        run.limit = limit
        try:
            run.run()
        except CleanupRequested as request:
            ui.error(f"Cleaning up provision {oid} after: {request.what}")
            _delete_locked(
                one,
                provision,
                DeleteOptions(
                    cleanup=options.cleanup,
                    cleanup_timeout=options.cleanup_timeout,
                    # not --force (as 6.4+ does): an error must not hide a leftover object
                    force=False,
                    template_dir=options.template_dir,
                    terraform_binary=options.terraform_binary,
                    workdir_root=options.workdir_root,
                ),
                ui,
                FailureHandler(FailPolicy(batch=True, modes=["quit"]), ui),
            )
            raise StepFailed(
                f"Provision {oid} failed ({request.what}) and was cleaned up: nothing was left"
            ) from None
        except (KeyboardInterrupt, OnetoolsError):
            # whatever stopped the run, the provision says so (ERROR: resumable, deletable)
            _mark_error(provision)()
            raise
        return provision


def _recover_terraform(provision: Provision, root: str | None) -> None:
    """Terraform state a killed run left in the provision's run directories goes into the
    body before anything else happens (else a delete would not destroy it)."""
    tf = provision.body.get("tf")
    if not isinstance(tf, dict) or not tf.get("conf"):
        return
    from onetools.provision import terraform

    parent = workdir_parent(provision, root)
    _wait_for_terraform(parent)
    current = terraform.decode(tf["state"]) if tf.get("state") else None
    recovered = terraform.recover_state(parent, current)
    if recovered:
        tf["state"] = terraform.encode(recovered)
        provision.save()


#: How long a resume/delete waits for the Terraform of a killed run to finish writing.
TERRAFORM_WAIT = 60.0


def _wait_for_terraform(parent: str, timeout: float = TERRAFORM_WAIT) -> None:
    """Wait while a Terraform of a killed run still works in a run directory.

    When onetools is killed, its Terraform is interrupted (parent-death signal) but goes on
    for a moment: it stops what it creates and writes the state, holding the state lock file
    meanwhile.  Reading the state before would see a half-written file (learned the hard way:
    under load the next command came first).  A lock file that outlives ``timeout`` (a
    Terraform that was itself killed) is left to ``recover_state``, which reads what is there.
    """
    import glob

    pattern = os.path.join(parent, "onetools-tf-*", ".terraform.tfstate.lock.info")
    deadline = time.monotonic() + timeout
    while glob.glob(pattern) and time.monotonic() < deadline:
        time.sleep(0.2)


# -- configure --------------------------------------------------------------------------------
def _ansible_of(provision: Provision) -> Any:
    """The playbooks and version range: from the stored plan, else the body's ``ansible``
    (6.10 documents made by the original)."""
    stored = provision.meta.get("plan")
    if isinstance(stored, dict):
        return plan_from_dict(stored).ansible
    from onetools.provision.template import AnsibleSettings

    recorded = provision.body.get("ansible") or {}
    return AnsibleSettings(
        tuple(recorded.get("playbook") or ()),
        recorded.get("ver_min"),
        recorded.get("ver_max"),
        "ansible",
    )


def _ansible_hosts(one: OneApi, provision: Provision) -> list[Any]:
    """The provision's hosts as Ansible sees them: address, connection, host vars."""
    return _as_ansible_hosts(
        [one.info(HOST, oid) for oid in provision.ids("infrastructure", "hosts")]
    )


def _as_ansible_hosts(host_objects: Sequence[OneObject]) -> list[Any]:
    import yaml

    from onetools.provision import ansible as ansible_layer

    hosts = []
    for host in host_objects:
        connection = host.template("TEMPLATE").get("PROVISION_CONNECTION") or {}
        encoded = host.text("TEMPLATE/PROVISION_CONFIGURATION_BASE64")
        host_vars = yaml.safe_load(base64.b64decode(encoded)) if encoded else {}
        port_text = str(connection.get("REMOTE_PORT") or "22")
        hosts.append(
            ansible_layer.AnsibleHost(
                name=host.name,
                port=int(port_text) if port_text.isdigit() else 22,
                user=str(connection.get("REMOTE_USER") or "root"),
                private_key=connection.get("PRIVATE_KEY") or None,
                host_vars=host_vars or {},
                inventory_vars=host.text("TEMPLATE/ANSIBLE_HOST_VARS"),
            )
        )
    return hosts


#: (upper bound, reservation) steps of §2.14: CPU shares by processor count, memory in MB
#: by total memory in MB; above the last bound the final value applies.
RESERVED_CPU_STEPS = ((4, 0), (10, 100), (20, 200))
RESERVED_CPU_TOP = 300
RESERVED_MEM_STEPS = (
    (4000, 0),
    (6001, 1000),
    (10000, 2000),
    (20000, 4000),
    (40000, 5000),
    (64000, 8000),
    (128000, 12000),
)
RESERVED_MEM_TOP = 16000


def reservations(facts: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(RESERVED_CPU, RESERVED_MEM in KB)`` of an HCI host from its Ansible facts, None
    when the facts lack the processor count or the memory total (§2.14).

    ``ansible_processor_count`` is the socket count on most systems, so the CPU reservation
    is usually 0: the original's quirk, kept so that both tools reserve the same."""
    processors = facts.get("ansible_processor_count", facts.get("processor_count"))
    memory = facts.get("ansible_memtotal_mb", facts.get("memtotal_mb"))
    try:
        processors, memory = int(processors), int(memory)
    except (TypeError, ValueError):
        return None
    cpu = next((value for bound, value in RESERVED_CPU_STEPS if processors <= bound), None)
    mem = next((value for bound, value in RESERVED_MEM_STEPS if memory <= bound), None)
    cpu = RESERVED_CPU_TOP if cpu is None else cpu
    mem = RESERVED_MEM_TOP if mem is None else mem
    return cpu, mem * 1024


def _default_ipv4_nic(facts: Mapping[str, Any]) -> str | None:
    default = facts.get("ansible_default_ipv4", facts.get("default_ipv4")) or {}
    interface = default.get("interface") if isinstance(default, dict) else None
    return str(interface) if interface else None


def _late_values(plan: ProvisionPlan) -> list[tuple[str, PlanObject, str, str]]:
    """``(section, item, key, value)`` of every attribute holding an ``${updates.*}``."""
    found = []
    for section in ("datastores", "networks", "vntemplates"):
        for item in getattr(plan, section):
            for key, value in item.attributes.items():
                if isinstance(value, str) and "${updates." in value:
                    found.append((section, item, key, value))
    return found


def apply_updates(
    one: OneApi,
    provision: Provision,
    plan: ProvisionPlan,
    ui: Ui,
    handler: FailureHandler,
    *,
    configured: bool,
    threads: int = 3,
) -> None:
    """After configuration (6.4+): resolve ``${updates.KEY}`` on the datastores, networks and
    VN templates, and give HCI hosts ``RESERVED_CPU``/``RESERVED_MEM`` from their facts
    (§2.11, §2.14). Facts are gathered only when needed, and only once the hosts are
    configured: with the configuration skipped, what needs facts is left as it is, said."""
    host_objects = [one.info(HOST, oid) for oid in provision.ids("infrastructure", "hosts")]
    late = _late_values(plan)
    updates: dict[str, Any] = {}
    if host_objects:
        updates["first_host"] = host_objects[0].name
        ceph = [
            h.name
            for h in host_objects
            if h.text("TEMPLATE/PROVISION/CEPH_GROUP") in ("osd", "osd,mon")
        ]
        if ceph:
            updates["ceph_hosts_list"] = " ".join(ceph)
    secret = (plan.ceph_vars or {}).get("ceph_secret_uuid") or (
        provision.body.get("ceph_vars") or {}
    ).get("ceph_secret_uuid")
    if secret:
        updates["ceph_secret"] = secret
    wants_nic = any("${updates.default_ipv4_nic}" in value for _, _, _, value in late)
    hci = plan.ceph_vars is not None or provision.body.get("ceph_vars") is not None
    if host_objects and (wants_nic or hci):
        if not configured:
            ui.warning("Configuration skipped: values from Ansible facts are left unresolved")
        else:
            _apply_facts(one, host_objects, handler, updates, hci=hci, threads=threads)
    if not late or not updates:
        return
    from onetools.provision.template import SubstitutionContext, substitute

    context = SubstitutionContext(updates=updates)
    changes: dict[tuple[str, int], dict[str, Any]] = {}
    for section, item, key, value in late:
        oid = provision.meta["done"].get(f"{section}/{item.position}")
        if not isinstance(oid, int):
            continue
        new = substitute(value, context)
        if new != value:
            changes.setdefault((section, oid), {})[key] = new
    for (section, oid), changed in changes.items():
        one.update(SECTIONS[section][0], oid, template_text(changed), merge=True)


def _apply_facts(
    one: OneApi,
    host_objects: Sequence[OneObject],
    handler: FailureHandler,
    updates: dict[str, Any],
    *,
    hci: bool,
    threads: int,
) -> None:
    """Gather facts (all hosts for HCI, else the first) and record what they give."""
    from onetools.provision import ansible as ansible_layer

    hosts = _as_ansible_hosts(host_objects if hci else host_objects[:1])
    ids = [host.id for host in host_objects]

    def gather() -> None:
        facts = ansible_layer.gather_facts(hosts, threads=threads)
        nic = _default_ipv4_nic(facts.get(hosts[0].name) or {})
        if nic:
            updates["default_ipv4_nic"] = nic
        if not hci:
            return
        missing = []
        for oid, host in zip(ids, hosts, strict=True):
            reserved = reservations(facts.get(host.name) or {})
            if reserved is None:
                missing.append(f"Missing facts for {host.name}")
                continue
            cpu, mem = reserved
            one.update(HOST, oid, f'RESERVED_CPU="{cpu}"\nRESERVED_MEM="{mem}"\n', merge=True)
        if missing:
            raise ProvisionError("\n".join(missing))

    handler.run("Failed to gather facts", gather)


def configure_hosts(
    one: OneApi,
    provision: Provision,
    ansible: Any,
    ui: Ui,
    handler: FailureHandler,
    threads: int = 3,
    playbook_dir: str | None = None,
    ping_retries: int = 30,
    ping_timeout: float = 20.0,
    limit: Sequence[str] | None = None,
) -> None:
    """Run the playbooks on the provision's hosts (§4.5): CONFIGURING, then RUNNING is left
    to the caller; a failure goes through the fail modes (state ERROR)."""
    from onetools.provision import ansible as ansible_layer

    hosts = _ansible_hosts(one, provision)
    playbooks = list(ansible.playbooks)
    provision.set_state(CONFIGURING)

    def run() -> None:
        ansible_layer.check_version(ansible.ver_min, ansible.ver_max)
        ansible_layer.run_playbooks(
            hosts,
            playbooks,
            playbook_dir=playbook_dir,
            threads=threads,
            limit=limit,
            progress=ui.info,
            ping_retries=ping_retries,
            ping_timeout=ping_timeout,
        )

    handler.run("Failed to configure hosts", run)


def configure(
    one: OneApi,
    oid: int,
    ui: Ui,
    policy: FailPolicy | None = None,
    force: bool = False,
    threads: int = 3,
    playbook_dir: str | None = None,
) -> Provision:
    """``configure [--force]`` (§1.3): without force only an ERROR provision; with force
    anything but PENDING, DEPLOYING, DELETING."""
    with locked(one, oid) as provision:
        state = provision.state
        allowed = state not in (PENDING, DEPLOYING, DELETING) if force else state == ERROR
        if not allowed:
            raise ProvisionError(f"Can't configure provision in {state_name(state)}")
        ansible = _ansible_of(provision)
        handler = FailureHandler(policy or FailPolicy(), ui, _mark_error(provision))
        configure_hosts(
            one, provision, ansible, ui, handler, threads=threads, playbook_dir=playbook_dir
        )
        stored = provision.meta.get("plan")
        if isinstance(stored, dict):  # documents made by the original have no plan to replay
            apply_updates(
                one,
                provision,
                plan_from_dict(stored),
                ui,
                handler,
                configured=True,
                threads=threads,
            )
        for host in provision.ids("infrastructure", "hosts"):
            one.host_status(host, HOST_ENABLED)
        provision.set_state(RUNNING)
        return provision


# -- delete -----------------------------------------------------------------------------------
def delete(
    one: OneApi, oid: int, options: DeleteOptions, ui: Ui, policy: FailPolicy | None = None
) -> None:
    """Delete a provision as §4.7, from any partial record (a killed create or delete)."""
    with locked(one, oid) as provision:
        handler = FailureHandler(policy or FailPolicy(), ui, _mark_error(provision))
        _delete_locked(one, provision, options, ui, handler)


def _check_deletable(one: OneApi, provision: Provision) -> None:
    for oid in provision.ids("infrastructure", "hosts"):
        try:
            host = one.info(HOST, oid)
        except NotFoundError:
            continue
        if host.int("HOST_SHARE/RUNNING_VMS", 0) > 0:
            raise ProvisionError("Provision with running VMs can't be deleted")
    own = set(provision.ids("resource", "images"))
    for oid in provision.ids("infrastructure", "datastores"):
        try:
            datastore = one.info(DATASTORE, oid)
        except NotFoundError:
            continue
        if set(datastore.ids("IMAGES")) - own:
            raise ProvisionError("Provision with images can't be deleted")


def _delete_locked(
    one: OneApi,
    provision: Provision,
    options: DeleteOptions,
    ui: Ui,
    handler: FailureHandler,
) -> None:
    if not options.cleanup and not options.force:
        _check_deletable(one, provision)
    # an object a killed create was making is part of the provision too
    pending = provision.meta.get("pending")
    if isinstance(pending, dict) and pending.get("kind") == "marketplaceapp":
        remove_export_orphans(one, pending)
    if isinstance(pending, dict):
        oid = find_pending(one, provision, pending)
        if oid is not None:
            section = str(pending["key"]).split("/")[0]
            _, group, key = SECTIONS[section]
            provision.add_entry(group, key, oid, str(pending.get("name", "")))
        provision.meta.pop("pending", None)
    provision.body["state"] = DELETING
    provision.save()
    if options.cleanup and not options.force:
        _cleanup_images(one, provision, options, handler)
    _recover_terraform(provision, options.workdir_root)
    _destroy_infrastructure(one, provision, options, ui, handler)

    def remove(kind: str, group: str, key: str, oid: int) -> None:
        def action() -> None:
            try:
                if kind == HOST:
                    host = one.info(HOST, oid)
                    if host.int("STATE") != 8:
                        one.host_status(oid, HOST_OFFLINE)
                elif kind == CLUSTER:
                    _empty_cluster(one, oid)
                one.delete(kind, oid)
            except NotFoundError:
                pass  # already gone (a previous, interrupted delete)
            except OneError as exc:
                if not options.force:
                    raise
                ui.warning(f"Ignored: {exc.message}")

        result = handler.run(f"Failed to delete {key[:-1]} {oid}", action)
        if result is not SKIPPED:
            provision.remove_entry(group, key, oid)

    # One save per kind, not per object: a delete killed in between leaves records of objects
    # already gone, which the next delete finds missing and passes over.  That is safe because
    # IDs are never reused (oned's and the store's pool counters only grow), so a recorded ID
    # can't have become somebody else's object.
    for group, key, kind in (
        ("infrastructure", "hosts", HOST),
        ("resource", "images", IMAGE),
        ("resource", "templates", TEMPLATE),
        ("resource", "vntemplates", VNTEMPLATE),
        ("resource", "flowtemplates", DOCUMENT),
        ("infrastructure", "datastores", DATASTORE),
        ("infrastructure", "networks", VNET),
        ("infrastructure", "clusters", CLUSTER),
    ):
        ids = list(provision.ids(group, key))
        try:
            for oid in ids:
                remove(kind, group, key, oid)
        finally:
            if ids:
                provision.save()
    left = [
        f"{key} {oid}"
        for group, lists in provision.record.items()
        for key, entries in lists.items()
        for oid in [entry["id"] for entry in entries]
    ]
    if left:
        provision.body["state"] = ERROR
        provision.save()
        raise ProvisionError(
            f"Provision {provision.id} not deleted: objects left ({', '.join(left)})"
        )
    one.delete(DOCUMENT, provision.id)


def _empty_cluster(one: OneApi, oid: int) -> None:
    """Detach what is still in the cluster (pre-existing datastores such as 1 and 2 are
    detached, not deleted)."""
    cluster = one.info(CLUSTER, oid)
    for collection, kind in (("DATASTORES", DATASTORE), ("VNETS", VNET), ("HOSTS", HOST)):
        for member in cluster.ids(collection):
            with contextlib.suppress(NotFoundError):
                one.cluster_remove(oid, kind, member)


def _cleanup_images(
    one: OneApi, provision: Provision, options: DeleteOptions, handler: FailureHandler
) -> None:
    own = set(provision.ids("resource", "images"))
    for ds in provision.ids("infrastructure", "datastores"):
        try:
            images = set(one.info(DATASTORE, ds).ids("IMAGES")) - own
        except NotFoundError:
            continue
        for image in sorted(images):
            handler.run(
                f"Still found image {image}",
                lambda image=image: _delete_and_wait(one, IMAGE, image, options.cleanup_timeout),  # type: ignore[misc]
            )


def _delete_and_wait(one: OneApi, kind: str, oid: int, timeout: float) -> None:
    with contextlib.suppress(NotFoundError):
        one.delete(kind, oid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            one.info(kind, oid)
        except NotFoundError:
            return
        time.sleep(0.5)
    raise ProvisionError(f"Fail to delete {kind} {oid}: still there after {timeout:g} s")


def _destroy_infrastructure(
    one: OneApi,
    provision: Provision,
    options: DeleteOptions,
    ui: Ui,
    handler: FailureHandler,
) -> None:
    tf = provision.body.get("tf")
    if not isinstance(tf, dict) or not tf.get("conf") or not tf.get("state"):
        return
    from onetools.provision import terraform

    provider = _provider_of(one, provision)
    runner = terraform.TerraformRunner(
        workdir_parent(provision, options.workdir_root),
        binary=options.terraform_binary,
        log=ui.info,
    )
    variables = terraform.terraform_variables(provider.driver, provider.connection)
    conf = terraform.decode(tf["conf"])

    def destroy() -> None:
        state = terraform.decode(tf["state"])
        try:
            new_state = runner.destroy(conf, state, variables=variables)
        except terraform.TerraformError as exc:
            if exc.state:
                tf["state"] = terraform.encode(exc.state)
                provision.save()
            raise
        tf["state"] = terraform.encode(new_state) if new_state else ""
        provision.save()

    ui.warning("This operation can take tens of minutes. Please be patient.")
    handler.run("Failed to destroy the infrastructure with Terraform", destroy)


# -- per-object operations (§4.8) -------------------------------------------------------------
def owner_of(one: OneApi, group: str, oid: int) -> int:
    """The provision ID an object carries (``PROVISION/ID``)."""
    _, _, kind = GROUPS[group]
    obj = one.info(kind, oid)
    if kind == DOCUMENT:
        owner = _provision_id_of_flow(_body_of(obj) or {})
    else:
        text = obj.text("TEMPLATE/PROVISION/ID").strip()
        owner = int(text) if text.isdigit() else None
    if owner is None:
        raise ProvisionError(f"{group.capitalize()} {oid} does not belong to a provision")
    return owner


def delete_object(
    one: OneApi,
    group: str,
    oid: int,
    ui: Ui,
    policy: FailPolicy | None = None,
    force: bool = False,
    template_dir: str | None = None,
    workdir_root: str | None = None,
) -> int:
    """``<group> delete ID``: a targeted Terraform destroy of that object only (not every host,
    §8.1 #1), then the OpenNebula object, then its entry in the provision.  Returns the
    provision ID."""
    record_group, key, kind = GROUPS[group]
    provision_id = owner_of(one, group, oid)
    with locked(one, provision_id) as provision:
        handler = FailureHandler(policy or FailPolicy(), ui, _mark_error(provision))
        tf = provision.body.get("tf")
        if isinstance(tf, dict) and tf.get("conf") and tf.get("state") and kind != DOCUMENT:
            from onetools.provision import terraform

            provider = _provider_of(one, provision)
            target = terraform.destroy_target(provider.driver, group, oid, template_dir)
            if target is not None:
                runner = terraform.TerraformRunner(
                    workdir_parent(provision, workdir_root), log=ui.info
                )
                variables = terraform.terraform_variables(provider.driver, provider.connection)

                def destroy() -> None:
                    state = runner.destroy(
                        terraform.decode(tf["conf"]),
                        terraform.decode(tf["state"]),
                        [target],
                        variables,
                    )
                    tf["state"] = terraform.encode(state) if state else ""
                    provision.save()

                if handler.run(f"Failed to destroy {group} {oid}", destroy) is SKIPPED:
                    return provision_id

        def remove() -> None:
            try:
                if kind == HOST and one.info(HOST, oid).int("STATE") != 8:
                    one.host_status(oid, HOST_OFFLINE)
                if kind == CLUSTER:
                    _empty_cluster(one, oid)
                one.delete(kind, oid)
            except NotFoundError:
                pass
            except OneError as exc:
                if not force:
                    raise
                ui.warning(f"Ignored: {exc.message}")

        if handler.run(f"Failed to delete {group} {oid}", remove) is not SKIPPED:
            provision.remove_entry(record_group, key, oid)
            provision.save()
        return provision_id


def configure_host(
    one: OneApi,
    oid: int,
    ui: Ui,
    policy: FailPolicy | None = None,
    threads: int = 3,
    playbook_dir: str | None = None,
) -> int:
    """``host configure ID``: the provision's playbooks on that host only (``--limit``; the
    other hosts are in the inventory, so plays that look at the group still see them).
    Returns the provision ID."""
    provision_id = owner_of(one, "host", oid)
    with locked(one, provision_id) as provision:
        if oid not in provision.ids("infrastructure", "hosts"):
            raise ProvisionError(f"Host {oid} is not recorded in provision {provision_id}")
        if provision.state in (PENDING, DEPLOYING, DELETING):
            raise ProvisionError(f"Can't configure hosts of provision in {provision.state_name}")
        ansible = _ansible_of(provision)
        handler = FailureHandler(policy or FailPolicy(), ui, _mark_error(provision))
        name = one.info(HOST, oid).name
        configure_hosts(
            one,
            provision,
            ansible,
            ui,
            handler,
            threads=threads,
            playbook_dir=playbook_dir,
            limit=[name],
        )
        one.host_status(oid, HOST_ENABLED)
        provision.set_state(RUNNING)
        return provision_id


def ssh_command(one: OneApi, oid: int, command: str | None = None) -> list[str]:
    """``host ssh ID [COMMAND]``: the ``ssh`` command line that reaches a provision host as
    its provision's remote user, with its key and port (host keys are not recorded: provision
    hosts are new machines)."""
    owner_of(one, "host", oid)
    host = one.info(HOST, oid)
    connection = host.template("TEMPLATE").get("PROVISION_CONNECTION") or {}
    if not isinstance(connection, dict):
        connection = {}
    argv = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    if connection.get("PRIVATE_KEY"):
        argv += ["-i", str(connection["PRIVATE_KEY"])]
    port = str(connection.get("REMOTE_PORT") or "22")
    argv += ["-p", port, f"{connection.get('REMOTE_USER') or 'root'}@{host.name}"]
    if command:
        argv.append(command)
    return argv


# -- day-2: hosts and IPs (6.4+, §1.3) --------------------------------------------------------
#: The steps a host add runs again (the others stay finished).
HOST_ADD_STEPS = ("hosts", "infrastructure", "configuration", "enable")


def add_hosts(
    one: OneApi,
    oid: int,
    ui: Ui,
    policy: FailPolicy | None = None,
    amount: int = 1,
    hostnames: Sequence[str] | None = None,
    host_params: Mapping[str, str] | None = None,
    options: CreateOptions | None = None,
) -> list[int]:
    """``host add ID``: hosts like the provision's first one (``amount`` of them, or one per
    name of ``hostnames``; else named ``edge-host<index>``), deployed with Terraform (only the
    new servers are created: the stored state has the others), configured with the playbooks
    limited to them, enabled.  The new hosts are added to the stored plan and the steps they
    need marked unfinished first, so a killed host add is finished by ``create --resume``.
    Returns the new host IDs."""
    import copy

    from onetools.provision.template import PlanHost

    names = [name.strip() for name in (hostnames or []) if name.strip()]
    count = len(names) if names else amount
    if count < 1:
        raise ProvisionError("host add: --amount must be at least 1")
    positions: list[int] = []

    def prepare(provision: Provision) -> list[int]:
        if provision.state != RUNNING:
            raise ProvisionError(f"Can't add hosts to provision in {provision.state_name}")
        stored = provision.meta.get("plan")
        if not isinstance(stored, dict) or not stored.get("hosts"):
            raise ProvisionError(
                f"Provision {oid} has no host to clone (or was not created by onetools)"
            )
        plan = plan_from_dict(stored)
        first = plan.hosts[0]
        index = len(provision.ids("infrastructure", "hosts"))
        done_positions = [
            int(key.split("/")[1]) for key in provision.meta["done"] if key.startswith("hosts/")
        ]
        position = 1 + max([item.position for item in plan.hosts] + done_positions)
        for number in range(count):
            attributes = copy.deepcopy(first.attributes)
            section = attributes.setdefault("provision", {})
            hostname = names[number] if names else f"edge-host{index}"
            section.update({str(k).lower(): v for k, v in (host_params or {}).items()})
            section.update({"hostname": hostname, "index": index})
            plan.hosts.append(
                PlanHost("host", position, attributes, first.meta, None, index, 0, hostname)
            )
            positions.append(position)
            index += 1
            position += 1
        provision.meta["plan"] = plan_to_dict(plan)
        provision.meta["steps"] = [s for s in provision.meta["steps"] if s not in HOST_ADD_STEPS]
        provision.save()
        return positions

    options = options or CreateOptions()
    for key, value in (get_provision(one, oid).meta.get("options") or {}).items():
        if hasattr(options, key):
            setattr(options, key, value)
    provision = _continue(one, oid, options, ui, policy or FailPolicy(), None, prepare)
    done = provision.meta["done"]
    return [done[f"hosts/{p}"] for p in positions if isinstance(done.get(f"hosts/{p}"), int)]


def add_ips(
    one: OneApi, oid: int, ui: Ui, policy: FailPolicy | None = None, amount: int = 1
) -> int:
    """``ip add ID``: ``amount`` address ranges like the stored ``ar_template`` added to the
    provision's first network, which must be ``elastic`` (§1.3).  Returns the network ID."""
    if amount < 1:
        raise ProvisionError("ip add: --amount must be at least 1")
    with locked(one, oid) as provision:
        if provision.state != RUNNING:
            raise ProvisionError(f"Can't add IPs to provision in {provision.state_name}")
        networks = provision.ids("infrastructure", "networks")
        if not networks:
            raise ProvisionError("Provision has no networks")
        network = one.info(VNET, networks[0])
        vn_mad = network.text("VN_MAD")
        if vn_mad != "elastic":
            raise ProvisionError(f"Can't add IPs to network, wrong VN_MAD '{vn_mad}'")
        ar_template = provision.body.get("ar_template")
        if not ar_template:
            raise ProvisionError("Provision has no address range template (ar_template)")
        handler = FailureHandler(policy or FailPolicy(), ui, _mark_error(provision))
        for _ in range(amount):
            handler.run(
                f"Failed to add IPs to network {networks[0]}",
                lambda: one.vnet_add_ar(networks[0], str(ar_template)),
            )
        provision.set_state(RUNNING)
        return networks[0]
