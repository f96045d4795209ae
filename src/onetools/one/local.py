"""``LocalOne``: the embedded default implementation of ``OneApi``.

OpenNebula objects live in ``<home>/one.db``, a SQLite database with OpenNebula's own 6.10
schema (the one ``onedb`` manages: ``onedb version -s`` and ``onedb fsck -s`` work on it), and
the store behaves as oned behind the XML-RPC API (``reference/xmlrpc.md``): ids, owners,
permissions, the XML bodies oned writes (``onetools.one.bodies``), name rules, locks and
oned's error texts.  The session is always ``oneadmin`` (uid 0, gid 0, an admin).

Storage rules:

* ``home`` is made mode 0700 (tightened, with a warning, when it is group/other accessible);
  ``one.db`` and ``one.key`` are 0600.  A home whose ``one.db`` is oned's live database
  (``/var/lib/one/one.db``) is refused: this store must never write behind a running oned.
* First use bootstraps the database with ``onedb``'s bootstrap (``onetools.db.schema``) into a
  temporary file, adds oned's first-start objects (cluster 0, datastores 0-2, markets 0-1) and
  renames it into place under an exclusive ``flock``: two processes opening a new home at
  once get one database, and a crash during bootstrap leaves none.
* Afterwards plain ``sqlite3`` (WAL, busy timeout 30 s).  Every mutating call is one
  ``BEGIN IMMEDIATE`` transaction (id from ``pool_control``, rows, relations, commit), so
  concurrent processes get distinct ids and a killed process leaves no half object.

Where nothing runs behind the store (no drivers, no monitoring), objects reach at once the
state oned's drivers would move them to: a new image is READY (oned: LOCKED until the
datastore driver copied it) with a ``SOURCE`` under the datastore's ``BASE_PATH``, its size
and format read from a local ``PATH`` when there is one; a new virtual network is READY
(oned: LOCK_CREATE until the network driver ran); image marketplace apps are READY.  Capacity
is not checked (``no_check_capacity`` has nothing to skip), and an app whose origin is missing
or whose type is unknown is refused instead of being left in ERROR.

Virtual machines are records only: no scheduler and no hypervisor run, so ``allocate_vm``
leaves a VM PENDING (or HOLD) and ``place_vm`` (embedded only, not on ``OneApi``) does what
the scheduler and the deploy would have done: history record, host share, disk files copied
to ``<home>/datastores/<system ds>/<vm>/disk.<id>``, RUNNING.  ``vm_action`` poweroff/resume
switch the state at once; ``vm_disksaveas`` copies a POWEROFF VM's disk file into a new READY
image.  See docs/one.md.

Other choices, where xmlrpc.md leaves room:

* ``host_status``: ENABLED → STATE 0 (INIT, what oned sets before monitoring moves it to 2),
  DISABLED → 4, OFFLINE → 8; PREV_STATE keeps the old state.
* Locks follow the 6.8+ rules; the session is an admin, so relocking replaces owner and time,
  and unlocking always succeeds.  Blocked calls name the lock's type as oned does
  (``TEMPLATE is locked. [3]``), with LockedError (code AUTHORIZATION).
* Default datastores and markets get ``um- u-- u--``; objects the session creates get
  ``DEFAULT_UMASK = 177`` (``um- --- ---``).  Quota usage is kept for what exists here,
  images (DATASTORE_QUOTA of their owner and group; oneadmin's user 0 and group 0 are not
  tracked, as in oned), so ``onedb fsck`` finds nothing to recompute.

Facts learned the hard way: ``onedb fsck`` without ``--dry`` writes a backup, by default next
to ``/var/lib/one/one.db``, so give it ``-b``; the 6.10 XSDs of host, datastore, image, vnet,
vmtemplate and vntemplate do not load in libxml2 as shipped (their TEMPLATE content model is
not deterministic), see ``tests/test_one_local.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from onetools.errors import UsageError
from onetools.one import bodies
from onetools.one.api import (
    CLUSTER,
    DATASTORE,
    DOCUMENT,
    FILTER_ALL,
    FILTER_GROUP,
    FILTER_MINE,
    FILTER_PRIMARY_GROUP,
    GROUP,
    HOST,
    HOST_DISABLED,
    HOST_ENABLED,
    HOST_OFFLINE,
    IMAGE,
    KINDS,
    LCM_INIT,
    LCM_RUNNING,
    LOCK_ADMIN,
    LOCK_ALL,
    LOCK_MANAGE,
    LOCK_USE,
    LOCKABLE,
    MARKET,
    MARKETAPP,
    MESSAGE_NAME,
    TEMPLATE,
    UNFILTERED_POOLS,
    UNOWNED,
    USER,
    VM,
    VM_ACTIVE,
    VM_DONE,
    VM_HOLD,
    VM_PENDING,
    VM_POWEROFF,
    VM_STATE_NAMES,
    VM_SUSPENDED,
    VNET,
    VNTEMPLATE,
    Identity,
    OneApi,
    Permissions,
)
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
from onetools.one.template import NOT_XML_CHARS, Template, parse
from onetools.one.xml import OneObject

TYPE_CHECKING = False
if TYPE_CHECKING:
    from onetools.one.bodies import Element, Owner
    from onetools.one.secrets import KeyFile

#: oned's own database: never written by this store.
ONED_DATABASE = "/var/lib/one/one.db"
DB_FILE = "one.db"
KEY_FILE = "one.key"
BUSY_TIMEOUT_MS = 30_000

TABLES: dict[str, str] = {
    CLUSTER: "cluster_pool",
    HOST: "host_pool",
    DATASTORE: "datastore_pool",
    VNET: "network_pool",
    IMAGE: "image_pool",
    TEMPLATE: "template_pool",
    VNTEMPLATE: "vn_template_pool",
    DOCUMENT: "document_pool",
    MARKET: "marketplace_pool",
    MARKETAPP: "marketplaceapp_pool",
    USER: "user_pool",
    GROUP: "group_pool",
    VM: "vm_pool",
}
#: Names unique in the whole pool, or per owner (xmlrpc.md §1.5); documents are not checked.
#: Name look-ups (uniqueness at every allocate and rename, names given on the command line)
#: on pools whose schema has no index on ``name``: without these each allocate scans the
#: table (1.3 ms at 4,000 hosts).  Extra indexes change no column; ``onedb backup`` carries
#: them, a table rebuilt by ``onedb upgrade`` loses them (look-ups are then slower, not wrong).
NAME_INDEXES = (
    "CREATE INDEX IF NOT EXISTS onetools_host_name ON host_pool (name)",
    "CREATE INDEX IF NOT EXISTS onetools_datastore_name ON datastore_pool (name)",
    "CREATE INDEX IF NOT EXISTS onetools_market_name ON marketplace_pool (name)",
    "CREATE INDEX IF NOT EXISTS onetools_template_name ON template_pool (name, uid)",
    "CREATE INDEX IF NOT EXISTS onetools_vntemplate_name ON vn_template_pool (name, uid)",
    "CREATE INDEX IF NOT EXISTS onetools_document_name ON document_pool (type, name)",
)
GLOBAL_NAMES = frozenset({CLUSTER, HOST, DATASTORE, MARKET, USER, GROUP})
OWNER_NAMES = frozenset({VNET, IMAGE, TEMPLATE, VNTEMPLATE, MARKETAPP})
#: The object type oned names in ``NAME is already taken by <TYPE> <id>.``
TAKEN_TYPE: dict[str, str] = {
    CLUSTER: "CLUSTER",
    HOST: "HOST",
    DATASTORE: "DATASTORE",
    VNET: "NET",
    IMAGE: "IMAGE",
    TEMPLATE: "TEMPLATE",
    VNTEMPLATE: "VN TEMPLATE",
    MARKET: "MARKETPLACE",
    MARKETAPP: "MARKETPLACEAPP",
    USER: "USER",
    GROUP: "GROUP",
}
#: The object type in ``<TYPE> is locked. [<id>]``.
LOCK_TYPE: dict[str, str] = {
    DOCUMENT: "DOCUMENT",
    MARKETAPP: "MARKETPLACEAPP",
    IMAGE: "IMAGE",
    TEMPLATE: "TEMPLATE",
    VNTEMPLATE: "VNTEMPLATE",
    VNET: "NET",
}
#: Authorization operations, ranked so that a lock of level L blocks every op >= L (6.8+).
OP_USE, OP_MANAGE, OP_ADMIN = LOCK_USE, LOCK_MANAGE, LOCK_ADMIN

NAME_FORBIDDEN = "&|:\\\";/'#{}$<>"
NAME_MAX = 128

#: ``TM_MAD_CONF`` of the stock 6.10 oned.conf: LN_TARGET, CLONE_TARGET, SHARED, DS_MIGRATE,
#: ALLOW_ORPHANS (None where the stock entry has no value).
TM_MAD_CONF: dict[str, tuple[str, str, str, str | None, str | None]] = {
    "dummy": ("NONE", "SYSTEM", "YES", "YES", None),
    "lvm": ("NONE", "SELF", "YES", None, None),
    "shared": ("NONE", "SYSTEM", "YES", "YES", "FORMAT"),
    "fs_lvm": ("SYSTEM", "SYSTEM", "YES", None, None),
    "fs_lvm_ssh": ("SYSTEM", "SYSTEM", "YES", None, None),
    "qcow2": ("NONE", "SYSTEM", "YES", "YES", "FORMAT"),
    "ssh": ("SYSTEM", "SYSTEM", "NO", "YES", "YES"),
    "ceph": ("NONE", "SELF", "YES", "NO", "mixed"),
    "iscsi_libvirt": ("NONE", "SELF", "YES", "NO", None),
    "dev": ("NONE", "NONE", "YES", None, None),
    "vcenter": ("NONE", "SYSTEM", "YES", None, None),
}
#: ``DS_MAD_CONF`` of the stock 6.10 oned.conf: the REQUIRED_ATTRS of each datastore driver.
DS_MAD_CONF: dict[str, tuple[str, ...]] = {
    "ceph": ("DISK_TYPE", "BRIDGE_LIST"),
    "dev": ("DISK_TYPE",),
    "iscsi_libvirt": ("DISK_TYPE", "ISCSI_HOST"),
    "dummy": (),
    "fs": (),
    "lvm": ("DISK_TYPE", "BRIDGE_LIST"),
    "vcenter": ("VCENTER_INSTANCE_ID", "VCENTER_DS_REF", "VCENTER_DC_REF"),
    "restic": ("RESTIC_PASSWORD",),
    "rsync": ("RSYNC_HOST", "RSYNC_USER"),
}
#: ``MARKET_MAD_CONF`` of the stock 6.10 oned.conf: REQUIRED_ATTRS, whether apps can be
#: created/deleted (APP_ACTIONS), whether the market is public.
MARKET_MAD_CONF: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "one": ((), False, True),
    "http": (("BASE_URL", "PUBLIC_DIR"), True, False),
    "s3": (("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "REGION", "BUCKET"), True, False),
    "linuxcontainers": ((), False, True),
    # 6.0's stock catalog drivers, and a private registry's catalog (onemarket's monitors)
    "turnkeylinux": ((), False, True),
    "dockerhub": ((), False, True),
    "docker_registry": (("BASE_URL",), False, True),
}
BRIDGE_TYPES = {
    "ovswitch": "openvswitch",
    "ovswitch_vxlan": "openvswitch",
    "vcenter": "vcenter_port_groups",
}

IMAGE_LOCKED, IMAGE_READY_STATE, IMAGE_DISABLED, IMAGE_ERROR_STATE = 4, 1, 3, 5
APP_READY, APP_DISABLED = 1, 4
HOST_STATES = {HOST_ENABLED: 0, HOST_DISABLED: 4, HOST_OFFLINE: 8}
VNET_READY, VNET_UPDATE_FAILURE = 1, 6


#: What ``one.vm.allocate`` keeps in a VM's TEMPLATE; everything else goes to USER_TEMPLATE.
VM_CORE_ATTRIBUTES = frozenset(
    {
        "AUTOMATIC_DS_REQUIREMENTS",
        "AUTOMATIC_NIC_REQUIREMENTS",
        "AUTOMATIC_REQUIREMENTS",
        "CONTEXT",
        "CPU",
        "CPU_MODEL",
        "DISK",
        "FEATURES",
        "GRAPHICS",
        "INPUT",
        "MEMORY",
        "NIC",
        "NIC_ALIAS",
        "NIC_DEFAULT",
        "OS",
        "PCI",
        "RAW",
        "SECURITY_GROUP_RULE",
        "TEMPLATE_ID",
        "TOPOLOGY",
        "VCPU",
        "VIDEO",
        "VMGROUP",
    }
)
#: The ``one.vm.action`` actions the embedded store carries out (no hypervisor runs here).
VM_ACTIONS_HERE = frozenset({"poweroff", "poweroff-hard", "resume"})
#: LCM_STATE names of an ACTIVE VM that the embedded store can be in.
LCM_STATE_NAMES = {0: "LCM_INIT", 1: "PROLOG", 2: "BOOT", 3: "RUNNING"}


def _vm_state_text(state: int, lcm_state: int) -> str:
    """oned's ``state_str``: the LCM state's name while ACTIVE, else the state's."""
    if state == VM_ACTIVE:
        return LCM_STATE_NAMES.get(lcm_state, str(lcm_state))
    return VM_STATE_NAMES.get(state, str(state))


