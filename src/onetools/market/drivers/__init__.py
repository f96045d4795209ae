"""One module per ``MARKET_MAD``; registered by dotted name so that naming a driver costs
nothing until it is used (``REGISTRY``).

Each catalog module has ``monitor(market_template) -> MonitorResult`` (``_catalog``): the
apps its catalog lists, checked, and one warning per entry refused.  ``http`` and ``s3`` are
private markets: they list no apps (their monitor is capacity only).
"""

from __future__ import annotations

REGISTRY: dict[str, str] = {
    "one": "onetools.market.drivers.one",
    "linuxcontainers": "onetools.market.drivers.linuxcontainers",
    "turnkeylinux": "onetools.market.drivers.turnkeylinux",
    "dockerhub": "onetools.market.drivers.dockerhub",
    "docker_registry": "onetools.market.drivers.docker_registry",
}
#: Markets whose apps come from a catalog (oned's PUBLIC=yes).
CATALOG_MADS = frozenset(REGISTRY)
#: Private markets: apps are created by users and stored by the driver.
PRIVATE_MADS = frozenset({"http", "s3"})
