"""Marketplaces and their apps (``onemarket``, ``onemarketapp``): catalogs monitored into apps,
image files imported into and removed from private markets, downloads with checksums, and
``docker://`` images built without a Docker daemon.  On a real front-end oned runs the market
drivers; on the embedded store the tools do the drivers' work themselves (``drivers/``)."""