def _assign_targets(disks: list[dict[str, str]]) -> None:
    """TARGET per disk as oned assigns it: <DEV_PREFIX><letter>, CDROMs first on hd."""
    used: dict[str, int] = {}
    for disk in disks:
        if disk.get("TARGET"):
            continue
        prefix = disk.get("DEV_PREFIX") or "sd"
        index = used.get(prefix, 0)
        used[prefix] = index + 1
        disk["TARGET"] = f"{prefix}{chr(ord('a') + index)}"


def image_file(image: Element) -> Path | None:
    """The local file of an image body: PATH, else SOURCE, when it names an existing file
    (also what the embedded market drivers copy into a private market)."""
    for candidate in (image.findtext("PATH") or "", image.findtext("SOURCE") or ""):
        path = candidate.removeprefix("file://")
        if path.startswith("/") and os.path.isfile(path):
            return Path(path)
    return None


def _warn(message: str) -> None:
    from onetools.log import get_logger

    get_logger(__name__).warning(message)


def _method(kind: str, action: str) -> str:
    return f"one.{kind}.{action}"


def _name_error(name: str) -> str | None:
    """oned's ``PoolObjectSQL::name_is_valid`` reason, or None for a valid name."""
    if not name:
        return "Invalid NAME, it cannot be empty"
    if len(name) > NAME_MAX:
        return f"Invalid NAME, max length is {NAME_MAX} chars"
    if any(char in NAME_FORBIDDEN for char in name):
        return "Invalid NAME, it cannot contain any of: " + " ".join(NAME_FORBIDDEN)
    return None


def _owner_columns(root: Element) -> tuple[int, int, int]:
    bits = bodies.get_permissions(root)
    if not bits:
        return 1, 0, 0
    return bits[0], bits[3], bits[6]


