"""The schema oned creates at each supported release, 5.10.0 to 6.10.0.

Written from the per-release facts: 6.0.0 is the base; 5.10.0 differs in three tables
(``acl.user``, ``host_pool.last_mon_time``, ``vm_pool.last_poll``); 5.12.0 to 6.6.0 equal
6.0.0; 6.8.0 adds ``backupjob_pool`` and ``schedaction_pool``; 6.10.0 replaces
``vm_pool.search_token`` (and its MySQL FULLTEXT index) with ``body_json JSON``.
Table order is oned's bootstrap order: ``logdb``, the local pools, the local system tables,
the shared pools, ``db_versioning``.
"""

from __future__ import annotations

from onetools.db.schema.model import LOCAL, SHARED, Column, Index, Schema, Table

# The version lists live in onetools.db.support (imported by `onedb version` without this
# module); re-exported here for the schema package's users.
from onetools.db.support import LATEST as LATEST
from onetools.db.support import POSTGRESQL_VERSIONS as POSTGRESQL_VERSIONS
from onetools.db.support import SUPPORTED_VERSIONS as SUPPORTED_VERSIONS
from onetools.db.support import latest_for as latest_for

INT = "INTEGER"
TEXT = "MEDIUMTEXT"
NAME = "VARCHAR(128)"


def _cols(*spec: str) -> tuple[Column, ...]:
    """Columns from ``"name TYPE"`` strings."""
    columns = []
    for item in spec:
        name, _, type_ = item.partition(" ")
        columns.append(Column(name, type_))
    return tuple(columns)


_STD = (
    "oid INTEGER",
    "name VARCHAR(128)",
    "body MEDIUMTEXT",
    "uid INTEGER",
    "gid INTEGER",
    "owner_u INTEGER",
    "group_u INTEGER",
    "other_u INTEGER",
)


def _pool(
    name: str,
    *extra: str,
    scope: str = LOCAL,
    unique: tuple[tuple[str, ...], ...] = (),
) -> Table:
    """A pool table with oned's eight standard columns plus ``extra`` ones."""
    return Table(name, _cols(*_STD, *extra), ("oid",), scope, unique)


_NAME_UNIQUE = (("name",),)
_NAME_UID_UNIQUE = (("name", "uid"),)

_VM_POOL_COLUMNS = (
    "oid INTEGER",
    "name VARCHAR(128)",
    "body MEDIUMTEXT",
    "uid INTEGER",
    "gid INTEGER",
    "state INTEGER",
    "lcm_state INTEGER",
    "owner_u INTEGER",
    "group_u INTEGER",
    "other_u INTEGER",
    "short_body MEDIUMTEXT",
)
VM_POOL_5_12 = Table(
    "vm_pool",
    _cols(*_VM_POOL_COLUMNS, "search_token MEDIUMTEXT"),
    ("oid",),
    fulltext=("ftidx", ("search_token",)),
)
VM_POOL_5_10 = Table(
    "vm_pool",
    _cols(
        *_VM_POOL_COLUMNS[:5], "last_poll INTEGER", *_VM_POOL_COLUMNS[5:], "search_token MEDIUMTEXT"
    ),
    ("oid",),
    fulltext=("ftidx", ("search_token",)),
)
VM_POOL_6_10 = Table("vm_pool", _cols(*_VM_POOL_COLUMNS, "body_json JSON"), ("oid",))

HOST_POOL_5_12 = Table(
    "host_pool",
    _cols(
        "oid INTEGER",
        "name VARCHAR(128)",
        "body MEDIUMTEXT",
        "state INTEGER",
        "uid INTEGER",
        "gid INTEGER",
        "owner_u INTEGER",
        "group_u INTEGER",
        "other_u INTEGER",
        "cid INTEGER",
    ),
    ("oid",),
)
HOST_POOL_5_10 = Table(
    "host_pool",
    (*HOST_POOL_5_12.columns[:4], Column("last_mon_time", INT), *HOST_POOL_5_12.columns[4:]),
    ("oid",),
)

ACL_5_12 = Table(
    "acl",
    _cols("oid INT", "userset BIGINT", "resource BIGINT", "rights BIGINT", "zone BIGINT"),
    ("oid",),
    SHARED,
    (("userset", "resource", "rights", "zone"),),
)
ACL_5_10 = Table(
    "acl",
    _cols("oid INT", "user BIGINT", "resource BIGINT", "rights BIGINT", "zone BIGINT"),
    ("oid",),
    SHARED,
    (("user", "resource", "rights", "zone"),),
)

BACKUPJOB_POOL = _pool("backupjob_pool", "priority INTEGER", "outdated_vms INTEGER")
SCHEDACTION_POOL = Table(
    "schedaction_pool",
    _cols(
        "oid INTEGER",
        "parent_id INTEGER",
        "type VARCHAR(128)",
        "body MEDIUMTEXT",
        "time INTEGER",
        "done INTEGER",
    ),
    ("oid",),
)

DB_VERSIONING = Table(
    "db_versioning",
    _cols("oid INTEGER", "version VARCHAR(256)", "timestamp INTEGER", "comment VARCHAR(256)"),
    ("oid",),
    SHARED,
)
LOCAL_DB_VERSIONING = Table(
    "local_db_versioning",
    _cols(
        "oid INTEGER",
        "version VARCHAR(256)",
        "timestamp INTEGER",
        "comment VARCHAR(256)",
        "is_slave BOOLEAN",
    ),
    ("oid",),
)
POOL_CONTROL = Table(
    "pool_control", _cols("tablename VARCHAR(32)", "last_oid BIGINT UNSIGNED"), ("tablename",)
)
SYSTEM_ATTRIBUTES = Table(
    "system_attributes", _cols("name VARCHAR(128)", "body MEDIUMTEXT"), ("name",)
)

