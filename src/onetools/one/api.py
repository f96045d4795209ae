"""The OpenNebula object interface: one contract, two implementations.

``OneApi`` is everything ``oneprovider``, ``oneprovision``, ``onemarket`` and ``onemarketapp``
ask of OpenNebula.  It follows the XML-RPC API (``reference/xmlrpc.md``) closely, because the
remote implementation is a thin mapping onto it, while the embedded store emulates what oned
does for each call (ids, owners, permissions, the XML bodies oned writes, locks, errors).

Implementations (registered by dotted name in ``onetools.one.registry``):

* ``onetools.one.local.LocalOne``   — the embedded default: a SQLite file with OpenNebula's
  schema in ``$ONETOOLS_HOME``;
* ``onetools.one.xmlrpc.XmlRpcOne`` — a real front-end through ``pyone``.

Every method returns plain data or raises a ``OneError`` subclass (``onetools.one.errors``);
nothing above this layer knows which implementation it talks to.  Objects come back as
``OneObject``: the XML oned returns, with accessors; both implementations return the same XML,
so ``OneObject.to_dict()`` (``--json``/``--yaml``) has the same shape for both.

Templates given to allocate/update are OpenNebula template text (``NAME = "x"``,
``DISK = [ IMAGE_ID = 3 ]``) or XML whose root is ``<TEMPLATE>``, exactly as oned accepts them;
``onetools.one.template.render`` builds that text from a mapping.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from onetools.one.xml import OneObject

# ---- object kinds --------------------------------------------------------------------------
# The names are the XML-RPC object names (``one.<kind>.info``); ``POOL_ROOT``/``OBJECT_ROOT``
# give the XML elements.
CLUSTER = "cluster"
HOST = "host"
DATASTORE = "datastore"
VNET = "vn"
IMAGE = "image"
TEMPLATE = "template"
VNTEMPLATE = "vntemplate"
DOCUMENT = "document"
MARKET = "market"
MARKETAPP = "marketapp"
USER = "user"
GROUP = "group"
VM = "vm"

KINDS: tuple[str, ...] = (
    CLUSTER,
    HOST,
    DATASTORE,
    VNET,
    IMAGE,
    TEMPLATE,
    VNTEMPLATE,
    DOCUMENT,
    MARKET,
    MARKETAPP,
    USER,
    GROUP,
    VM,
)

OBJECT_ROOT: dict[str, str] = {
    CLUSTER: "CLUSTER",
    HOST: "HOST",
    DATASTORE: "DATASTORE",
    VNET: "VNET",
    IMAGE: "IMAGE",
    TEMPLATE: "VMTEMPLATE",
    VNTEMPLATE: "VNTEMPLATE",
    DOCUMENT: "DOCUMENT",
    MARKET: "MARKETPLACE",
    MARKETAPP: "MARKETPLACEAPP",
    USER: "USER",
    GROUP: "GROUP",
    VM: "VM",
}
POOL_ROOT: dict[str, str] = {kind: f"{root}_POOL" for kind, root in OBJECT_ROOT.items()}

#: Object names oned uses in its error messages (``Request::object_name``).
MESSAGE_NAME: dict[str, str] = {
    CLUSTER: "cluster",
    HOST: "host",
    DATASTORE: "datastore",
    VNET: "virtual network",
    IMAGE: "image",
    TEMPLATE: "virtual machine template",
    VNTEMPLATE: "virtual network template",
    DOCUMENT: "document",
    MARKET: "marketplace",
    MARKETAPP: "marketplaceapp",
    USER: "user",
    GROUP: "group",
    VM: "virtual machine",
}

#: Pools that take no filter/range (always everything the user may see).
UNFILTERED_POOLS = frozenset({CLUSTER, HOST, DATASTORE, MARKET, USER, GROUP})
#: Objects with ``one.<kind>.lock``.
LOCKABLE = frozenset({DOCUMENT, MARKETAPP, IMAGE, TEMPLATE, VNTEMPLATE, VNET})
#: VM pools: ``one.vmpool.info`` also takes a state filter; this one lists every VM not DONE.
VM_STATE_NOT_DONE = -1
#: Objects without owner/permissions (no chown/chmod).
UNOWNED = frozenset({CLUSTER, HOST})

# ---- pool filter flags (xmlrpc.md §1.6) ----------------------------------------------------
FILTER_PRIMARY_GROUP = -4
FILTER_MINE = -3
FILTER_ALL = -2
FILTER_GROUP = -1

# ---- lock levels (xmlrpc.md §3.4, 6.8+) ----------------------------------------------------
LOCK_USE = 1
LOCK_MANAGE = 2
LOCK_ADMIN = 3
LOCK_ALL = 4  # stored as LOCK_USE
#: The client-side expiry of a lock (``LockableExt::LOCK_TIMEOUT``): oned never expires locks.
LOCK_TIMEOUT = 120

# ---- host status (one.host.status) ---------------------------------------------------------
HOST_ENABLED = 0
HOST_DISABLED = 1
HOST_OFFLINE = 2

# ---- document types (xmlrpc.md §3.1) -------------------------------------------------------
DOC_SERVICE = 100
DOC_SERVICE_TEMPLATE = 101
DOC_PROVIDER = 102
DOC_PROVISION = 103
DOC_PROVISION_TEMPLATE = 104

# ---- image states --------------------------------------------------------------------------
IMAGE_READY = 1
IMAGE_ERROR = 5

# ---- virtual machine states (STATE, and LCM_STATE while ACTIVE) --------------------------
VM_INIT, VM_PENDING, VM_HOLD, VM_ACTIVE, VM_STOPPED, VM_SUSPENDED, VM_DONE = 0, 1, 2, 3, 4, 5, 6
VM_POWEROFF, VM_UNDEPLOYED = 8, 9
LCM_INIT, LCM_RUNNING = 0, 3
VM_STATE_NAMES = {
    0: "INIT",
    1: "PENDING",
    2: "HOLD",
    3: "ACTIVE",
    4: "STOPPED",
    5: "SUSPENDED",
    6: "DONE",
    8: "POWEROFF",
    9: "UNDEPLOYED",
    10: "CLONING",
    11: "CLONING_FAILURE",
}


class Permissions:
    """The nine permission bits of an object, in oned's order (owner, group, other; each U, M, A).

    ``-1`` in a bit of a ``chmod`` request leaves that bit unchanged.
    """

    __slots__ = ("bits",)

    def __init__(self, bits: Sequence[int]) -> None:
        if len(bits) != 9 or any(b not in (-1, 0, 1) for b in bits):
            raise ValueError(f"permissions need nine bits of -1, 0 or 1, got {list(bits)}")
        self.bits = tuple(bits)

    @classmethod
    def from_octet(cls, octet: str) -> Permissions:
        """``"640"`` → owner UM-, group U--, other ---: each digit is U=4, M=2, A=1."""
        text = octet.strip()
        if len(text) != 3 or any(c not in "01234567" for c in text):
            raise ValueError(f"Invalid permissions octet '{octet}': three digits 0-7 expected")
        bits: list[int] = []
        for digit in text:
            value = int(digit)
            bits += [(value >> 2) & 1, (value >> 1) & 1, value & 1]
        return cls(bits)

    def octet(self) -> str:
        digits = []
        for i in range(0, 9, 3):
            u, m, a = (max(b, 0) for b in self.bits[i : i + 3])
            digits.append(str(u * 4 + m * 2 + a))
        return "".join(digits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Permissions) and self.bits == other.bits

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Permissions({self.octet()})"


class Identity:
    """Who the calls run as: ``one.user.info(-1)`` of the session."""

    __slots__ = ("gid", "groups", "name", "uid")

    def __init__(self, uid: int, name: str, gid: int, groups: Sequence[int]) -> None:
        self.uid = uid
        self.name = name
        self.gid = gid
        self.groups = tuple(groups)

    @property
    def is_admin(self) -> bool:
        """uid 0 or a member of the oneadmin group (oned's ``is_admin()``)."""
        return self.uid == 0 or 0 in self.groups


class OneApi(ABC):
    """What the tools ask of OpenNebula.  See the module docstring for the conventions.

    ``kind`` arguments are one of ``KINDS``.  Ids are ints.  Errors are ``OneError``s.
    """

    #: ``"embedded"`` or ``"xmlrpc"``: said on ``-v`` and in ``describe()``.
    backend_name: str = ""

    # -- connection ------------------------------------------------------------------------
    @abstractmethod
    def describe(self) -> str:
        """One line naming where the objects live (store path or endpoint), for ``-v``."""

    @abstractmethod
    def version(self) -> str:
        """``one.system.version``: the OpenNebula version string (``"6.10.0"``)."""

    @abstractmethod
    def whoami(self) -> Identity:
        """The session's user (``one.user.info(-1)``)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (the embedded store closes its database)."""

    def __enter__(self) -> OneApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- allocate, one method per object because oned's signatures differ -----------------
    @abstractmethod
    def allocate_cluster(self, name: str) -> int: ...

    @abstractmethod
    def allocate_host(self, name: str, im_mad: str, vm_mad: str, cluster_id: int = -1) -> int: ...

    @abstractmethod
    def allocate_datastore(self, template: str, cluster_id: int = -1) -> int: ...

    @abstractmethod
    def allocate_vnet(self, template: str, cluster_id: int = -1) -> int: ...

    @abstractmethod
    def allocate_image(
        self, template: str, datastore_id: int, no_check_capacity: bool = False
    ) -> int: ...

    @abstractmethod
    def allocate_template(self, template: str) -> int: ...

    @abstractmethod
    def allocate_vntemplate(self, template: str) -> int: ...

    @abstractmethod
    def allocate_document(self, template: str, doc_type: int) -> int: ...

    @abstractmethod
    def allocate_market(self, template: str) -> int: ...

    @abstractmethod
    def allocate_marketapp(self, template: str, market_id: int) -> int: ...

    @abstractmethod
    def allocate_user(
        self, name: str, password: str, driver: str = "core", group_ids: Sequence[int] = ()
    ) -> int: ...

    @abstractmethod
    def allocate_group(self, name: str) -> int: ...

    # -- generic operations ------------------------------------------------------------------
    @abstractmethod
    def info(self, kind: str, oid: int, decrypt: bool = False) -> OneObject:
        """The object's XML as ``info`` returns it.  ``decrypt`` returns encrypted attributes
        (a provider's ``PROVISION_BODY``) in clear for oneadmin-group users."""

    @abstractmethod
    def pool(
        self,
        kind: str,
        filter_flag: int = FILTER_ALL,
        start: int = -1,
        end: int = -1,
        doc_type: int | None = None,
    ) -> list[OneObject]:
        """``one.<kind>pool.info``: objects in id order.  ``doc_type`` is required for documents
        and ignored otherwise; filter and range are ignored by the unfiltered pools."""

    @abstractmethod
    def update(self, kind: str, oid: int, template: str, merge: bool = False) -> int:
        """Replace (``merge=False``, update type 0) or merge into (type 1) the object's template."""

    @abstractmethod
    def delete(self, kind: str, oid: int, force: bool = False, recursive: bool = False) -> int:
        """Delete the object.  ``force`` applies to images, ``recursive`` to VM templates
        (also delete their images)."""

    @abstractmethod
    def rename(self, kind: str, oid: int, name: str) -> int: ...

    @abstractmethod
    def chown(self, kind: str, oid: int, uid: int = -1, gid: int = -1) -> int:
        """Change owner and/or group; ``-1`` leaves that one unchanged."""

    @abstractmethod
    def chmod(self, kind: str, oid: int, permissions: Permissions) -> int: ...

    # -- hosts, clusters, networks, images ---------------------------------------------------
    @abstractmethod
    def host_status(self, oid: int, status: int) -> int:
        """``one.host.status``: ``HOST_ENABLED``, ``HOST_DISABLED`` or ``HOST_OFFLINE``."""

    @abstractmethod
    def cluster_add(self, cluster_id: int, kind: str, oid: int) -> int:
        """Add a host (moves it), datastore or vnet to a cluster."""

    @abstractmethod
    def cluster_remove(self, cluster_id: int, kind: str, oid: int) -> int:
        """Remove a host (back to cluster 0), datastore or vnet from a cluster."""

    @abstractmethod
    def vnet_add_ar(self, oid: int, ar_template: str) -> int:
        """``one.vn.add_ar`` with ``AR = [ TYPE = "IP4", IP = "10.0.0.1", SIZE = 10 ]``."""

    @abstractmethod
    def vnet_rm_ar(self, oid: int, ar_id: int, force: bool = False) -> int: ...

    @abstractmethod
    def enable(self, kind: str, oid: int, enable: bool) -> int:
        """``one.<kind>.enable`` for images, marketplaces, marketplace apps and system DSs."""

    def wait_image_ready(
        self, oid: int, timeout: float = 300.0, interval: float = 1.0
    ) -> OneObject:
        """Poll an image until it is READY; ``ActionError`` when it enters ERROR, ``TimeoutError``
        (a ``OneError``) after ``timeout`` seconds."""
        from onetools.one.errors import ActionError, OneTimeout

        deadline = time.monotonic() + timeout
        while True:
            image = self.info(IMAGE, oid)
            state = image.int("STATE")
            if state == IMAGE_READY:
                return image
            if state == IMAGE_ERROR:
                reason = image.text("TEMPLATE/ERROR") or "unknown error"
                raise ActionError(f"Image {oid} is in state ERROR: {reason}")
            if time.monotonic() >= deadline:
                raise OneTimeout(f"Image {oid} not READY after {timeout:g} s")
            time.sleep(interval)

    # -- VM templates and virtual machines ---------------------------------------------------
    @abstractmethod
    def clone(self, kind: str, oid: int, name: str, recursive: bool = False) -> int:
        """``one.template.clone``: a copy of VM template ``oid`` named ``name``; the new id.
        ``recursive`` also clones the images its DISKs use and points the copy at them.
        Only ``TEMPLATE`` is supported."""

    @abstractmethod
    def allocate_vm(self, template: str, hold: bool = False) -> int:
        """``one.vm.allocate``: a new VM from template text (CPU, MEMORY, DISK, NIC, ...), in
        PENDING, or in HOLD with ``hold`` (the scheduler leaves it alone); the new id."""

    @abstractmethod
    def vm_action(self, oid: int, action: str) -> int:
        """``one.vm.action``: at least ``"poweroff"`` (RUNNING → POWEROFF) and ``"resume"``
        (POWEROFF → RUNNING); a VM in another state is refused with oned's ``ActionError``."""

    @abstractmethod
    def vm_disksaveas(
        self, oid: int, disk_id: int, name: str, image_type: str = "", snapshot_id: int = -1
    ) -> int:
        """``one.vm.disksaveas``: save disk ``disk_id`` of VM ``oid`` as a new image ``name``
        in the datastore of the disk's image (type ``image_type``, default the disk's image's
        type; ``snapshot_id`` -1: the disk itself); the new image id.  The image is LOCKED
        until the copy ends (``wait_image_ready``)."""

    def wait_vm_state(
        self, oid: int, states: Sequence[int], timeout: float = 300.0, interval: float = 1.0
    ) -> OneObject:
        """Poll VM ``oid`` until its STATE is one of ``states``; ``OneTimeout`` after
        ``timeout`` seconds (the message names the state it stayed in)."""
        from onetools.one.errors import OneTimeout

        deadline = time.monotonic() + timeout
        while True:
            vm = self.info(VM, oid)
            state = vm.int("STATE")
            if state in states:
                return vm
            if time.monotonic() >= deadline:
                wanted = " or ".join(VM_STATE_NAMES.get(s, str(s)) for s in states)
                raise OneTimeout(
                    f"VM {oid} not {wanted} after {timeout:g} s "
                    f"(it is {VM_STATE_NAMES.get(state, str(state))})"
                )
            time.sleep(interval)

    # -- locks -------------------------------------------------------------------------------
    @abstractmethod
    def lock(self, kind: str, oid: int, level: int, test: bool = False) -> int:
        """``one.<kind>.lock``; with ``test`` an already locked object raises ``LockedError``
        whose ``lock_time`` is the epoch at which it was locked."""

    @abstractmethod
    def unlock(self, kind: str, oid: int) -> int: ...

    @contextlib.contextmanager
    def synchronize(
        self, kind: str, oid: int, level: int = LOCK_ADMIN, timeout: int = LOCK_TIMEOUT
    ) -> Iterator[None]:
        """Hold ``oid``'s lock while the block runs, as the Ruby ``LockableExt#synchronize``:

        lock with ``test``; a lock younger than ``timeout`` seconds is refused with
        ``LockedError`` ("Object is locked"), an older one is taken over.  Afterwards the lock
        is released only if the object still exists (a deleted object has nothing to unlock).
        """
        from onetools.one.errors import LockedError, NotFoundError

        try:
            self.lock(kind, oid, level, test=True)
        except LockedError as exc:
            age = time.time() - (exc.lock_time or 0)
            if exc.lock_time is not None and age < timeout:
                raise LockedError(
                    f"Object is locked: {MESSAGE_NAME[kind]} {oid} was locked {int(age)} s ago "
                    f"(locks older than {timeout} s are taken over)",
                    lock_time=exc.lock_time,
                ) from None
            self.lock(kind, oid, level)
        try:
            yield
        finally:
            try:
                self.info(kind, oid)
            except NotFoundError:
                pass
            else:
                self.unlock(kind, oid)