class LocalOne(OneApi):
    """The embedded store in ``home`` (see the module docstring)."""

    backend_name = "embedded"

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home).expanduser()
        self.db_path = self.home / DB_FILE
        self._refuse_oned_database()
        self._prepare_home()
        # One connection per thread (sqlite3 connections are not shared between threads): a
        # threaded XML-RPC server can wrap one LocalOne.
        self._connections: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._connections_lock = threading.Lock()
        self._keys: KeyFile | None = None
        self._request = int(time.time() * 1000) % 1_000_000

    # -- files ---------------------------------------------------------------------------
    def _refuse_oned_database(self) -> None:
        from onetools.db.connection import default_sqlite_path

        target = os.path.realpath(self.db_path)
        for live in {ONED_DATABASE, default_sqlite_path()}:
            if target == os.path.realpath(live):
                raise UsageError(
                    f"Refusing to use {self.db_path} as the embedded store: it is oned's own "
                    "database (give another --home or ONETOOLS_HOME)"
                )

    def _prepare_home(self) -> None:
        try:
            if not self.home.exists():
                self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(self.home, 0o700)
            mode = stat.S_IMODE(self.home.stat().st_mode)
            if mode & 0o077:
                _warn(f"{self.home} was accessible to group/other (mode {mode:o}), set to 700")
                os.chmod(self.home, 0o700)
            for name in (DB_FILE, KEY_FILE):
                path = self.home / name
                if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
                    _warn(f"{path} was accessible to group/other, set to 600")
                    os.chmod(path, 0o600)
        except OSError as exc:
            raise UsageError(f"Cannot use {self.home} as the embedded store: {exc}") from None

    def _key_file(self) -> KeyFile:
        if self._keys is None:
            from onetools.one.secrets import KeyFile

            self._keys = KeyFile(self.home / KEY_FILE)
        return self._keys

    # -- database ------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        thread = threading.get_ident()
        entry = self._connections.get(thread)
        if entry is not None and entry[0] is threading.current_thread():
            return entry[1]
        if not self.db_path.exists():
            self._bootstrap()
        connection = sqlite3.connect(
            str(self.db_path),
            isolation_level=None,  # transactions are ours: BEGIN IMMEDIATE ... COMMIT
            timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,  # close() may run in another thread
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA synchronous = NORMAL")
            tables = connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('pool_control', 'db_versioning')"
            ).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise InternalError(f"Cannot open the embedded store {self.db_path}: {exc}") from None
        if tables != 2:
            connection.close()
            raise InternalError(
                f"{self.db_path} is not an OpenNebula database (no pool_control/db_versioning)"
            )
        with self._connections_lock:
            # Connections of finished threads (a thread-per-request server) are closed
            # here, so their number stays bounded by the threads alive.
            for ident, (owner, old) in list(self._connections.items()):
                if ident == thread or not owner.is_alive():
                    old.close()
                    del self._connections[ident]
            self._connections[thread] = (threading.current_thread(), connection)
        return connection

    def _bootstrap(self) -> None:
        import fcntl

        lock_fd = os.open(self.home / f"{DB_FILE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            if self.db_path.exists():  # another process bootstrapped while we waited
                return
            # Under the lock no other bootstrap runs: any temporary file is a killed one's.
            for stale in self.home.glob(f".{DB_FILE}.*.tmp"):
                stale.unlink(missing_ok=True)
            temporary = self.home / f".{DB_FILE}.{os.getpid()}.tmp"
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            try:
                self._bootstrap_file(temporary)
                os.replace(temporary, self.db_path)
            finally:
                temporary.unlink(missing_ok=True)
            directory = os.open(self.home, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        finally:
            os.close(lock_fd)

    def _bootstrap_file(self, path: Path) -> None:
        from onetools.db.backends import open_backend
        from onetools.db.backends.base import ConnectionSettings
        from onetools.db.schema.bootstrap import bootstrap
        from onetools.db.support import LATEST

        backend = open_backend(
            ConnectionSettings(backend="sqlite", sqlite_file=str(path)), create=True
        )
        try:
            bootstrap(backend, LATEST)
            connection: sqlite3.Connection = backend.connection  # type: ignore[attr-defined]
            connection.execute("BEGIN IMMEDIATE")
            self._insert_first_objects(connection)
            for statement in NAME_INDEXES:
                connection.execute(statement)
            connection.execute("COMMIT")
            connection.execute("PRAGMA journal_mode = WAL")
        finally:
            backend.close()
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())

    def _insert_first_objects(self, db: sqlite3.Connection) -> None:
        """What oned creates on its first start besides users and groups."""
        system_owner = bodies.Owner(permissions=bodies.SYSTEM_PERMISSIONS)
        cluster = bodies.cluster(
            0, "default", Template([("RESERVED_CPU", ""), ("RESERVED_MEM", "")])
        )
        bodies.set_ids(cluster, "DATASTORES", [0, 1, 2])
        self._insert(db, CLUSTER, 0, cluster)
        for oid, name, ds_type, ds_mad in (
            (0, "system", "SYSTEM_DS", "-"),
            (1, "default", "IMAGE_DS", "fs"),
            (2, "files", "FILE_DS", "fs"),
        ):
            template = Template([("TM_MAD", "ssh"), ("TYPE", ds_type)])
            if ds_mad != "-":
                template.add("DS_MAD", ds_mad)
            root = self._datastore_body(
                oid, name, system_owner, template, [0], "one.datastore.allocate"
            )
            self._insert(db, DATASTORE, oid, root)
            db.execute("INSERT INTO cluster_datastore_relation (cid, oid) VALUES (0, ?)", (oid,))
        for oid, name, mad, description in (
            (0, "OpenNebula Public", "one", "OpenNebula Systems MarketPlace"),
            (
                1,
                "Linux Containers",
                "linuxcontainers",
                "MarketPlace for the public image server for LXC at linuxcontainers.org",
            ),
        ):
            template = Template([("DESCRIPTION", description), ("MARKET_MAD", mad)])
            self._insert(
                db, MARKET, oid, bodies.marketplace(oid, name, system_owner, mad, template)
            )
        for table in ("cluster_pool", "datastore_pool", "marketplace_pool"):
            db.execute(
                "INSERT OR REPLACE INTO pool_control (tablename, last_oid) VALUES (?, 99)", (table,)
            )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed at the end, rolled back on error."""
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise InternalError(f"Cannot write {self.db_path}: {exc}") from None
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                # A constraint the checks above should have caught, a full disk, a lock held
                # longer than the busy timeout: one clear line, nothing half-written.
                raise InternalError(f"Cannot write {self.db_path}: {exc}") from None
            raise

    def close(self) -> None:
        with self._connections_lock:
            connections = [connection for _thread, connection in self._connections.values()]
            self._connections.clear()
        for connection in connections:
            connection.close()

    # -- rows ----------------------------------------------------------------------------
    # -- the embedded drivers' interface ---------------------------------------------------
    # On a front-end, market drivers report to oned, which writes apps nobody could allocate
    # (apps of public markets, SOURCE/MD5/SIZE of imported images).  Here the tools do the
    # drivers' work (onetools.market), so they get the same access, in one transaction:
    #   with store.driver_transaction() as tx: body = tx.load(MARKET, 0); ...; tx.save(...)
    @contextmanager
    def driver_transaction(self) -> Iterator[DriverTransaction]:
        """A write transaction for the embedded market drivers (all of it or nothing)."""
        with self._write() as db:
            yield DriverTransaction(self, db)

    def _next_id(self, db: sqlite3.Connection, kind: str) -> int:
        table = TABLES[kind]
        row = db.execute(
            "SELECT last_oid FROM pool_control WHERE tablename = ?", (table,)
        ).fetchone()
        top = db.execute(f"SELECT MAX(oid) FROM {table}").fetchone()[0]
        candidates = [int(v) for v in (row[0] if row else None, top) if v is not None]
        new = max(candidates, default=-1) + 1
        db.execute(
            "INSERT INTO pool_control (tablename, last_oid) VALUES (?, ?) "
            "ON CONFLICT(tablename) DO UPDATE SET last_oid = excluded.last_oid",
            (table, new),
        )
        return new

    def _columns(self, kind: str, root: Element) -> dict[str, object]:
        """The row's columns as oned fills them, from the body."""
        name = root.findtext("NAME") or ""
        if kind in UNOWNED:
            columns: dict[str, object] = {"name": name, "uid": -1, "gid": -1}
        elif kind == USER:
            columns = {
                "name": name,
                "uid": int(root.findtext("ID") or 0),
                "gid": int(root.findtext("GID") or 0),
            }
        elif kind == GROUP:
            columns = {"name": name, "uid": 0, "gid": 0}
        else:
            columns = {
                "name": name,
                "uid": int(root.findtext("UID") or 0),
                "gid": int(root.findtext("GID") or 0),
            }
        columns["owner_u"], columns["group_u"], columns["other_u"] = _owner_columns(root)
        if kind == HOST:
            columns["state"] = int(root.findtext("STATE") or 0)
            columns["cid"] = int(root.findtext("CLUSTER_ID") or -1)
        elif kind == DOCUMENT:
            columns["type"] = int(root.findtext("TYPE") or 0)
        elif kind == VM:
            columns["state"] = int(root.findtext("STATE") or 0)
            columns["lcm_state"] = int(root.findtext("LCM_STATE") or 0)
        elif kind == VNET:
            parent = root.findtext("PARENT_NETWORK_ID") or ""
            columns["pid"] = int(parent) if parent.lstrip("-").isdigit() else -1
        return columns

    def _body(self, kind: str, root: Element) -> str:
        text = bodies.serialize(root)
        bad = NOT_XML_CHARS.search(text)
        if bad is not None:  # a name or value no XML parser would read back
            raise InternalError(
                f"Invalid character {bad.group()!r} in a {MESSAGE_NAME[kind]}: names and "
                "values cannot hold control characters"
            )
        return text

    def _insert(self, db: sqlite3.Connection, kind: str, oid: int, root: Element) -> None:
        columns = self._columns(kind, root)
        names = ["oid", "body", *columns]
        values = [oid, self._body(kind, root), *columns.values()]
        marks = ", ".join("?" for _ in names)
        db.execute(f"INSERT INTO {TABLES[kind]} ({', '.join(names)}) VALUES ({marks})", values)

    def _save(self, db: sqlite3.Connection, kind: str, oid: int, root: Element) -> None:
        columns = self._columns(kind, root)
        assignments = ", ".join(f"{name} = ?" for name in ["body", *columns])
        db.execute(
            f"UPDATE {TABLES[kind]} SET {assignments} WHERE oid = ?",
            [self._body(kind, root), *columns.values(), oid],
        )

    def _load(self, db: sqlite3.Connection, kind: str, oid: int, method: str) -> Element:
        row = db.execute(f"SELECT body FROM {TABLES[kind]} WHERE oid = ?", (oid,)).fetchone()
        if row is None:
            raise NotFoundError(f"[{method}] Error getting {MESSAGE_NAME[kind]} [{oid}].", oid)
        return bodies.parse_body(row[0])

    def _exists(self, db: sqlite3.Connection, kind: str, oid: int) -> bool:
        return (
            db.execute(f"SELECT 1 FROM {TABLES[kind]} WHERE oid = ?", (oid,)).fetchone() is not None
        )

    def _name_taken(self, db: sqlite3.Connection, kind: str, name: str, uid: int) -> int | None:
        """The id of another object with ``name`` in ``kind``'s uniqueness scope."""
        table = TABLES[kind]
        if kind in GLOBAL_NAMES:
            row = db.execute(f"SELECT oid FROM {table} WHERE name = ?", (name,)).fetchone()
        elif kind in OWNER_NAMES:
            row = db.execute(
                f"SELECT oid FROM {table} WHERE name = ? AND uid = ?", (name, uid)
            ).fetchone()
        else:
            row = None
        return None if row is None else int(row[0])

    def _check_new_name(
        self,
        db: sqlite3.Connection,
        kind: str,
        name: str,
        uid: int,
        fail: type[OneError],
        prefix: str,
    ) -> None:
        reason = _name_error(name)
        if reason:
            raise fail(prefix + reason)
        other = self._name_taken(db, kind, name, uid)
        if other is not None:
            dot = "" if kind in (MARKET, MARKETAPP) else "."
            raise fail(f"{prefix}NAME is already taken by {TAKEN_TYPE[kind]} {other}{dot}")

    def _check_lock(self, kind: str, root: Element, oid: int, method: str, op: int) -> None:
        if kind not in LOCKABLE:
            return
        lock = bodies.get_lock(root)
        if lock is not None and lock[0] <= op:
            raise LockedError(
                f"[{method}] User [0] : {LOCK_TYPE[kind]} is locked. [{oid}].",
                oid,
                lock_time=lock[2],
            )

    def _session_owner(self) -> Owner:
        return bodies.Owner()

    def _cluster_name(
        self, db: sqlite3.Connection, cluster_id: int, method: str
    ) -> tuple[int, str]:
        cid = 0 if cluster_id == -1 else cluster_id
        row = db.execute("SELECT name FROM cluster_pool WHERE oid = ?", (cid,)).fetchone()
        if row is None:
            raise NotFoundError(f"[{method}] Error getting cluster [{cid}].", cid)
        return cid, str(row[0])

    def _parse(self, template: str, method: str, fail: type[OneError] = InternalError) -> Template:
        try:
            return parse(template)
        except InternalError as exc:
            raise fail(f"[{method}] {exc.message}") from None

    def _cluster_member(
        self, db: sqlite3.Connection, cid: int, collection: str, oid: int, add: bool
    ) -> None:
        if self._cluster_member_text(db, cid, collection, oid, add):
            return
        root = self._load(db, CLUSTER, cid, "one.cluster.info")
        ids = set(bodies.get_ids(root, collection))
        if add:
            ids.add(oid)
        else:
            ids.discard(oid)
        bodies.set_ids(root, collection, ids)
        self._save(db, CLUSTER, cid, root)

    def _cluster_member_text(
        self, db: sqlite3.Connection, cid: int, collection: str, oid: int, add: bool
    ) -> bool:
        """The common cases of ``_cluster_member`` as an edit of the stored text: appending an
        id above every id already there, or removing one.  Re-parsing and re-serialising the
        whole cluster (thousands of ``<ID>``s in cluster 0) made each host allocate O(n) and a
        10,000-host store O(n²).  The collections come before ``TEMPLATE`` in a cluster body,
        so their first occurrence is the right one.  False: fall back to the tree."""
        row = db.execute("SELECT body FROM cluster_pool WHERE oid = ?", (cid,)).fetchone()
        if row is None:
            return False
        body: str = row[0]
        opening, closing = f"<{collection}>", f"</{collection}>"
        start = body.find(opening)
        end = body.find(closing, start)
        if start < 0 or end < 0:
            return False
        inner = body[start + len(opening) : end]
        item = f"<ID>{oid}</ID>"
        if add:
            if item in inner:
                return True
            last = inner.rfind("<ID>")
            if last >= 0 and int(inner[last + 4 : inner.index("</ID>", last)]) > oid:
                return False  # not the largest id: keep the sorted order through the tree
            inner += item
        else:
            if item not in inner:
                return True
            inner = inner.replace(item, "", 1)
        body = body[: start + len(opening)] + inner + body[end:]
        db.execute("UPDATE cluster_pool SET body = ? WHERE oid = ?", (body, cid))
        return True

    # -- connection ----------------------------------------------------------------------
    def describe(self) -> str:
        return f"embedded store {self.db_path}"

    def version(self) -> str:
        from onetools.db.support import LATEST

        return LATEST

    def whoami(self) -> Identity:
        user = self.info(USER, 0)
        return Identity(user.id, user.name, user.gid, user.ids("GROUPS"))

    # -- allocate ------------------------------------------------------------------------
    def allocate_cluster(self, name: str) -> int:
        method = "one.cluster.allocate"
        with self._write() as db:
            self._check_new_name(db, CLUSTER, name, 0, InternalError, f"[{method}] ")
            oid = self._next_id(db, CLUSTER)
            template = Template([("RESERVED_CPU", ""), ("RESERVED_MEM", "")])
            self._insert(db, CLUSTER, oid, bodies.cluster(oid, name, template))
        return oid

    def allocate_host(self, name: str, im_mad: str, vm_mad: str, cluster_id: int = -1) -> int:
        method = "one.host.allocate"
        with self._write() as db:
            self._check_new_name(db, HOST, name, 0, InternalError, f"[{method}] ")
            cid, cluster_name = self._cluster_name(db, cluster_id, method)
            oid = self._next_id(db, HOST)
            template = Template(
                [("IM_MAD", im_mad), ("RESERVED_CPU", ""), ("RESERVED_MEM", ""), ("VM_MAD", vm_mad)]
            )
            root = bodies.host(oid, name, im_mad, vm_mad, cid, cluster_name, template)
            self._insert(db, HOST, oid, root)
            self._cluster_member(db, cid, "HOSTS", oid, add=True)
        return oid

    def _datastore_body(
        self,
        oid: int,
        name: str,
        owner: Owner,
        template: Template,
        clusters: list[int],
        method: str,
    ) -> Element:
        type_name = (template.get("TYPE") or "IMAGE_DS").upper()
        if type_name not in bodies.DATASTORE_TYPES:
            raise InternalError(f"[{method}] Invalid datastore TYPE: {type_name}")
        ds_type = bodies.DATASTORE_TYPES[type_name]
        template.set("TYPE", type_name)
        ds_mad = template.get("DS_MAD") or ""
        if type_name == "SYSTEM_DS":
            ds_mad = ds_mad or "-"
        elif not ds_mad:
            raise InternalError(f"[{method}] No DS_MAD in template.")
        if ds_mad != "-":
            if ds_mad not in DS_MAD_CONF:
                raise InternalError(
                    f'[{method}] DS_MAD named "{ds_mad}" is not defined in oned.conf'
                )
            for key in DS_MAD_CONF[ds_mad]:
                if not template.get(key):
                    raise InternalError(
                        f'[{method}] Datastore template is missing the "{key}" attribute '
                        "or it's empty."
                    )
        tm_mad = template.get("TM_MAD") or ("-" if type_name == "BACKUP_DS" else "")
        if not tm_mad:
            raise InternalError(f"[{method}] No TM_MAD in template.")
        if tm_mad != "-" and tm_mad not in TM_MAD_CONF:
            raise InternalError(f'[{method}] TM_MAD named "{tm_mad}" is not defined in oned.conf')
        # backup datastores have no transfer driver ("-"): nothing to add from TM_MAD_CONF
        ln_target, clone_target, shared, ds_migrate, orphans = TM_MAD_CONF.get(
            tm_mad, ("NONE", "NONE", "NO", None, None)
        )
        disk_type_name = (template.get("DISK_TYPE") or "FILE").upper()
        if disk_type_name not in bodies.DISK_TYPES:
            raise InternalError(f"[{method}] Invalid DISK_TYPE: {disk_type_name}")
        if type_name == "SYSTEM_DS":
            if not template.has("SHARED"):
                template.set("SHARED", shared)
            if ds_migrate and not template.has("DS_MIGRATE"):
                template.set("DS_MIGRATE", ds_migrate)
        elif type_name != "BACKUP_DS":
            for key, value in (
                ("CLONE_TARGET", clone_target),
                ("LN_TARGET", ln_target),
                ("ALLOW_ORPHANS", orphans or "NO"),
                ("DISK_TYPE", disk_type_name),
            ):
                if not template.has(key):
                    template.set(key, value)
            if not template.has("SAFE_DIRS") and not template.has("RESTRICTED_DIRS"):
                template.set("SAFE_DIRS", "/var/tmp")
                template.set("RESTRICTED_DIRS", "/")
        return bodies.datastore(
            oid,
            name,
            owner,
            ds_mad,
            tm_mad,
            ds_type,
            bodies.DISK_TYPES[disk_type_name],
            clusters,
            template,
        )

    def allocate_datastore(self, template: str, cluster_id: int = -1) -> int:
        method = "one.datastore.allocate"
        parsed = self._parse(template, method)
        name = parsed.pop("NAME")
        if name is None:
            raise InternalError(f"[{method}] No NAME in template.")
        with self._write() as db:
            self._check_new_name(db, DATASTORE, name, 0, InternalError, f"[{method}] ")
            cid, _ = self._cluster_name(db, cluster_id, method)
            oid = self._next_id(db, DATASTORE)
            root = self._datastore_body(oid, name, self._session_owner(), parsed, [cid], method)
            self._insert(db, DATASTORE, oid, root)
            self._cluster_member(db, cid, "DATASTORES", oid, add=True)
            db.execute(
                "INSERT INTO cluster_datastore_relation (cid, oid) VALUES (?, ?)", (cid, oid)
            )
        return oid

    def allocate_vnet(self, template: str, cluster_id: int = -1) -> int:
        method = "one.vn.allocate"
        parsed = self._parse(template, method)
        name = parsed.pop("NAME")
        if name is None:
            raise InternalError(f"[{method}] No NAME in template.")
        vn_mad = parsed.get("VN_MAD") or ""
        if not vn_mad:
            raise InternalError(f"[{method}] No VN_MAD in template for Virtual Network.")
        ar_vectors = parsed.vectors("AR")
        parsed.remove("AR")
        with self._write() as db:
            self._check_new_name(db, VNET, name, 0, InternalError, f"[{method}] ")
            cid, _ = self._cluster_name(db, cluster_id, method)
            oid = self._next_id(db, VNET)
            vlan = parsed.get("VLAN_ID") or ""
            bridge = parsed.get("BRIDGE") or (
                f"onebr.{vlan}" if vlan and vn_mad in ("802.1Q", "vxlan") else f"onebr{oid}"
            )
            fields = {
                "BRIDGE": bridge,
                "BRIDGE_TYPE": parsed.get("BRIDGE_TYPE") or BRIDGE_TYPES.get(vn_mad, "linux"),
                "STATE": str(VNET_READY),
                "PREV_STATE": "0",
                "VN_MAD": vn_mad,
                "PHYDEV": parsed.get("PHYDEV") or "",
                "VLAN_ID": vlan,
                "OUTER_VLAN_ID": parsed.get("OUTER_VLAN_ID") or "",
            }
            for given, flag in (
                ("AUTOMATIC_VLAN_ID", "VLAN_ID_AUTOMATIC"),
                ("AUTOMATIC_OUTER_VLAN_ID", "OUTER_VLAN_ID_AUTOMATIC"),
            ):
                value = parsed.pop(given)
                fields[flag] = "1" if (value or "").upper() == "YES" else "0"
            parsed.set("BRIDGE", fields["BRIDGE"])
            parsed.set("BRIDGE_TYPE", fields["BRIDGE_TYPE"])
            parsed.set("PHYDEV", fields["PHYDEV"])
            groups = [
                g.strip() for g in (parsed.get("SECURITY_GROUPS") or "").split(",") if g.strip()
            ]
            if "0" not in groups:
                groups.append("0")
            parsed.set("SECURITY_GROUPS", ",".join(groups))
            ranges = []
            for index, vector in enumerate(ar_vectors):
                try:
                    ranges.append(bodies.address_range(vector, index))
                except ValueError as exc:
                    raise InternalError(f"[{method}] {exc}") from None
            root = bodies.vnet(oid, name, self._session_owner(), [cid], fields, parsed, ranges)
            self._insert(db, VNET, oid, root)
            self._cluster_member(db, cid, "VNETS", oid, add=True)
            db.execute("INSERT INTO cluster_network_relation (cid, oid) VALUES (?, ?)", (cid, oid))
        return oid

    def allocate_image(
        self, template: str, datastore_id: int, no_check_capacity: bool = False
    ) -> int:
        method = "one.image.allocate"
        prefix = f"[{method}] Error allocating a new image. "
        parsed = self._parse(template, method, AllocateError)
        name = parsed.pop("NAME")
        if name is None:
            raise AllocateError(prefix + "No NAME in template.")
        type_name = (parsed.pop("TYPE") or "OS").upper()
        if type_name not in bodies.IMAGE_TYPES or type_name == "BACKUP":
            raise AllocateError(prefix + f"Wrong image TYPE: {type_name}")
        path = parsed.pop("PATH") or ""
        source = parsed.pop("SOURCE") or ""
        image_format = parsed.pop("FORMAT") or ""
        size_text = parsed.pop("SIZE") or ""
        if path and source:
            raise AllocateError(
                prefix + "Template malformed, PATH and SOURCE are mutually exclusive."
            )
        if source and not image_format:
            raise AllocateError(prefix + "FORMAT is mandatory when SOURCE is given.")
        if not path and not source and not (type_name == "DATABLOCK" and size_text):
            raise AllocateError(prefix + "No PATH nor SOURCE in template (a DATABLOCK needs SIZE).")
        persistent = (parsed.pop("PERSISTENT") or "").upper() in ("YES", "1", "TRUE")
        parsed.remove("FS")
        if not parsed.has("DEV_PREFIX"):
            parsed.set("DEV_PREFIX", "hd" if type_name == "CDROM" else "sd")
        size, detected = _local_image_facts(path)
        if size_text:
            try:
                size = int(float(size_text))
            except ValueError:
                raise AllocateError(prefix + f"Wrong SIZE: {size_text}") from None
        with self._write() as db:
            ds_root = self._load(db, DATASTORE, datastore_id, method)
            ds_type = int(ds_root.findtext("TYPE") or 0)
            if ds_type == 1:
                raise AllocateError(
                    prefix + "New images cannot be allocated in a system datastore."
                )
            if ds_type == 3:
                raise AllocateError(
                    prefix + "New images cannot be allocated in a backup datastore."
                )
            self._check_new_name(db, IMAGE, name, 0, AllocateError, prefix)
            oid = self._next_id(db, IMAGE)
            now = int(time.time())
            if not source:
                digest = hashlib.md5(f"{oid}:{now}:{path}:{os.getpid()}".encode()).hexdigest()
                source = f"{bodies.BASE_PATH}/{datastore_id}/{digest}"
            fields = {
                "TYPE": bodies.IMAGE_TYPES[type_name],
                "DISK_TYPE": int(ds_root.findtext("DISK_TYPE") or 0),
                "PERSISTENT": int(persistent),
                "REGTIME": now,
                "SOURCE": source,
                "PATH": path,
                "FORMAT": image_format or detected or "raw",
                "SIZE": size,
                # LOCKED (4) while a driver would copy; nothing copies here: READY at once.
                "STATE": IMAGE_READY_STATE,
                "PREV_STATE": IMAGE_LOCKED,
            }
            ds_name = ds_root.findtext("NAME") or ""
            root = bodies.image(
                oid, name, self._session_owner(), fields, datastore_id, ds_name, parsed
            )
            self._insert(db, IMAGE, oid, root)
            self._image_quota(db, root, +1)
            bodies.set_ids(ds_root, "IMAGES", [*bodies.get_ids(ds_root, "IMAGES"), oid])
            self._save(db, DATASTORE, datastore_id, ds_root)
        return oid

    def _allocate_plain(self, kind: str, template: str, required: tuple[str, ...] = ()) -> int:
        method = _method(kind, "allocate")
        parsed = self._parse(template, method)
        name = parsed.pop("NAME")
        if name is None:
            raise InternalError(f"[{method}] No NAME in template.")
        for key in required:
            if not parsed.get(key):
                raise InternalError(f"[{method}] No {key} in template.")
        with self._write() as db:
            self._check_new_name(db, kind, name, 0, InternalError, f"[{method}] ")
            oid = self._next_id(db, kind)
            build = bodies.vm_template if kind == TEMPLATE else bodies.vn_template
            self._insert(
                db, kind, oid, build(oid, name, self._session_owner(), int(time.time()), parsed)
            )
        return oid

    def allocate_template(self, template: str) -> int:
        return self._allocate_plain(TEMPLATE, template)

    def allocate_vntemplate(self, template: str) -> int:
        return self._allocate_plain(VNTEMPLATE, template, ("VN_MAD",))

    def allocate_document(self, template: str, doc_type: int) -> int:
        method = "one.document.allocate"
        parsed = self._parse(template, method)
        name = parsed.pop("NAME")
        if name is not None and len(name) > NAME_MAX:
            raise InternalError(f"[{method}] Invalid NAME, max length is {NAME_MAX} chars")
        with self._write() as db:
            oid = self._next_id(db, DOCUMENT)
            self._seal(parsed, oid)
            root = bodies.document(
                oid, name or f"document-{oid}", self._session_owner(), doc_type, parsed
            )
            self._insert(db, DOCUMENT, oid, root)
        return oid

    def _seal(self, template: Template, oid: int) -> None:
        from onetools.one import secrets

        sealed = [
            (key, secrets.seal(value, self._key_file(), oid, key))
            if key in secrets.SECRET_MEMBERS and isinstance(value, str)
            else (key, value)
            for key, value in template.attributes
        ]
        template.attributes = sealed

    def allocate_market(self, template: str) -> int:
        method = "one.market.allocate"
        parsed = self._parse(template, method)
        name = parsed.pop("NAME")
        if name is None:
            raise InternalError(f"[{method}] No NAME in template.")
        mad = parsed.get("MARKET_MAD") or ""
        if not mad:
            raise InternalError(f"[{method}] No marketplace driver (MARKET_MAD) in template.")
        if mad not in MARKET_MAD_CONF:
            raise InternalError(
                f'[{method}] MARKET_MAD_CONF named "{mad}" is not defined in oned.conf'
            )
        for key in MARKET_MAD_CONF[mad][0]:
            if not parsed.get(key):
                raise InternalError(
                    f'[{method}] MarketPlace template is missing the "{key}" attribute '
                    "or it's empty."
                )
        with self._write() as db:
            self._check_new_name(db, MARKET, name, 0, InternalError, f"[{method}] ")
            oid = self._next_id(db, MARKET)
            self._insert(
                db, MARKET, oid, bodies.marketplace(oid, name, self._session_owner(), mad, parsed)
            )
        return oid

    def allocate_marketapp(self, template: str, market_id: int) -> int:
        method = "one.marketapp.allocate"
        parsed = self._parse(template, method)
        name = parsed.pop("NAME")
        if name is None:
            raise InternalError(f"[{method}] No NAME in template.")
        origin = parsed.pop("ORIGIN_ID")
        if origin is None:
            raise InternalError(f"[{method}] Missing ORIGIN_ID for the MARKETPLACEAPP")
        for dropped in ("SOURCE", "SIZE", "MD5", "FORMAT", "REGTIME"):
            parsed.remove(dropped)
        type_name = (parsed.get("TYPE") or "IMAGE").upper()
        app_type = bodies.APP_TYPES.get(type_name, 0)
        if app_type == 0:
            raise InternalError(f"[{method}] Marketplace app type not supported.")
        with self._write() as db:
            row = db.execute(
                "SELECT body FROM marketplace_pool WHERE oid = ?", (market_id,)
            ).fetchone()
            if row is None:
                raise InternalError(f"[{method}] Cannot find associated MARKETPLACE")
            market = bodies.parse_body(row[0])
            market_name = market.findtext("NAME") or ""
            mad = market.findtext("MARKET_MAD") or ""
            if not MARKET_MAD_CONF.get(mad, ((), True, False))[1]:
                raise ActionError(f"[{method}] Create disabled for market: {market_name}")
            size, image_format = 0, ""
            if app_type == 1:
                try:
                    image = self._load(db, IMAGE, int(origin), method)
                except (ValueError, NotFoundError):
                    raise InternalError(f"[{method}] Image does not exist.") from None
                self._check_lock(IMAGE, image, int(origin), method, OP_USE)
                size = int(image.findtext("SIZE") or 0)
                image_format = image.findtext("FORMAT") or ""
            self._check_new_name(db, MARKETAPP, name, 0, InternalError, f"[{method}] ")
            oid = self._next_id(db, MARKETAPP)
            fields = {
                "REGTIME": int(time.time()),
                "ORIGIN_ID": origin,
                "SOURCE": "",
                "MD5": "",
                "SIZE": size,
                "DESCRIPTION": parsed.get("DESCRIPTION") or "",
                "VERSION": parsed.get("VERSION") or "0.0",
                "FORMAT": image_format,
                "APPTEMPLATE64": parsed.get("APPTEMPLATE64") or "",
                "STATE": APP_READY,
                "TYPE": app_type,
            }
            root = bodies.marketplace_app(
                oid, name, self._session_owner(), fields, market_id, market_name, parsed
            )
            self._insert(db, MARKETAPP, oid, root)
            bodies.set_ids(
                market, "MARKETPLACEAPPS", [*bodies.get_ids(market, "MARKETPLACEAPPS"), oid]
            )
            self._save(db, MARKET, market_id, market)
        return oid

    def allocate_user(
        self, name: str, password: str, driver: str = "core", group_ids: Sequence[int] = ()
    ) -> int:
        method = "one.user.allocate"
        if driver == "core" and not password:
            raise InternalError(f"[{method}] Invalid password, it cannot be empty")
        with self._write() as db:
            self._check_new_name(db, USER, name, 0, InternalError, f"[{method}] ")
            groups = list(group_ids) or [1]
            group_roots = {gid: self._load(db, GROUP, gid, method) for gid in groups}
            oid = self._next_id(db, USER)
            stored = hashlib.sha256(password.encode()).hexdigest() if driver == "core" else password
            gname = group_roots[groups[0]].findtext("NAME") or ""
            self._insert(
                db, USER, oid, bodies.user(oid, name, groups[0], gname, groups, stored, driver)
            )
            db.execute(
                "INSERT INTO user_quotas (user_oid, body) VALUES (?, ?)", (oid, _empty_quotas(oid))
            )
            for gid, root in group_roots.items():
                bodies.set_ids(root, "USERS", [*bodies.get_ids(root, "USERS"), oid])
                self._save(db, GROUP, gid, root)
        return oid

    def allocate_group(self, name: str) -> int:
        method = "one.group.allocate"
        with self._write() as db:
            self._check_new_name(db, GROUP, name, 0, InternalError, f"[{method}] ")
            oid = self._next_id(db, GROUP)
            self._insert(db, GROUP, oid, bodies.group(oid, name))
            db.execute(
                "INSERT INTO group_quotas (group_oid, body) VALUES (?, ?)",
                (oid, _empty_quotas(oid)),
            )
        return oid

    # -- reading -------------------------------------------------------------------------
    def info(self, kind: str, oid: int, decrypt: bool = False) -> OneObject:
        method = _method(kind, "info")
        _check_kind(kind)
        db = self._db()
        if oid == -1 and kind in (USER, GROUP):
            oid = 0  # the session's user and its group
        row = db.execute(f"SELECT body FROM {TABLES[kind]} WHERE oid = ?", (oid,)).fetchone()
        if row is None:
            raise NotFoundError(f"[{method}] Error getting {MESSAGE_NAME[kind]} [{oid}].", oid)
        body: str = row[0]
        if kind == VNET:
            body = bodies.serialize(bodies.vnet_info_form(bodies.parse_body(body)))
        elif kind in (USER, GROUP):
            body = self._with_quotas(db, kind, oid, body, defaults=True)
        elif kind == DOCUMENT and decrypt:
            body = self._decrypted(oid, body)
        return OneObject(kind, body)

    def _with_quotas(
        self, db: sqlite3.Connection, kind: str, oid: int, body: str, defaults: bool
    ) -> str:
        table, key = ("user_quotas", "user_oid") if kind == USER else ("group_quotas", "group_oid")
        quota = db.execute(f"SELECT body FROM {table} WHERE {key} = ?", (oid,)).fetchone()
        default_text = None
        if defaults:
            name = "DEFAULT_USER_QUOTAS" if kind == USER else "DEFAULT_GROUP_QUOTAS"
            found = db.execute(
                "SELECT body FROM system_attributes WHERE name = ?", (name,)
            ).fetchone()
            default_text = found[0] if found else f"<{name}></{name}>"
        return bodies.with_quotas(body, quota[0] if quota else None, default_text)

    def _decrypted(self, oid: int, body: str) -> str:
        from onetools.one import secrets

        if secrets.MARKER not in body:
            return body
        root = bodies.parse_body(body)
        template = root.find("TEMPLATE")
        if template is None:
            return body
        for attribute in secrets.SECRET_MEMBERS:
            for element in template.findall(attribute):
                if len(element) == 0 and element.text:
                    element.text = secrets.unseal(element.text, self._key_file(), oid, attribute)
        return bodies.serialize(root)

    def pool(
        self,
        kind: str,
        filter_flag: int = FILTER_ALL,
        start: int = -1,
        end: int = -1,
        doc_type: int | None = None,
    ) -> list[OneObject]:
        _check_kind(kind)
        method = f"one.{kind}pool.info"
        where: list[str] = []
        params: list[object] = []
        limit = ""
        if kind == DOCUMENT:
            if doc_type is None:
                raise ApiError(f"[{method}] The document type is required")
            where.append("type = ?")
            params.append(doc_type)
        if kind == VM:  # one.vmpool.info with state -1: every VM but DONE ones
            where.append(f"state <> {VM_DONE}")
        if kind not in UNFILTERED_POOLS:
            if filter_flag < FILTER_PRIMARY_GROUP:
                raise ApiError(f"[{method}] Incorrect filter_flag")
            # The session is oneadmin (uid 0, primary and only group 0), an admin: "all" is
            # every object; the other flags filter on owner and group as oned's SQL does.
            if filter_flag == FILTER_PRIMARY_GROUP:
                where.append("gid = 0")
            elif filter_flag == FILTER_MINE:
                where.append("uid = 0")
            elif filter_flag == FILTER_GROUP:
                where.append("(uid = 0 OR gid IN (0))")
            elif filter_flag >= 0:
                where.append("uid = ?")
                params.append(filter_flag)
            if end < -1:
                limit = f" LIMIT {-end} OFFSET {max(start, 0)}"
            elif start != -1:
                where.append("oid >= ?")
                params.append(start)
                if end != -1:
                    where.append("oid <= ?")
                    params.append(end)
        sql = f"SELECT oid, body FROM {TABLES[kind]}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY oid" + limit
        if kind in (USER, GROUP):  # unfiltered pools: no WHERE, no LIMIT
            quotas, key = (
                ("user_quotas", "user_oid") if kind == USER else ("group_quotas", "group_oid")
            )
            joined = self._db().execute(
                f"SELECT p.body, q.body FROM {TABLES[kind]} p LEFT JOIN {quotas} q "
                f"ON q.{key} = p.oid ORDER BY p.oid"
            )
            return [
                OneObject(kind, bodies.with_quotas(body, quota, None)) for body, quota in joined
            ]
        rows = self._db().execute(sql, params).fetchall()
        return [OneObject(kind, body) for _oid, body in rows]

    # -- generic operations --------------------------------------------------------------
    def update(self, kind: str, oid: int, template: str, merge: bool = False) -> int:
        _check_kind(kind)
        method = _method(kind, "update")
        parsed = self._parse(template, method)
        with self._write() as db:
            root = self._load(db, kind, oid, method)
            self._check_lock(kind, root, oid, method, OP_MANAGE)
            if kind == DOCUMENT:
                self._seal(parsed, oid)
            tag = "USER_TEMPLATE" if kind == VM else "TEMPLATE"  # one.vm.update's target
            if merge:
                merged = bodies.template_of(root, tag)
                merged.merge(parsed)
                parsed = merged
            self._after_update(kind, root, parsed)
            bodies.replace_template(root, parsed, tag)
            self._save(db, kind, oid, root)
        return oid

    def _after_update(self, kind: str, root: Element, template: Template) -> None:
        """Top-level fields oned refreshes from an updated template."""
        synced: tuple[str, ...] = ()
        if kind == DATASTORE:
            synced = ("DS_MAD", "TM_MAD")
        elif kind == MARKETAPP:
            synced = ("DESCRIPTION", "VERSION", "APPTEMPLATE64")
        for key in synced:
            value = template.get(key)
            if value:
                bodies.set_text(root, key, value)

    def delete(self, kind: str, oid: int, force: bool = False, recursive: bool = False) -> int:
        _check_kind(kind)
        # 6.x has no one.vm.delete: a VM is deleted with one.vm.recover(id, 3)
        method = "one.vm.recover" if kind == VM else _method(kind, "delete")
        with self._write() as db:
            self._delete(db, kind, oid, method, force, recursive)
        return oid

    def _delete(
        self, db: sqlite3.Connection, kind: str, oid: int, method: str, force: bool, recursive: bool
    ) -> None:
        root = self._load(db, kind, oid, method)
        self._check_lock(kind, root, oid, method, OP_MANAGE)
        prefix = f"[{method}] Cannot delete {MESSAGE_NAME[kind]}. "
        if kind == CLUSTER:
            if oid < 100:
                raise ActionError(prefix + "System Clusters (ID < 100) cannot be deleted.", oid)
            for collection, noun in (
                ("HOSTS", "hosts"),
                ("DATASTORES", "datastores"),
                ("VNETS", "vnets"),
            ):
                count = len(bodies.get_ids(root, collection))
                if count:
                    raise ActionError(
                        prefix + f"Cluster {oid} is not empty, it contains {count} {noun}.", oid
                    )
        elif kind == HOST:
            if bodies.get_ids(root, "VMS"):
                raise ActionError(prefix + "Can not remove a host with running VMs", oid)
            cid = int(root.findtext("CLUSTER_ID") or -1)
            if cid >= 0 and self._exists(db, CLUSTER, cid):
                self._cluster_member(db, cid, "HOSTS", oid, add=False)
        elif kind == DATASTORE:
            if bodies.get_ids(root, "IMAGES"):
                raise ActionError(prefix + f"Datastore {oid} is not empty.", oid)
            self._leave_clusters(db, "DATASTORES", "cluster_datastore_relation", root, oid)
        elif kind == VNET:
            if int(root.findtext("USED_LEASES") or 0):
                raise ActionError(
                    prefix + "Can not remove a virtual network with leases in use", oid
                )
            self._leave_clusters(db, "VNETS", "cluster_network_relation", root, oid)
        elif kind == IMAGE:
            state = int(root.findtext("STATE") or 0)
            if state in (IMAGE_LOCKED, 9, 10) and not force:
                raise InternalError(f"[{method}] Image locked, use --force flag to delete it", oid)
            if bodies.get_ids(root, "VMS"):
                raise ActionError(prefix + "The image is used by VMs.", oid)
            self._image_quota(db, root, -1)
            self._remove_image_file(root)
            ds = int(root.findtext("DATASTORE_ID") or -1)
            if self._exists(db, DATASTORE, ds):
                ds_root = self._load(db, DATASTORE, ds, method)
                bodies.set_ids(
                    ds_root, "IMAGES", [i for i in bodies.get_ids(ds_root, "IMAGES") if i != oid]
                )
                self._save(db, DATASTORE, ds, ds_root)
        elif kind == TEMPLATE and recursive:
            for disk in bodies.template_of(root).vectors("DISK"):
                image_id = dict(disk).get("IMAGE_ID", "")
                if image_id.isdigit() and self._exists(db, IMAGE, int(image_id)):
                    self._delete(db, IMAGE, int(image_id), method, force, False)
        elif kind == VM:
            self._delete_vm(db, root, oid, method)
        elif kind == MARKET:
            apps = bodies.get_ids(root, "MARKETPLACEAPPS")
            mad = root.findtext("MARKET_MAD") or ""
            if apps and not MARKET_MAD_CONF.get(mad, ((), True, False))[2]:
                raise ActionError(
                    f"[{method}] Cannot delete marketplace. Marketplace {oid} is not empty.", oid
                )
            db.execute(
                f"DELETE FROM marketplaceapp_pool WHERE oid IN ({','.join('?' * len(apps))})", apps
            )
        elif kind == MARKETAPP:
            market = int(root.findtext("MARKETPLACE_ID") or -1)
            if self._exists(db, MARKET, market):
                market_root = self._load(db, MARKET, market, method)
                bodies.set_ids(
                    market_root,
                    "MARKETPLACEAPPS",
                    [a for a in bodies.get_ids(market_root, "MARKETPLACEAPPS") if a != oid],
                )
                self._save(db, MARKET, market, market_root)
        elif kind == USER:
            if oid == 0:
                raise ActionError(prefix + "oneadmin cannot be deleted.", oid)
            for gid in bodies.get_ids(root, "GROUPS"):
                if self._exists(db, GROUP, gid):
                    group = self._load(db, GROUP, gid, method)
                    bodies.set_ids(
                        group, "USERS", [u for u in bodies.get_ids(group, "USERS") if u != oid]
                    )
                    self._save(db, GROUP, gid, group)
            db.execute("DELETE FROM user_quotas WHERE user_oid = ?", (oid,))
        elif kind == GROUP:
            if oid < 100:
                raise ActionError(prefix + "System Groups (ID < 100) cannot be deleted.", oid)
            if bodies.get_ids(root, "USERS"):
                raise ActionError(prefix + "Group has users.", oid)
            db.execute("DELETE FROM group_quotas WHERE group_oid = ?", (oid,))
        db.execute(f"DELETE FROM {TABLES[kind]} WHERE oid = ?", (oid,))

    def _remove_image_file(self, image: Element) -> None:
        """An image's file that this store made (disk-saveas, clones, under
        ``<home>/datastores``) goes with the image; files it was given (PATH) stay."""
        source = image.findtext("SOURCE") or ""
        store_files = str(self.home / "datastores") + os.sep
        if source.startswith(store_files):
            with contextlib.suppress(OSError):
                os.unlink(source)

    def _leave_clusters(
        self, db: sqlite3.Connection, collection: str, relation: str, root: Element, oid: int
    ) -> None:
        for cid in bodies.get_ids(root, "CLUSTERS"):
            if self._exists(db, CLUSTER, cid):
                self._cluster_member(db, cid, collection, oid, add=False)
        db.execute(f"DELETE FROM {relation} WHERE oid = ?", (oid,))

    def rename(self, kind: str, oid: int, name: str) -> int:
        _check_kind(kind)
        method = _method(kind, "rename")
        with self._write() as db:
            root = self._load(db, kind, oid, method)
            self._check_lock(kind, root, oid, method, OP_MANAGE)
            reason = _name_error(name)
            if reason:
                raise ActionError(f"[{method}] {reason}", oid)
            uid = int(root.findtext("UID") or 0)
            other = self._name_taken(db, kind, name, uid)
            if other is not None and other != oid:
                noun = MESSAGE_NAME[kind]
                raise ActionError(
                    f"[{method}] {noun} cannot be renamed to {name} because it collides with "
                    f"{noun} {other}",
                    oid,
                )
            bodies.set_text(root, "NAME", name)
            self._save(db, kind, oid, root)
            # Children carry their parent's name: keep them right (onedb fsck checks them).
            for child_kind, id_path, name_path in {
                CLUSTER: [(HOST, "CLUSTER_ID", "CLUSTER")],
                DATASTORE: [(IMAGE, "DATASTORE_ID", "DATASTORE")],
                MARKET: [(MARKETAPP, "MARKETPLACE_ID", "MARKETPLACE")],
            }.get(kind, []):
                children = {HOST: "HOSTS", IMAGE: "IMAGES", MARKETAPP: "MARKETPLACEAPPS"}[
                    child_kind
                ]
                for child in bodies.get_ids(root, children):
                    if not self._exists(db, child_kind, child):
                        continue
                    child_root = self._load(db, child_kind, child, method)
                    if int(child_root.findtext(id_path) or -1) == oid:
                        bodies.set_text(child_root, name_path, name)
                        self._save(db, child_kind, child, child_root)
        return oid

    def chown(self, kind: str, oid: int, uid: int = -1, gid: int = -1) -> int:
        _check_kind(kind)
        method = _method(kind, "chown" if kind != USER else "chgrp")
        if kind in UNOWNED or kind == GROUP:
            raise ApiError(f"one.{kind}.chown is not an OpenNebula method")
        with self._write() as db:
            root = self._load(db, kind, oid, method)
            if kind == USER:
                if gid != -1:
                    self._change_primary_group(db, root, oid, gid, method)
                return oid
            self._check_lock(kind, root, oid, method, OP_MANAGE)
            if uid != -1:
                user = self._load(db, USER, uid, method)
                name = root.findtext("NAME") or ""
                if kind in OWNER_NAMES:
                    other = self._name_taken(db, kind, name, uid)
                    if other is not None and other != oid:
                        raise ActionError(
                            f"[{method}] Cannot change owner: user {uid} already owns "
                            f"{TAKEN_TYPE[kind]} {other} named {name}",
                            oid,
                        )
            new_group = self._load(db, GROUP, gid, method) if gid != -1 else None
            if kind == IMAGE:
                self._image_quota(db, root, -1)
            if uid != -1:
                bodies.set_text(root, "UID", uid)
                bodies.set_text(root, "UNAME", user.findtext("NAME") or "")
            if new_group is not None:
                bodies.set_text(root, "GID", gid)
                bodies.set_text(root, "GNAME", new_group.findtext("NAME") or "")
            if kind == IMAGE:
                self._image_quota(db, root, +1)
            self._save(db, kind, oid, root)
        return oid

    def _image_quota(self, db: sqlite3.Connection, image: Element, sign: int) -> None:
        """Add (``sign`` 1) or remove (-1) an image to/from its owner's and group's datastore
        quota usage, as oned does; uid 0 and gid 0 are not tracked (nor checked by fsck)."""
        ds = image.findtext("DATASTORE_ID") or "-1"
        size = int(image.findtext("SIZE") or 0)
        for table, key, owner in (
            ("user_quotas", "user_oid", int(image.findtext("UID") or 0)),
            ("group_quotas", "group_oid", int(image.findtext("GID") or 0)),
        ):
            if owner <= 0:
                continue
            row = db.execute(f"SELECT body FROM {table} WHERE {key} = ?", (owner,)).fetchone()
            root = bodies.parse_body(row[0] if row else _empty_quotas(owner))
            holder = root.find("DATASTORE_QUOTA")
            if holder is None:
                holder = bodies.sub(root, "DATASTORE_QUOTA")
            entry = next((e for e in holder.iterfind("DATASTORE") if e.findtext("ID") == ds), None)
            if entry is None:
                entry = bodies.sub(holder, "DATASTORE")
                for field, value in (("ID", ds), ("IMAGES", -1), ("IMAGES_USED", 0)):
                    bodies.sub(entry, field, value)
                bodies.sub(entry, "SIZE", -1)
                bodies.sub(entry, "SIZE_USED", 0)
            for field, delta in (("IMAGES_USED", 1), ("SIZE_USED", size)):
                used = int(float(entry.findtext(field) or 0)) + sign * delta
                bodies.set_text(entry, field, max(used, 0))
            db.execute(
                f"INSERT OR REPLACE INTO {table} ({key}, body) VALUES (?, ?)",
                (owner, bodies.serialize(root)),
            )

    def _change_primary_group(
        self, db: sqlite3.Connection, root: Element, oid: int, gid: int, method: str
    ) -> None:
        new_group = self._load(db, GROUP, gid, method)
        old = int(root.findtext("GID") or 0)
        if old == gid:
            return
        groups = [g for g in bodies.get_ids(root, "GROUPS") if g != old] + [gid]
        bodies.set_text(root, "GID", gid)
        bodies.set_text(root, "GNAME", new_group.findtext("NAME") or "")
        bodies.set_ids(root, "GROUPS", groups)
        self._save(db, USER, oid, root)
        if self._exists(db, GROUP, old):
            old_group = self._load(db, GROUP, old, method)
            bodies.set_ids(
                old_group, "USERS", [u for u in bodies.get_ids(old_group, "USERS") if u != oid]
            )
            self._save(db, GROUP, old, old_group)
        bodies.set_ids(new_group, "USERS", [*bodies.get_ids(new_group, "USERS"), oid])
        self._save(db, GROUP, gid, new_group)

    def chmod(self, kind: str, oid: int, permissions: Permissions) -> int:
        _check_kind(kind)
        method = _method(kind, "chmod")
        if kind in UNOWNED or kind in (USER, GROUP):
            raise ApiError(f"one.{kind}.chmod is not an OpenNebula method")
        with self._write() as db:
            root = self._load(db, kind, oid, method)
            current = bodies.get_permissions(root)
            wanted = [
                old if new == -1 else new
                for old, new in zip(current, permissions.bits, strict=True)
            ]
            admin_bits_change = any(current[i] != wanted[i] for i in (2, 5, 8))
            self._check_lock(kind, root, oid, method, OP_ADMIN if admin_bits_change else OP_MANAGE)
            element = root.find("PERMISSIONS")
            assert element is not None
            for field, bit in zip(bodies.PERMISSION_FIELDS, wanted, strict=True):
                bodies.set_text(element, field, bit)
            self._save(db, kind, oid, root)
        return oid

    # -- hosts, clusters, networks, images ---------------------------------------------------
    def host_status(self, oid: int, status: int) -> int:
        method = "one.host.status"
        if status not in HOST_STATES:
            raise InternalError(f"[{method}] Wrong status code", oid)
        with self._write() as db:
            root = self._load(db, HOST, oid, method)
            bodies.set_text(root, "PREV_STATE", root.findtext("STATE") or "0")
            bodies.set_text(root, "STATE", HOST_STATES[status])
            self._save(db, HOST, oid, root)
        return oid

    _CLUSTER_METHODS = {HOST: "host", DATASTORE: "datastore", VNET: "vnet"}

    def cluster_add(self, cluster_id: int, kind: str, oid: int) -> int:
        return self._cluster_change(cluster_id, kind, oid, add=True)

    def cluster_remove(self, cluster_id: int, kind: str, oid: int) -> int:
        return self._cluster_change(cluster_id, kind, oid, add=False)

    def _cluster_change(self, cluster_id: int, kind: str, oid: int, add: bool) -> int:
        if kind not in self._CLUSTER_METHODS:
            raise ApiError(f"Clusters hold hosts, datastores and vnets, not {kind}")
        method = f"one.cluster.{'add' if add else 'del'}{self._CLUSTER_METHODS[kind]}"
        with self._write() as db:
            if kind == HOST:
                target = cluster_id if add else 0  # delhost moves the host to the default cluster
                cluster = self._load(db, CLUSTER, target, method)
                host = self._load(db, HOST, oid, method)
                old = int(host.findtext("CLUSTER_ID") or -1)
                if old == target:
                    return cluster_id if add else 0
                if old >= 0 and self._exists(db, CLUSTER, old):
                    self._cluster_member(db, old, "HOSTS", oid, add=False)
                bodies.set_text(host, "CLUSTER_ID", target)
                bodies.set_text(host, "CLUSTER", cluster.findtext("NAME") or "")
                self._save(db, HOST, oid, host)
                self._cluster_member(db, target, "HOSTS", oid, add=True)
                return cluster_id if add else 0
            self._load(db, CLUSTER, cluster_id, method)
            root = self._load(db, kind, oid, method)
            self._check_lock(kind, root, oid, method, OP_ADMIN)
            collection, relation = (
                ("DATASTORES", "cluster_datastore_relation")
                if kind == DATASTORE
                else ("VNETS", "cluster_network_relation")
            )
            clusters = set(bodies.get_ids(root, "CLUSTERS"))
            if add == (cluster_id in clusters):
                if add:
                    return cluster_id
                raise ActionError(
                    f"[{method}] {MESSAGE_NAME[kind].capitalize()} {oid} is not in cluster "
                    f"{cluster_id}.",
                    oid,
                )
            if add:
                clusters.add(cluster_id)
                db.execute(
                    f"INSERT OR IGNORE INTO {relation} (cid, oid) VALUES (?, ?)", (cluster_id, oid)
                )
            else:
                clusters.discard(cluster_id)
                db.execute(f"DELETE FROM {relation} WHERE cid = ? AND oid = ?", (cluster_id, oid))
            bodies.set_ids(root, "CLUSTERS", clusters)
            self._save(db, kind, oid, root)
            self._cluster_member(db, cluster_id, collection, oid, add=add)
        return cluster_id

    def _vnet_for_ar(self, db: sqlite3.Connection, oid: int, method: str) -> Element:
        root = self._load(db, VNET, oid, method)
        self._check_lock(VNET, root, oid, method, OP_ADMIN)
        state = int(root.findtext("STATE") or 0)
        if state not in (VNET_READY, VNET_UPDATE_FAILURE):
            raise ActionError(
                f"Could not execute {method}Virtual Network is in wrong state: {state}", oid
            )
        return root

    def vnet_add_ar(self, oid: int, ar_template: str) -> int:
        method = "one.vn.add_ar"
        parsed = self._parse(ar_template, method)
        vectors = parsed.vectors("AR")
        if not vectors:
            raise InternalError(
                f"[{method}] Wrong AR definition: no AR vector in the template", oid
            )
        with self._write() as db:
            root = self._vnet_for_ar(db, oid, method)
            pool = root.find("AR_POOL")
            assert pool is not None
            next_id = max((int(ar.findtext("AR_ID") or 0) for ar in pool), default=-1) + 1
            for index, vector in enumerate(vectors):
                try:
                    bodies.add_address_range(pool, bodies.address_range(vector, next_id + index))
                except ValueError as exc:
                    raise InternalError(f"[{method}] {exc}", oid) from None
            self._save(db, VNET, oid, root)
        return oid

    def vnet_rm_ar(self, oid: int, ar_id: int, force: bool = False) -> int:
        method = "one.vn.rm_ar"
        with self._write() as db:
            root = self._vnet_for_ar(db, oid, method)
            pool = root.find("AR_POOL")
            assert pool is not None
            for ar in pool.findall("AR"):
                if int(ar.findtext("AR_ID") or -1) == ar_id:
                    if (ar.findtext("ALLOCATED") or "").strip() and not force:
                        raise InternalError(
                            f"[{method}] Address Range {ar_id} has leases in use", oid
                        )
                    pool.remove(ar)
                    break
            else:
                raise InternalError(f"[{method}] Address Range {ar_id} does not exist", oid)
            used = sum(len((ar.findtext("ALLOCATED") or "").split()) // 2 for ar in pool)
            bodies.set_text(root, "USED_LEASES", used)
            self._save(db, VNET, oid, root)
        return oid

    def enable(self, kind: str, oid: int, enable: bool) -> int:
        _check_kind(kind)
        method = _method(kind, "enable")
        if kind not in (IMAGE, MARKET, MARKETAPP, DATASTORE):
            raise ApiError(f"one.{kind}.enable is not an OpenNebula method")
        with self._write() as db:
            root = self._load(db, kind, oid, method)
            self._check_lock(kind, root, oid, method, OP_MANAGE)
            state = int(root.findtext("STATE") or 0)
            if kind == IMAGE:
                allowed = (
                    (IMAGE_DISABLED, IMAGE_ERROR_STATE, IMAGE_READY_STATE)
                    if enable
                    else (IMAGE_READY_STATE, IMAGE_DISABLED)
                )
                if state not in allowed:
                    verb = "enable" if enable else "disable"
                    raise InternalError(
                        f"[{method}] Could not {verb} image: Image cannot be in state {state}.", oid
                    )
                new = IMAGE_READY_STATE if enable else IMAGE_DISABLED
            elif kind == MARKETAPP:
                new = state
                if state in (APP_READY, APP_DISABLED):  # other states: a silent no-op
                    new = APP_READY if enable else APP_DISABLED
            elif kind == DATASTORE:
                if int(root.findtext("TYPE") or 0) != 1:
                    raise InternalError(
                        f"[{method}] Only SYSTEM_DS can be disabled or enabled", oid
                    )
                new = 0 if enable else 1
            else:
                new = 0 if enable else 1
                apps = bodies.get_ids(root, "MARKETPLACEAPPS")
                if not enable and apps:  # disabling a market drops its app records
                    marks = ",".join("?" * len(apps))
                    db.execute(f"DELETE FROM marketplaceapp_pool WHERE oid IN ({marks})", apps)
                    bodies.set_ids(root, "MARKETPLACEAPPS", [])
            bodies.set_text(root, "STATE", new)
            self._save(db, kind, oid, root)
        return oid

    # -- VM templates and virtual machines ---------------------------------------------------
    def clone(self, kind: str, oid: int, name: str, recursive: bool = False) -> int:
        if kind != TEMPLATE:
            raise ApiError(f"clone of {kind} objects is not supported (VM templates only)")
        method = "one.template.clone"
        with self._write() as db:
            source = self._load(db, TEMPLATE, oid, method)
            self._check_lock(TEMPLATE, source, oid, method, OP_USE)
            template = bodies.template_of(source)
            if recursive:
                disks: list[list[tuple[str, str]]] = []
                for disk in template.vectors("DISK"):
                    values = dict(disk)
                    image_id = values.get("IMAGE_ID", "")
                    if image_id.isdigit() and self._exists(db, IMAGE, int(image_id)):
                        copy = self._copy_image(db, int(image_id), f"{name}-disk-{len(disks)}")
                        disk = [(k, v) for k, v in disk if k not in ("IMAGE_ID", "IMAGE")]
                        disk.append(("IMAGE_ID", str(copy)))
                    disks.append(disk)
                template.remove("DISK")
                for disk in disks:
                    template.add("DISK", disk)
            self._check_new_name(db, TEMPLATE, name, 0, AllocateError, f"[{method}] ")
            new = self._next_id(db, TEMPLATE)
            root = bodies.vm_template(new, name, self._session_owner(), int(time.time()), template)
            self._insert(db, TEMPLATE, new, root)
        return new

    def _copy_image(self, db: sqlite3.Connection, oid: int, name: str) -> int:
        """A READY copy of image ``oid`` (its file copied under the store) named ``name``."""
        image = self._load(db, IMAGE, oid, "one.image.clone")
        ds = int(image.findtext("DATASTORE_ID") or 1)
        source_file = image_file(image)
        return self._new_image_from_file(
            db, name, ds, source_file, image, "one.image.clone", persistent=False
        )

    def _new_image_from_file(
        self,
        db: sqlite3.Connection,
        name: str,
        datastore_id: int,
        source_file: Path | None,
        like: Element,
        method: str,
        persistent: bool,
        type_code: int | None = None,
    ) -> int:
        """An image ``name`` in ``datastore_id`` whose file (SOURCE) is a copy of
        ``source_file``, made under ``<home>/datastores/<ds>/``; attributes from ``like``."""
        import shutil

        prefix = f"[{method}] Error allocating a new image. "
        self._check_new_name(db, IMAGE, name, 0, AllocateError, prefix)
        ds_root = self._load(db, DATASTORE, datastore_id, method)
        oid = self._next_id(db, IMAGE)
        now = int(time.time())
        digest = hashlib.md5(f"{oid}:{now}:{name}:{os.getpid()}".encode()).hexdigest()
        directory = self.home / "datastores" / str(datastore_id)
        target = directory / digest
        size = 0
        if source_file is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source_file, target)
            except OSError as exc:
                target.unlink(missing_ok=True)
                raise InternalError(f"[{method}] Cannot copy {source_file}: {exc}") from None
            size = (target.stat().st_size + 1024 * 1024 - 1) // (1024 * 1024)
        template = Template()
        dev_prefix = like.findtext("TEMPLATE/DEV_PREFIX")
        if dev_prefix:
            template.set("DEV_PREFIX", dev_prefix)
        fields = {
            "TYPE": int(like.findtext("TYPE") or 0) if type_code is None else type_code,
            "DISK_TYPE": int(ds_root.findtext("DISK_TYPE") or 0),
            "PERSISTENT": int(persistent),
            "REGTIME": now,
            "SOURCE": str(target) if source_file is not None else "",
            "PATH": "",
            "FORMAT": like.findtext("FORMAT") or "raw",
            "SIZE": size or int(like.findtext("SIZE") or 0),
            "STATE": IMAGE_READY_STATE,
            "PREV_STATE": IMAGE_LOCKED,
        }
        root = bodies.image(
            oid,
            name,
            self._session_owner(),
            fields,
            datastore_id,
            ds_root.findtext("NAME") or "",
            template,
        )
        self._insert(db, IMAGE, oid, root)
        self._image_quota(db, root, +1)
        bodies.set_ids(ds_root, "IMAGES", [*bodies.get_ids(ds_root, "IMAGES"), oid])
        self._save(db, DATASTORE, datastore_id, ds_root)
        return oid

    def allocate_vm(self, template: str, hold: bool = False) -> int:
        method = "one.vm.allocate"
        parsed = self._parse(template, method)
        name = parsed.pop("NAME")
        for key, kind_text in (("MEMORY", "integer"), ("CPU", "float or integer")):
            try:
                ok = float(parsed.get(key) or "") > 0
            except ValueError:
                ok = False
            if not ok:
                raise InternalError(
                    f"[{method}] {key} attribute must be a positive {kind_text} value."
                )
        with self._write() as db:
            oid = self._next_id(db, VM)
            core = Template()
            user = Template()
            for key, value in parsed.attributes:
                (core if key in VM_CORE_ATTRIBUTES else user).add(key, value)
            disks = [
                self._vm_disk(db, oid, index, dict(vector), method)
                for index, vector in enumerate(core.remove("DISK"))
                if isinstance(vector, list)
            ]
            nics = [
                self._vm_nic(db, oid, index, dict(vector), method)
                for index, vector in enumerate(core.remove("NIC"))
                if isinstance(vector, list)
            ]
            _assign_targets(disks)
            for disk in disks:
                core.add("DISK", sorted(disk.items()))
            for nic in nics:
                core.add("NIC", sorted(nic.items()))
            core.set("VMID", str(oid))
            state = VM_HOLD if hold else VM_PENDING
            root = bodies.vm(
                oid,
                name or f"one-{oid}",
                self._session_owner(),
                state,
                int(time.time()),
                core,
                user,
            )
            self._insert(db, VM, oid, root)
        return oid

    def _vm_disk(
        self, db: sqlite3.Connection, vm_id: int, index: int, disk: dict[str, str], method: str
    ) -> dict[str, str]:
        """A VM DISK as oned completes it from its image (or a volatile one as given)."""
        disk["DISK_ID"] = str(index)
        image_id = disk.get("IMAGE_ID", "").strip()
        if not image_id and disk.get("IMAGE"):
            uname = disk.get("IMAGE_UNAME") or "oneadmin"
            row = db.execute(
                "SELECT oid FROM image_pool WHERE name = ? AND uid = "
                "(SELECT oid FROM user_pool WHERE name = ?)",
                (disk["IMAGE"], uname),
            ).fetchone()
            if row is None:
                raise InternalError(f"[{method}] Image {disk['IMAGE']} of user {uname} not found")
            image_id = str(row[0])
        if not image_id:
            disk.setdefault("TYPE", "fs")
            disk.setdefault("DEV_PREFIX", "sd")
            return disk
        try:
            image = self._load(db, IMAGE, int(image_id), method)
        except ValueError:
            raise InternalError(f"[{method}] Wrong IMAGE_ID: {image_id}") from None
        state = int(image.findtext("STATE") or 0)
        persistent = image.findtext("PERSISTENT") == "1"
        if state not in (IMAGE_READY_STATE, 2) or (persistent and state == 2):
            raise InternalError(f"[{method}] Image {image_id} is not READY to be used by VMs")
        ds_id = int(image.findtext("DATASTORE_ID") or -1)
        ds_root = self._load(db, DATASTORE, ds_id, method)
        tm_mad = ds_root.findtext("TM_MAD") or "ssh"
        ln_target, clone_target, _shared, _migrate, orphans = TM_MAD_CONF.get(
            tm_mad, ("NONE", "SYSTEM", "NO", None, None)
        )
        image_type = int(image.findtext("TYPE") or 0)
        cdrom = image_type == bodies.IMAGE_TYPES["CDROM"]
        disk.update(
            {
                "ALLOW_ORPHANS": orphans or "NO",
                "CLONE": "NO" if persistent or cdrom else "YES",
                "CLONE_TARGET": clone_target,
                "CLUSTER_ID": ",".join(str(c) for c in bodies.get_ids(ds_root, "CLUSTERS")),
                "DATASTORE": ds_root.findtext("NAME") or "",
                "DATASTORE_ID": str(ds_id),
                "DEV_PREFIX": image.findtext("TEMPLATE/DEV_PREFIX") or "sd",
                "DISK_SNAPSHOT_TOTAL_SIZE": "0",
                "DISK_TYPE": "FILE",
                "DRIVER": image.findtext("FORMAT") or "raw",
                "FORMAT": image.findtext("FORMAT") or "raw",
                "IMAGE": image.findtext("NAME") or "",
                "IMAGE_ID": image_id,
                "IMAGE_STATE": str(state),
                "IMAGE_UID": image.findtext("UID") or "0",
                "IMAGE_UNAME": image.findtext("UNAME") or "",
                "LN_TARGET": ln_target,
                "ORIGINAL_SIZE": image.findtext("SIZE") or "0",
                "READONLY": "YES" if cdrom else "NO",
                "SAVE": "YES" if persistent else "NO",
                "SIZE": image.findtext("SIZE") or "0",
                "SOURCE": image.findtext("SOURCE") or "",
                "TM_MAD": tm_mad,
                "TYPE": "CDROM" if cdrom else "FILE",
            }
        )
        if persistent:
            disk["PERSISTENT"] = "YES"
        users = [*bodies.get_ids(image, "VMS"), vm_id]
        bodies.set_ids(image, "VMS", users)
        bodies.set_text(image, "RUNNING_VMS", len(users))
        bodies.set_text(image, "STATE", 8 if persistent else 2)  # USED_PERS / USED
        self._save(db, IMAGE, int(image_id), image)
        return disk

    def _vm_nic(
        self, db: sqlite3.Connection, vm_id: int, index: int, nic: dict[str, str], method: str
    ) -> dict[str, str]:
        """A VM NIC with a lease of its network's first address range that has one free."""
        net_text = nic.get("NETWORK_ID", "").strip()
        if not net_text and nic.get("NETWORK"):
            row = db.execute(
                "SELECT oid FROM network_pool WHERE name = ?", (nic["NETWORK"],)
            ).fetchone()
            if row is None:
                raise InternalError(f"[{method}] Virtual network {nic['NETWORK']} not found")
            net_text = str(row[0])
        nic["NIC_ID"] = str(index)
        nic["TARGET"] = f"one-{vm_id}-{index}"
        if not net_text:
            return nic
        try:
            net_id = int(net_text)
        except ValueError:
            raise InternalError(f"[{method}] Wrong NETWORK_ID: {net_text}") from None
        vnet = self._load(db, VNET, net_id, method)
        for ar in vnet.iterfind("AR_POOL/AR"):
            size = int(ar.findtext("SIZE") or 0)
            allocated = (ar.findtext("ALLOCATED") or "").split()
            used = {int(i) for i in allocated[0::2]}
            free = next((i for i in range(size) if i not in used), None)
            if free is None:
                continue
            owner = 0x0000001000000000 | vm_id  # a VM's lease (oned's PoolObjectSQL::VM bit)
            bodies.set_text(ar, "ALLOCATED", " ".join([*allocated, str(free), str(owner)]))
            mac = int((ar.findtext("MAC") or "0").replace(":", ""), 16) + free
            nic["MAC"] = bodies.format_mac(mac)
            ip_text = ar.findtext("IP")
            if ip_text:
                import ipaddress

                nic["IP"] = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(ip_text)) + free))
            nic["AR_ID"] = ar.findtext("AR_ID") or "0"
            break
        else:
            raise InternalError(
                f"[{method}] Cannot get IP/MAC lease from virtual network {net_id}."
            )
        bodies.set_text(vnet, "USED_LEASES", int(vnet.findtext("USED_LEASES") or 0) + 1)
        self._save(db, VNET, net_id, vnet)
        template = bodies.template_of(vnet)
        nic.update(
            {
                "BRIDGE": vnet.findtext("BRIDGE") or "",
                "BRIDGE_TYPE": vnet.findtext("BRIDGE_TYPE") or "linux",
                "NETWORK": vnet.findtext("NAME") or "",
                "NETWORK_ID": str(net_id),
                "NETWORK_UNAME": vnet.findtext("UNAME") or "",
                "SECURITY_GROUPS": template.get("SECURITY_GROUPS") or "0",
                "VN_MAD": vnet.findtext("VN_MAD") or "",
            }
        )
        nic.pop("NETWORK_MODE", None)
        return nic

    def place_vm(self, oid: int, host_id: int, system_datastore_id: int = 0) -> int:
        """Embedded store only (not on ``OneApi``): what the scheduler and a deploy would have
        done to a PENDING (or HOLD) VM: a history record on host ``host_id`` and system
        datastore ``system_datastore_id``, the host's share, the disks' files copied to
        ``<home>/datastores/<system ds>/<vm id>/disk.<disk id>`` (image disks: their image's
        file; volatile ones: an empty file), and the VM RUNNING (STATE 3, LCM_STATE 3)."""
        import shutil

        method = "one.vm.deploy"
        with self._write() as db:
            root = self._load(db, VM, oid, method)
            state = int(root.findtext("STATE") or 0)
            if state not in (VM_PENDING, VM_HOLD):
                raise ActionError(
                    f"[{method}] Deploy action is not available for state "
                    f"{VM_STATE_NAMES.get(state, state)}",
                    oid,
                )
            host = self._load(db, HOST, host_id, method)
            ds_root = self._load(db, DATASTORE, system_datastore_id, method)
            if int(ds_root.findtext("TYPE") or 0) != 1:
                raise ActionError(f"[{method}] Datastore {system_datastore_id} is not a system DS")
            directory = self.home / "datastores" / str(system_datastore_id) / str(oid)
            template = bodies.template_of(root)
            try:
                directory.mkdir(parents=True, exist_ok=True)
                for disk in template.vectors("DISK"):
                    values = dict(disk)
                    target = directory / f"disk.{values.get('DISK_ID', '0')}"
                    image_id = values.get("IMAGE_ID", "")
                    source = None
                    if image_id.isdigit() and self._exists(db, IMAGE, int(image_id)):
                        source = image_file(self._load(db, IMAGE, int(image_id), method))
                    if source is not None:
                        shutil.copyfile(source, target)
                    else:
                        target.touch()
            except OSError as exc:
                shutil.rmtree(directory, ignore_errors=True)
                raise InternalError(f"[{method}] Cannot write the VM's disks: {exc}") from None
            bodies.vm_history(
                root,
                len(root.findall("HISTORY_RECORDS/HISTORY")),
                host_id,
                host.findtext("NAME") or "",
                int(host.findtext("CLUSTER_ID") or 0),
                {
                    "VM_MAD": host.findtext("VM_MAD") or "",
                    "TM_MAD": ds_root.findtext("TM_MAD") or "",
                    "DS_ID": system_datastore_id,
                    "STIME": int(time.time()),
                },
            )
            self._set_vm_state(root, VM_ACTIVE, LCM_RUNNING)
            bodies.set_text(root, "DEPLOY_ID", f"one-{oid}")
            self._save(db, VM, oid, root)
            self._host_share(db, host_id, root, +1, method)
        return oid

    def _host_share(
        self, db: sqlite3.Connection, host_id: int, vm: Element, sign: int, method: str
    ) -> None:
        host = self._load(db, HOST, host_id, method)
        oid = int(vm.findtext("ID") or 0)
        ids = set(bodies.get_ids(host, "VMS"))
        ids = ids | {oid} if sign > 0 else ids - {oid}
        bodies.set_ids(host, "VMS", sorted(ids))
        cpu = round(float(vm.findtext("TEMPLATE/CPU") or 0) * 100)
        memory = int(float(vm.findtext("TEMPLATE/MEMORY") or 0)) * 1024
        for path, delta in (
            ("HOST_SHARE/CPU_USAGE", cpu),
            ("HOST_SHARE/MEM_USAGE", memory),
            ("HOST_SHARE/RUNNING_VMS", 1),
        ):
            value = int(host.findtext(path) or 0) + sign * delta
            bodies.set_text(host, path, max(value, 0))
        self._save(db, HOST, host_id, host)

    @staticmethod
    def _set_vm_state(root: Element, state: int, lcm_state: int) -> None:
        bodies.set_text(root, "PREV_STATE", root.findtext("STATE") or "0")
        bodies.set_text(root, "PREV_LCM_STATE", root.findtext("LCM_STATE") or "0")
        bodies.set_text(root, "STATE", state)
        bodies.set_text(root, "LCM_STATE", lcm_state)

    def vm_action(self, oid: int, action: str) -> int:
        method = "one.vm.action"
        if action not in VM_ACTIONS_HERE:
            raise ActionError(
                f'[{method}] Virtual machine action "{action}" is not supported by the '
                "embedded store (no hypervisor runs behind it): only "
                + ", ".join(sorted(VM_ACTIONS_HERE)),
                oid,
            )
        with self._write() as db:
            root = self._load(db, VM, oid, method)
            state = int(root.findtext("STATE") or 0)
            lcm = int(root.findtext("LCM_STATE") or 0)
            if action in ("poweroff", "poweroff-hard"):
                if state != VM_ACTIVE or lcm != LCM_RUNNING:
                    raise ActionError(
                        f'[{method}] Error performing action "{action}": Could not power off '
                        f"VM {oid}, wrong state {_vm_state_text(state, lcm)}.",
                        oid,
                    )
                self._set_vm_state(root, VM_POWEROFF, LCM_INIT)
            else:  # resume
                if state != VM_POWEROFF:
                    raise ActionError(
                        f'[{method}] Error performing action "{action}": Could not resume '
                        f"VM {oid}, wrong state {_vm_state_text(state, lcm)}.",
                        oid,
                    )
                self._set_vm_state(root, VM_ACTIVE, LCM_RUNNING)
            self._save(db, VM, oid, root)
        return oid

    def vm_disksaveas(
        self, oid: int, disk_id: int, name: str, image_type: str = "", snapshot_id: int = -1
    ) -> int:
        method = "one.vm.disksaveas"
        if snapshot_id != -1:
            raise ActionError(f"[{method}] Disk snapshots are not kept by the embedded store", oid)
        with self._write() as db:
            root = self._load(db, VM, oid, method)
            state = int(root.findtext("STATE") or 0)
            lcm = int(root.findtext("LCM_STATE") or 0)
            # oned also saves a RUNNING VM's disk (hot); without a hypervisor to freeze it
            # the copy could be inconsistent, so only a powered-off VM's disk is saved here.
            if state != VM_POWEROFF:
                raise ActionError(
                    f"[{method}] VM has to be POWEROFF to save disks (it is "
                    f"{_vm_state_text(state, lcm)}): the embedded store saves no running disk",
                    oid,
                )
            disk = next(
                (
                    dict(d)
                    for d in bodies.template_of(root).vectors("DISK")
                    if dict(d).get("DISK_ID") == str(disk_id)
                ),
                None,
            )
            if disk is None:
                raise ActionError(f"[{method}] VM disk does not exist", oid)
            image_text = disk.get("IMAGE_ID", "")
            if not image_text.isdigit():
                raise ActionError(f"[{method}] Cannot save_as a volatile disk", oid)
            if disk.get("TYPE") == "CDROM":
                raise ActionError(f"[{method}] Cannot save_as a CDROM disk", oid)
            image = self._load(db, IMAGE, int(image_text), method)
            source = self._vm_disk_file(root, disk_id)
            if source is None:
                source = image_file(image)
            type_code = None
            if image_type:
                if image_type.upper() not in bodies.IMAGE_TYPES:
                    raise AllocateError(f"[{method}] Wrong image TYPE: {image_type}", oid)
                type_code = bodies.IMAGE_TYPES[image_type.upper()]
            return self._new_image_from_file(
                db,
                name,
                int(image.findtext("DATASTORE_ID") or 1),
                source,
                image,
                method,
                persistent=False,
                type_code=type_code,
            )

    def _vm_disk_file(self, root: Element, disk_id: int) -> Path | None:
        records = root.findall("HISTORY_RECORDS/HISTORY")
        if not records:
            return None
        ds = records[-1].findtext("DS_ID") or "0"
        path = self.home / "datastores" / ds / (root.findtext("ID") or "") / f"disk.{disk_id}"
        return path if path.is_file() else None

    def _delete_vm(self, db: sqlite3.Connection, root: Element, oid: int, method: str) -> None:
        """What ``one.vm.recover(id, 3)`` (delete) leaves: images, leases and host freed."""
        import shutil

        records = root.findall("HISTORY_RECORDS/HISTORY")
        state = int(root.findtext("STATE") or 0)
        if records and state in (VM_ACTIVE, VM_SUSPENDED, VM_POWEROFF):
            host_id = int(records[-1].findtext("HID") or -1)
            if self._exists(db, HOST, host_id):
                self._host_share(db, host_id, root, -1, method)
            ds = records[-1].findtext("DS_ID") or "0"
            shutil.rmtree(self.home / "datastores" / ds / str(oid), ignore_errors=True)
        template = bodies.template_of(root)
        for disk in template.vectors("DISK"):
            image_text = dict(disk).get("IMAGE_ID", "")
            if not image_text.isdigit() or not self._exists(db, IMAGE, int(image_text)):
                continue
            image = self._load(db, IMAGE, int(image_text), method)
            users = [v for v in bodies.get_ids(image, "VMS") if v != oid]
            bodies.set_ids(image, "VMS", users)
            bodies.set_text(image, "RUNNING_VMS", len(users))
            if not users and int(image.findtext("STATE") or 0) in (2, 8):
                bodies.set_text(image, "STATE", IMAGE_READY_STATE)
            self._save(db, IMAGE, int(image_text), image)
        owner = str(0x0000001000000000 | oid)
        for nic in template.vectors("NIC"):
            net_text = dict(nic).get("NETWORK_ID", "")
            if not net_text.isdigit() or not self._exists(db, VNET, int(net_text)):
                continue
            vnet = self._load(db, VNET, int(net_text), method)
            freed = 0
            for ar in vnet.iterfind("AR_POOL/AR"):
                parts = (ar.findtext("ALLOCATED") or "").split()
                kept = [
                    item
                    for pair in zip(parts[0::2], parts[1::2], strict=False)
                    if pair[1] != owner
                    for item in pair
                ]
                freed += (len(parts) - len(kept)) // 2
                bodies.set_text(ar, "ALLOCATED", " ".join(kept))
            used = int(vnet.findtext("USED_LEASES") or 0) - freed
            bodies.set_text(vnet, "USED_LEASES", max(used, 0))
            self._save(db, VNET, int(net_text), vnet)

    # -- locks ---------------------------------------------------------------------------
    def lock(self, kind: str, oid: int, level: int, test: bool = False) -> int:
        _check_kind(kind)
        method = _method(kind, "lock")
        if kind not in LOCKABLE:
            raise AuthorizationError(f"[{method}] Object cannot be locked.", oid)
        if level == LOCK_ALL:
            level = LOCK_USE
        if level not in (LOCK_USE, LOCK_MANAGE, LOCK_ADMIN):
            raise ActionError(f"[{method}] Wrong lock level specified", oid)
        with self._write() as db:
            root = self._load(db, kind, oid, method)
            current = bodies.get_lock(root)
            if current is not None and test:
                raise LockedError(f"[{method}] {current[2]}", oid, lock_time=current[2])
            self._request += 1
            bodies.set_lock(root, (level, 0, int(time.time()), self._request))
            self._save(db, kind, oid, root)
        return oid

    def unlock(self, kind: str, oid: int) -> int:
        _check_kind(kind)
        method = _method(kind, "unlock")
        if kind not in LOCKABLE:
            raise AuthorizationError(f"[{method}] Object cannot be locked.", oid)
        with self._write() as db:
            root = self._load(db, kind, oid, method)
            if bodies.get_lock(root) is not None:
                bodies.set_lock(root, None)
                self._save(db, kind, oid, root)
        return oid


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ApiError(f"Unknown object kind '{kind}' (one of {', '.join(KINDS)})")


