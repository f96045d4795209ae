"""Edge-cluster provisioning: providers (``provider``), and later provisions.

Everything here talks to OpenNebula only through ``onetools.one.api.OneApi``, so it works the
same on the embedded store and on a real front-end.
"""

from __future__ import annotations
