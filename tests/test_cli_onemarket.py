"""``onemarket`` through the real command line (``python -m onetools.cli.onemarket`` until the
console script exists): output, exit codes, refresh against a loopback catalog; on the
embedded store (a temporary ``ONETOOLS_HOME``) and over XML-RPC."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Result
from market_servers import CatalogServer
from test_market_monitor import appliance, serve_one

HTTP = 'NAME = "web"\nMARKET_MAD = "http"\nBASE_URL = "http://f/"\nPUBLIC_DIR = "/var/www"\n'


class Tool:
    def __init__(self, env: dict[str, str], extra: tuple[str, ...] = ()) -> None:
        self.env = env
        self.extra = extra

    def __call__(self, *args: str, stdin: str | None = None) -> Result:
        import subprocess

        env = {k: v for k, v in os.environ.items() if not k.startswith(("ONE_", "ONETOOLS_"))}
        env.update(self.env)
        proc = subprocess.run(
            [sys.executable, "-m", "onetools.cli.onemarket", *args, *self.extra],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "user"
    home.mkdir()
    return {"HOME": str(home), "ONETOOLS_HOME": str(tmp_path / "store"), "COLUMNS": "120"}


@pytest.fixture
def tool(base_env: dict[str, str]) -> Tool:
    return Tool(base_env)


@pytest.fixture
def remote_tool(tmp_path: Path, base_env: dict[str, str]) -> Iterator[Tool]:
    from one_xmlrpc_server import serve

    with serve(tmp_path / "remote") as server:
        yield Tool(
            base_env,
            ("--endpoint", server.url, "--user", "oneadmin", "--password", server.password),
        )


def test_create_list_show_delete(tool: Tool, tmp_path: Path) -> None:
    template = tmp_path / "web.tmpl"
    template.write_text(HTTP)
    created = tool("create", str(template))
    assert (created.code, created.out) == (0, "ID: 100\n")
    listing = tool("list")
    assert listing.code == 0
    lines = listing.out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "SIZE", "AVAIL", "APPS", "MAD", "ZONE", "STAT"]
    assert lines[3].split() == ["100", "web", "0M", "-", "0", "http", "0", "on"]
    show = tool("show", "web")
    assert show.out.startswith("MARKETPLACE 100 INFORMATION\nID             : 100\n")
    assert "MARKET_MAD     : http" in show.out and 'BASE_URL="http://f/"' in show.out
    assert "OWNER          : um-" in show.out
    pool = json.loads(tool("list", "-j").out)
    assert [m["NAME"] for m in pool["MARKETPLACE_POOL"]["MARKETPLACE"]][-1] == "web"
    assert tool("show", "100", "-x").out.startswith("<MARKETPLACE>")
    assert tool("rename", "web", "site").code == 0
    assert tool("chmod", "site", "640").code == 0
    assert tool("disable", "site").code == 0
    assert "STATE          : DISABLED" in tool("show", "site").out
    assert tool("enable", "100", "-v").out == "MARKETPLACE 100: Enabling\n"
    assert tool("delete", "site").code == 0
    assert tool("show", "100").code == 255


def test_errors_are_one_line_exit_255(tool: Tool, tmp_path: Path) -> None:
    template = tmp_path / "bad.tmpl"
    template.write_text('NAME = "x"\nMARKET_MAD = "s3"\n')
    bad = tool("create", str(template))
    assert bad.code == 255
    assert bad.err == (
        'ERROR : MarketPlace template is missing the "ACCESS_KEY_ID" attribute or it\'s empty.\n'
    )
    assert tool("create", str(tmp_path / "none")).err == (
        f"ERROR : File {tmp_path / 'none'} does not exist\n"
    )
    refresh = tool("refresh", "nope")
    assert refresh.code == 255 and "not found" in refresh.err


def test_refresh_and_listing(tool: Tool, catalog_server: CatalogServer, tmp_path: Path) -> None:
    endpoint = serve_one(catalog_server, [appliance("a", "Alpine"), appliance("b", "bad/name")])
    update = tmp_path / "endpoint.tmpl"
    update.write_text(f'ENDPOINT = "{endpoint}"\n')
    assert tool("update", "0", str(update), "-a").code == 0
    refreshed = tool("refresh", "OpenNebula Public", "-v")
    assert refreshed.code == 0, refreshed.err
    using, warning, summary = refreshed.err.splitlines()
    assert using.startswith("INFO  : Using ")
    assert warning.startswith("WARN  : Catalog entry 'b' skipped: name 'bad/name'")
    assert summary == "INFO  : Market 0 refreshed: 1 added, 0 updated, 0 removed, 0 unchanged"
    assert tool("list", "-l", "ID,APPS", "--no-header").out.split()[:2] == ["0", "1"]
    catalog_server.routes["/appliance"] = (503, {}, b"")
    failed = tool("refresh", "0")
    assert failed.code == 255
    assert failed.err.startswith("ERROR : Market 0 (OpenNebula Public) not refreshed, its apps")
    assert "HTTP 503" in failed.err
    assert "MARKETAPPS\n0\n" in tool("show", "0").out


def test_over_xmlrpc(remote_tool: Tool, tmp_path: Path) -> None:
    template = tmp_path / "web.tmpl"
    template.write_text(HTTP)
    assert remote_tool("create", str(template)).out == "ID: 100\n"
    assert remote_tool("list", "--no-header", "-l", "NAME").out.split()[-1] == "web"
    assert "MARKET_MAD     : http" in remote_tool("show", "web").out
    refused = remote_tool("refresh", "0")
    assert refused.code == 255 and "oned monitors its markets itself" in refused.err
    assert remote_tool("delete", "web").code == 0


def test_help_imports_no_driver() -> None:
    import subprocess

    code = (
        "import sys\n"
        "from onetools.cli import onemarket\n"
        "onemarket.build_parser()\n"
        "heavy = [m for m in sys.modules if m.startswith(('onetools.market', 'onetools.one.',"
        " 'pyone', 'lxml', 'yaml', 'requests', 'urllib.request'))]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