def _empty_quotas(oid: int) -> str:
    """The quota row of a new user or group: every section empty (as the bootstrap writes)."""
    return (
        f"<QUOTAS><ID>{oid}</ID><DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
        "<VM_QUOTA></VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA></QUOTAS>"
    )


def _local_image_facts(path: str) -> tuple[int, str]:
    """Size in MiB (rounded up) and format (``qcow2``/``raw``) of a local image file, as the
    datastore driver would find them; ``(0, "")`` for URLs or missing files."""
    if not path or "://" in path:
        return 0, ""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError:
        return 0, ""
    return (size + 1024 * 1024 - 1) // (1024 * 1024), "qcow2" if magic == b"QFI\xfb" else "raw"


class DriverTransaction:
    """Rows of one ``LocalOne.driver_transaction``: bodies as element trees, written with
    their columns derived as every other write of the store does."""

    def __init__(self, store: LocalOne, db: sqlite3.Connection) -> None:
        self.store = store
        self.db = db

    def next_id(self, kind: str) -> int:
        return self.store._next_id(self.db, kind)

    def load(self, kind: str, oid: int, method: str) -> Element:
        """The stored body (``NotFoundError`` naming ``method`` when missing)."""
        return self.store._load(self.db, kind, oid, method)

    def insert(self, kind: str, oid: int, root: Element) -> None:
        self.store._insert(self.db, kind, oid, root)

    def save(self, kind: str, oid: int, root: Element) -> None:
        self.store._save(self.db, kind, oid, root)

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, parameters)