_TABLES_6_0: tuple[Table, ...] = (
    Table(
        "logdb",
        _cols(
            "log_index BIGINT UNSIGNED",
            "term INTEGER",
            "sqlcmd MEDIUMTEXT",
            "timestamp INTEGER",
            "fed_index BIGINT UNSIGNED",
            "applied BOOLEAN",
        ),
        ("log_index",),
    ),
    # stage 1: local pools
    VM_POOL_5_12,
    Table(
        "vm_monitoring",
        _cols("vmid INTEGER", "last_poll INTEGER", "body MEDIUMTEXT"),
        ("vmid", "last_poll"),
    ),
    Table(
        "history",
        _cols("vid INTEGER", "seq INTEGER", "body MEDIUMTEXT", "stime INTEGER", "etime INTEGER"),
        ("vid", "seq"),
    ),
    Table(
        "vm_showback",
        _cols("vmid INTEGER", "year INTEGER", "month INTEGER", "body MEDIUMTEXT"),
        ("vmid", "year", "month"),
    ),
    Table("vm_import", _cols("deploy_id VARCHAR(128)", "vmid INTEGER"), ("deploy_id",)),
    HOST_POOL_5_12,
    Table(
        "host_monitoring",
        _cols("hid INTEGER", "last_mon_time INTEGER", "body MEDIUMTEXT"),
        ("hid", "last_mon_time"),
    ),
    _pool("network_pool", "pid INTEGER", unique=_NAME_UID_UNIQUE),
    Table("network_vlan_bitmap", _cols("id INTEGER", "map LONGTEXT"), ("id",)),
    _pool("image_pool", unique=_NAME_UID_UNIQUE),
    _pool("template_pool"),
    _pool("datastore_pool"),
    _pool("cluster_pool", unique=_NAME_UNIQUE),
    Table("cluster_datastore_relation", _cols("cid INTEGER", "oid INTEGER"), ("cid", "oid")),
    Table("cluster_network_relation", _cols("cid INTEGER", "oid INTEGER"), ("cid", "oid")),
    Table("cluster_vnc_bitmap", _cols("id INTEGER", "map LONGTEXT"), ("id",)),
    Table(
        "document_pool",
        _cols(*_STD[:3], "type INTEGER", *_STD[3:]),
        ("oid",),
    ),
    Table("user_quotas", _cols("user_oid INTEGER", "body MEDIUMTEXT"), ("user_oid",)),
    Table("group_quotas", _cols("group_oid INTEGER", "body MEDIUMTEXT"), ("group_oid",)),
    _pool("secgroup_pool", unique=_NAME_UID_UNIQUE),
    _pool("vrouter_pool"),
    _pool("vmgroup_pool", unique=_NAME_UID_UNIQUE),
    _pool("vn_template_pool"),
    _pool("hook_pool", "type INTEGER"),
    Table(
        "hook_log",
        _cols(
            "hkid INTEGER", "exeid INTEGER", "timestamp INTEGER", "rc INTEGER", "body MEDIUMTEXT"
        ),
        ("hkid", "exeid"),
    ),
    # local system tables
    POOL_CONTROL,
    LOCAL_DB_VERSIONING,
    SYSTEM_ATTRIBUTES,
    # stage 2: shared pools
    _pool("group_pool", scope=SHARED, unique=_NAME_UNIQUE),
    _pool("user_pool", scope=SHARED, unique=_NAME_UNIQUE),
    ACL_5_12,
    _pool("zone_pool", scope=SHARED, unique=_NAME_UNIQUE),
    _pool("vdc_pool", scope=SHARED, unique=_NAME_UNIQUE),
    _pool("marketplace_pool", scope=SHARED),
    _pool("marketplaceapp_pool", scope=SHARED, unique=_NAME_UID_UNIQUE),
    DB_VERSIONING,
)

_INDEXES: tuple[Index, ...] = (
    Index("fed_index_idx", "logdb", ("fed_index",)),
    Index("applied_idx", "logdb", ("applied",)),
    Index("state_oid_idx", "vm_pool", ("state", "oid")),
)

SCHEMA_6_0 = Schema("6.0.0", _TABLES_6_0, _INDEXES)
SCHEMA_5_10 = SCHEMA_6_0.derive(
    "5.10.0",
    replace_tables={"acl": ACL_5_10, "host_pool": HOST_POOL_5_10, "vm_pool": VM_POOL_5_10},
)
# derive() inserts after tables of the source schema only, hence two calls.
SCHEMA_6_8 = SCHEMA_6_0.derive("6.8.0", add_after={"hook_log": BACKUPJOB_POOL}).derive(
    "6.8.0", add_after={"backupjob_pool": SCHEDACTION_POOL}
)
SCHEMA_6_10 = SCHEMA_6_8.derive("6.10.0", replace_tables={"vm_pool": VM_POOL_6_10})

SCHEMAS: dict[str, Schema] = {
    "5.10.0": SCHEMA_5_10,
    "5.12.0": SCHEMA_6_0.derive("5.12.0"),
    "6.0.0": SCHEMA_6_0,
    "6.2.0": SCHEMA_6_0.derive("6.2.0"),
    "6.4.0": SCHEMA_6_0.derive("6.4.0"),
    "6.6.0": SCHEMA_6_0.derive("6.6.0"),
    "6.8.0": SCHEMA_6_8,
    "6.10.0": SCHEMA_6_10,
}
