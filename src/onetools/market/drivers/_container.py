"""The image and VM template fragments the container catalogs (dockerhub, docker_registry)
attach to their apps: a raw disk built from the container image, booted with context."""

from __future__ import annotations

from onetools.market.drivers._catalog import b64, template_text

APPTEMPLATE64 = b64('DEV_PREFIX="vd"\nDRIVER="raw"\n')
VMTEMPLATE64 = b64(
    template_text(
        {
            "CPU": "1",
            "MEMORY": "768",
            "GRAPHICS": {"LISTEN": "0.0.0.0", "TYPE": "vnc"},
            "CONTEXT": {
                "NETWORK": "YES",
                "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]",
                "SET_HOSTNAME": "$NAME",
            },
        }
    )
)
