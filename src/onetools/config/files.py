"""The classification of managed configuration files (reference §2.1).

Each entry maps an absolute path or glob under ``/etc/one`` or ``/var/lib/one/remotes`` to a file
format class with the owner, group and mode a created file gets.  Entries without a class are
catch-alls: files they match but no classified entry does are "unclassified" (ignored by
validate/patch, an error where a strict scan is asked for).  Globs follow Ruby's ``Dir[]``:
``*`` stays within one directory, ``**/`` matches zero or more directories, hidden files never
match.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from onetools.errors import FatalError

MANAGED_ROOTS = ("/etc/one", "/var/lib/one/remotes")
# What a transaction copies back into production (the rest of remotes/ is code, not config).
UPDATE_ROOTS = ("/etc/one", "/var/lib/one/remotes/etc")


@dataclass(frozen=True)
class FileClass:
    """One entry of the classification table."""

    pattern: str
    format_name: str | None
    owner: str = "root"
    group: str = "oneadmin"
    mode: int = 0o640
    old: bool = False
    regex: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(glob_to_regex(self.pattern)))

    @property
    def catch_all(self) -> bool:
        return self.format_name is None


def glob_to_regex(pattern: str) -> str:
    """Translate a Ruby ``Dir[]`` glob into an anchored regular expression."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append(r"(?:[^/]+/)*")
            index += 3
        elif pattern.startswith("**", index):
            out.append(r"[^/]*")
            index += 2
        elif pattern[index] == "*":
            out.append(r"[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append(r"[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return "^" + "".join(out) + "$"


# The table of reference §2.1, in its order (first match wins); one entry per line.
# fmt: off
TABLE: tuple[FileClass, ...] = (
    FileClass("/etc/one/vcenter_driver.default", "Simple", "root", "oneadmin", 0o640),
    FileClass("/etc/one/ec2_driver.default", "Simple", "root", "oneadmin", 0o640),
    FileClass("/etc/one/az_driver.default", "Simple", "root", "oneadmin", 0o640),
    FileClass("/etc/one/packet_driver.default", "Simple", "root", "oneadmin", 0o640),
    FileClass("/etc/one/auth/ldap_auth.conf", "Yaml::Strict", "root", "oneadmin", 0o640),
    FileClass("/etc/one/auth/saml_auth.conf", "Yaml::Strict", "root", "oneadmin", 0o640),
    FileClass("/etc/one/auth/server_x509_auth.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/auth/x509_auth.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/az_driver.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/cli/*.yaml", "Yaml::Strict", "root", "root", 0o644),
    FileClass("/etc/one/defaultrc", "Augeas::Shell", "root", "oneadmin", 0o640),
    FileClass("/etc/one/ec2_driver.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/ec2query_templates/*.erb", "Simple", "root", "oneadmin", 0o640),
    FileClass("/etc/one/econe.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/fireedge-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/fireedge/provision/provision-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/fireedge/provision/providers.d/*.yaml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/fireedge/provision/providers.d-extra/*.yaml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/fireedge/sunstone/sunstone-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/fireedge/sunstone/profiles/base.template", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/fireedge/sunstone/*/*.yaml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/fireedge/sunstone/*/*/*.yaml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/fireedge/sunstone/*.yaml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/monitord.conf", "Augeas::ONE", "root", "oneadmin", 0o640),
    FileClass("/etc/one/hm/hmrc", "Augeas::Shell", "root", "oneadmin", 0o640),
    FileClass("/etc/one/oned.conf", "Augeas::ONE", "root", "oneadmin", 0o640),
    FileClass("/etc/one/oneflow-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/onegate-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/sched.conf", "Augeas::ONE", "root", "oneadmin", 0o640),
    FileClass("/etc/one/schedulers/rank.conf", "Augeas::ONE", "root", "oneadmin", 0o640),
    FileClass("/etc/one/schedulers/one_drs.conf", "Yaml::Strict", "root", "oneadmin", 0o640),
    FileClass("/etc/one/sunstone-logos.yaml", "Yaml::Strict", "root", "oneadmin", 0o640),
    FileClass("/etc/one/sunstone-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/onehem-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/sunstone-views/**/*.yaml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/sunstone-views.yaml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/tmrc", "Augeas::Shell", "root", "oneadmin", 0o640),
    FileClass("/etc/one/guacd", "Augeas::Shell", "root", "oneadmin", 0o640),
    FileClass("/etc/one/vcenter_driver.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/vmm_exec/vmm_exec_kvm.conf", "Augeas::ONE", "root", "oneadmin", 0o640),
    FileClass("/etc/one/vmm_exec/vmm_execrc", "Augeas::Shell", "root", "oneadmin", 0o640),
    FileClass("/etc/one/vmm_exec/vmm_exec_vcenter.conf", "Augeas::ONE", "root", "oneadmin", 0o640),
    FileClass("/etc/one/alertmanager/alertmanager.yml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/prometheus/prometheus.yml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/prometheus/rules.yml", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/oneform-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/etc/one/oneks-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/datastore/datastore.conf", "Augeas::Shell", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/datastore/ceph/ceph.conf", "Augeas::Shell", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/datastore/fs/fs.conf", "Augeas::Shell", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/kvm-probes.d/pci.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/kvm-probes.d/probe_db.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/kvm-probes.d/guestagent.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/kvm-probes.d/forecast.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/qemu-probes.d/pci.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/qemu-probes.d/forecast.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/qemu-probes.d/probe_db.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/lxc-probes.d/probe_db.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/lxc-probes.d/forecast.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/lxc-probes.d/pci.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/lxd-probes.d/pci.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/lxd-probes.d/probe_db.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/im/firecracker-probes.d/probe_db.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/market/http/http.conf", "Augeas::Shell", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/onegate-proxy.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/tm/fs_lvm/fs_lvm.conf", "Augeas::Shell", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/tm/ssh/sshrc", "Augeas::Shell", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/vmm/kvm/kvmrc", "Augeas::Shell", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/vmm/lxc/lxcrc", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/vmm/lxc/profiles/*", "Simple", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/vmm/lxd/lxdrc", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/vmm/firecracker/firecrackerrc", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/vmm/vcenter/vcenterrc", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/vnm/OpenNebulaNetwork.conf", "Yaml", "oneadmin", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/etc/onebex/onebex-server.conf", "Yaml", "root", "oneadmin", 0o640),
    FileClass("/var/lib/one/remotes/datastore/ceph/ceph.conf", "Augeas::Shell", "oneadmin", "oneadmin", 0o640, old=True),
    FileClass("/var/lib/one/remotes/vmm/kvm/kvmrc", "Augeas::Shell", "oneadmin", "oneadmin", 0o640, old=True),
    FileClass("/var/lib/one/remotes/vnm/OpenNebulaNetwork.conf", "Yaml", "oneadmin", "oneadmin", 0o640, old=True),
    FileClass("/etc/one/**/**", None),
    FileClass("/var/lib/one/remotes/etc/**/**", None),
)
# fmt: on


@dataclass
class ScanResult:
    """Classified files found under a prefix, in table order, plus the unclassified ones."""

    classified: dict[str, FileClass]
    unclassified: list[str]


class Classification:
    """Lookup and scanning over a classification table."""

    def __init__(self, table: tuple[FileClass, ...] = TABLE) -> None:
        self.table = table

    @cached_property
    def _classified(self) -> list[FileClass]:
        return [entry for entry in self.table if not entry.catch_all]

    def classify(self, path: str) -> FileClass | None:
        """The classified entry matching an unprefixed absolute path, if any."""
        if any(part.startswith(".") for part in path.split("/")):
            return None
        for entry in self._classified:
            if entry.regex.match(path):
                return entry
        return None

    def is_covered(self, path: str) -> bool:
        """Whether a catch-all entry (or a classified one) covers ``path``."""
        return any(entry.regex.match(path) for entry in self.table)

    def scan(self, prefix: str = "/", strict: bool = False) -> ScanResult:
        """Find every managed file under ``prefix``; ``strict`` rejects unclassified files."""
        found: dict[FileClass, list[str]] = {}
        unclassified: list[str] = []
        for path in _walk_files(prefix):
            matches = [e for e in self._classified if e.regex.match(path)]
            if len(matches) > 1:
                raise FatalError(
                    f"File '{path}' already scanned. Duplicate expressions matching same file."
                )
            if matches:
                found.setdefault(matches[0], []).append(path)
            elif self.is_covered(path):
                unclassified.append(path)
        if strict and unclassified:
            raise FatalError(f"File '{unclassified[0]}' doesn't have classification.")
        classified: dict[str, FileClass] = {}
        for entry in self._classified:
            for path in sorted(found.get(entry, [])):
                classified[path] = entry
        return ScanResult(classified, sorted(unclassified))


def prefixed(prefix: str, path: str) -> str:
    """``path`` (absolute, unprefixed) inside the tree rooted at ``prefix``."""
    if not prefix or prefix == "/":
        return path
    return os.path.join(prefix, path.lstrip("/"))


def _walk_files(prefix: str) -> Iterator[str]:
    """Unprefixed paths of the regular files below the managed roots (hidden entries skipped)."""
    for root in MANAGED_ROOTS:
        top = prefixed(prefix, root)
        if not os.path.isdir(top):
            continue
        for directory, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = root + directory[len(top) :]
            for filename in filenames:
                if filename.startswith(".") or not os.path.isfile(
                    os.path.join(directory, filename)
                ):
                    continue
                yield f"{rel_dir}/{filename}"


CLASSIFICATION = Classification()
