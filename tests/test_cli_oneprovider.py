"""``oneprovider`` through the real command line: output, exit codes, masking, the editor, fast
start; on the embedded store (a temporary ``ONETOOLS_HOME``) and over XML-RPC."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import SHARED_DATA
from helpers import Result, run_tool

SECRET = "tok-7Hq2-NEVER-PRINTED"
PROVISION_DATA = SHARED_DATA / "opennebula-provision"
AWS_FILE = PROVISION_DATA / "6.10.0/edge-clusters/metal/providers/aws/aws-eu-central-1.yml"
ONPREM_FILE = PROVISION_DATA / "6.10.0/edge-clusters/metal/providers/onprem/onprem.yml"


class Tool:
    """Runs ``oneprovider`` against one store: ``env`` selects it, ``extra`` adds options."""

    def __init__(self, env: dict[str, str], extra: tuple[str, ...] = ()) -> None:
        self.env = env
        self.extra = extra
        self.outputs: list[str] = []

    def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ONE_", "ONETOOLS_"))}
        full_env.update(self.env)
        full_env.update(env or {})
        result = run_tool("oneprovider", *args, *self.extra, env=full_env, stdin=stdin)
        if "--decrypt" not in args:
            self.outputs.append(result.out + result.err)
        return result


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


def provider_file(tmp_path: Path, name: str, driver: str = "digitalocean", **extra: object) -> Path:
    connection = {"token": SECRET, "region": "ams3"} if driver == "digitalocean" else {}
    data = {"name": name, "provider": driver, "connection": connection, **extra}
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def created_id(result: Result) -> int:
    assert result.code == 0, result.err
    assert result.out.startswith("ID: ")
    return int(result.out.split()[1])


def test_help_and_version(tool: Tool) -> None:
    result = tool("--help")
    assert result.code == 0
    for command in ("create", "delete", "list", "show", "update", "chgrp", "chown", "chmod"):
        assert command in result.out
    assert tool("-V").out.startswith("oneprovider ")
    bad = tool("frobnicate")
    assert bad.code == 255 and "ERROR : " in bad.err


SHIPPED = sorted(PROVISION_DATA.glob("*/*/*/providers/*/*.yml"))


def test_every_shipped_file_through_the_command(tmp_path: Path, base_env: dict[str, str]) -> None:
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "private_key": "k"}))
    assert len(SHIPPED) == 42
    stores: list[list[str]] = []  # names repeat between versions and metal/virtual
    for index, path in enumerate(SHIPPED):
        text = path.read_text().replace("'JSON credentials file'", f"'{key}'")
        copy = tmp_path / f"{index}-{path.name}"
        copy.write_text(text)
        name = yaml.safe_load(text)["name"]
        store = next((i for i, names in enumerate(stores) if name not in names), len(stores))
        if store == len(stores):
            stores.append([])
        tool = Tool({**base_env, "ONETOOLS_HOME": str(tmp_path / f"store-{store}")})
        assert created_id(tool("create", str(copy))) == len(stores[store]), path
        stores[store].append(name)
    for store, names in enumerate(stores):
        tool = Tool({**base_env, "ONETOOLS_HOME": str(tmp_path / f"store-{store}")})
        assert tool("list", "--csv", "--no-header", "-l", "NAME").out.split() == names


def test_create_list_show(tool: Tool) -> None:
    aws = created_id(tool("create", str(AWS_FILE)))
    onprem = created_id(tool("create", str(ONPREM_FILE)))
    assert (aws, onprem) == (0, 1)

    listing = tool("list")
    assert listing.code == 0, listing.err
    lines = listing.out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "REGTIME"]
    assert lines[1].split()[:2] == ["0", "aws-frankfurt"]
    assert lines[2].split()[:2] == ["1", "onprem"]
    assert len(lines[1].split()) == 4  # REGTIME "%m/%d %H:%M:%S"

    show = tool("show", "aws-frankfurt")
    assert show.code == 0, show.err
    assert show.out == (
        "PROVIDER 0 INFORMATION\n"
        "ID   : 0\n"
        "NAME : aws-frankfurt\n"
        "\n"
        "CONNECTION INFORMATION\n"
        "access_key : ********\n"
        "secret_key : ********\n"
        "region     : eu-central-1\n"
    )
    clear = tool("show", "0", "--decrypt")
    assert "access_key : AWS access key" in clear.out
    assert tool("show", "1").out == "PROVIDER 1 INFORMATION\nID   : 1\nNAME : onprem\n"


def test_output_formats(tool: Tool, tmp_path: Path) -> None:
    empty = tool("list", "-j")
    assert empty.code == 0 and json.loads(empty.out) == {"DOCUMENT_POOL": {}}
    assert yaml.safe_load(tool("list", "-y").out) == {"DOCUMENT_POOL": {}}
    assert tool("list", "-x").out.strip() == "<DOCUMENT_POOL></DOCUMENT_POOL>"

    created_id(tool("create", str(provider_file(tmp_path, "do"))))
    for flag, load in (("-j", json.loads), ("-y", yaml.safe_load)):
        pool = load(tool("list", flag).out)
        (document,) = pool["DOCUMENT_POOL"]["DOCUMENT"]
        body = document["TEMPLATE"]["PROVISION_BODY"]
        assert body["connection"] == {"token": "********", "region": "ams3"}
        shown = load(tool("show", "do", flag).out)
        assert shown["DOCUMENT"]["TEMPLATE"]["PROVISION_BODY"] == body
        assert shown["DOCUMENT"]["ID"] == "0" and shown["DOCUMENT"]["TYPE"] == "102"
        clear = load(tool("show", "do", flag, "--decrypt").out)
        assert clear["DOCUMENT"]["TEMPLATE"]["PROVISION_BODY"]["connection"]["token"] == SECRET
    import xml.etree.ElementTree as ET

    pool_xml = ET.fromstring(tool("list", "-x").out)
    assert pool_xml.tag == "DOCUMENT_POOL" and pool_xml.findtext("DOCUMENT/NAME") == "do"
    one_xml = ET.fromstring(tool("show", "0", "--xml").out)
    body = json.loads(one_xml.findtext("TEMPLATE/PROVISION_BODY") or "")
    assert body["connection"]["token"] == "********"
    listed_clear = tool("list", "-x", "--decrypt").out
    assert SECRET in listed_clear


def test_table_options(tool: Tool, tmp_path: Path) -> None:
    for name in ("alpha", "beta-long-name-for-the-table-column", "gamma"):
        created_id(tool("create", str(provider_file(tmp_path, name))))
    csv = tool("list", "--csv", "-l", "ID,NAME")
    assert csv.out == "ID,NAME\n0,alpha\n1,beta-long-name-for-the-table-column\n2,gamma\n"
    filtered = tool("list", "--filter", "NAME~a$,ID>0", "--no-header", "-l", "ID")
    assert filtered.out.split() == ["2"]
    either = tool("list", "--filter", "ID=0,ID=2", "--operator", "OR", "--csv", "--no-header")
    assert [line.split(",")[0] for line in either.out.splitlines()] == ["0", "2"]
    narrow = tool("list", "-l", "ID,NAME", env={"COLUMNS": "30"})
    assert narrow.out.splitlines()[2] == "   1 beta-long-name-for-the-ta"
    adjusted = tool("list", "-l", "ID,NAME", "--adjust", "NAME", env={"COLUMNS": "30"})
    assert adjusted.out.splitlines()[2] == "   1 beta-long-name-for-the-table-column"
    bad = tool("list", "-l", "SIZE")
    assert bad.code == 255 and bad.err.startswith("ERROR : Unknown column 'SIZE'")


def test_errors_exit_255(tool: Tool, tmp_path: Path) -> None:
    cases = {
        "noname": ({"provider": "aws", "connection": {}}, "Name not found"),
        "noconn": ({"name": "a", "provider": "aws"}, "Connection info not found"),
        "bad": (
            {"name": "a", "provider": "azure", "connection": {}},
            "Invalid provider, available providers: aws, digitalocean, equinix, google, "
            "onprem, vultr_metal, vultr_virtual",
        ),
        "key": (
            {"name": "a", "provider": "vultr_metal", "connection": {"key": SECRET}},
            "Missing provider connection attribute: 'region'",
        ),
    }
    for stem, (data, message) in cases.items():
        path = tmp_path / f"{stem}.yml"
        path.write_text(yaml.safe_dump(data))
        result = tool("create", str(path))
        assert (result.code, result.err, result.out) == (255, f"ERROR : {message}\n", "")
    created_id(tool("create", str(provider_file(tmp_path, "dup"))))
    again = tool("create", str(provider_file(tmp_path, "dup")))
    assert (again.code, again.err) == (255, "ERROR : Provider dup already exists\n")
    missing = tool("create", str(tmp_path / "nope.yml"))
    assert missing.code == 255 and missing.err.startswith("ERROR : File ")
    broken = tmp_path / "broken.yml"
    broken.write_text(f"name: a\nconnection:\n  token: '{SECRET}\n  region: [\n")
    parse = tool("create", str(broken))
    assert parse.code == 255 and parse.err.startswith(f"ERROR : {broken}: Invalid YAML")
    unknown = tool("show", "nope")
    assert (unknown.code, unknown.err) == (255, "ERROR : Provider named 'nope' not found\n")
    gone = tool("show", "42")
    assert gone.code == 255 and gone.err.startswith("ERROR : ")
    assert tool("chmod", "0", "999").code == 255


def test_delete_ranges_and_names(tool: Tool, tmp_path: Path) -> None:
    for name in ("p0", "p1", "p2", "p3"):
        created_id(tool("create", str(provider_file(tmp_path, name))))
    assert tool("delete", "1..2").code == 0
    assert [line.split()[1] for line in tool("list", "--no-header").out.splitlines()] == [
        "p0",
        "p3",
    ]
    partial = tool("delete", "p3,7")
    assert partial.code == 255 and partial.err.startswith("ERROR : Provider 7: ")
    assert tool("list", "--no-header", "-l", "NAME").out.split() == ["p0"]
    from onetools.one.api import DOC_PROVISION, DOCUMENT
    from onetools.one.local import LocalOne

    body = json.dumps({"name": "edge", "provider": "p0", "state": 3})
    with LocalOne(Path(tool.env["ONETOOLS_HOME"])) as store:  # type: ignore[call-arg]
        provision = store.allocate_document(
            f"<TEMPLATE><NAME>edge</NAME><BODY><![CDATA[{body}]]></BODY></TEMPLATE>",
            DOC_PROVISION,
        )
    used = tool("delete", "p0")
    assert (used.code, used.err) == (
        255,
        f"ERROR : Provider can not be deleted, it is used by provision with ID: {provision}\n",
    )
    with LocalOne(Path(tool.env["ONETOOLS_HOME"])) as store:  # type: ignore[call-arg]
        store.delete(DOCUMENT, provision)
    assert tool("delete", "p0").code == 0
    assert json.loads(tool("list", "-j").out) == {"DOCUMENT_POOL": {}}


EDITOR = """\
import json, os, stat, sys
path = sys.argv[1]
with open(os.environ["EDITOR_LOG"], "a") as log:
    log.write(oct(stat.S_IMODE(os.stat(path).st_mode)) + "\\n")
mode = os.environ["EDITOR_MODE"]
if mode == "same":
    sys.exit(0)
if mode == "fail":
    sys.exit(3)
data = json.load(open(path))
data[os.environ["EDITOR_KEY"]] = os.environ["EDITOR_VALUE"]
json.dump(data, open(path, "w"))
"""


def test_update_with_a_file_and_the_editor(tool: Tool, tmp_path: Path) -> None:
    oid = created_id(tool("create", str(provider_file(tmp_path, "do", description="old"))))
    body = json.loads(tool("show", str(oid), "-j", "--decrypt").out)["DOCUMENT"]["TEMPLATE"][
        "PROVISION_BODY"
    ]
    changed = tmp_path / "body.json"
    changed.write_text(json.dumps({**body, "description": "from a file"}))
    assert tool("update", "do", str(changed)).code == 0
    shown = json.loads(tool("show", "do", "-j").out)["DOCUMENT"]["TEMPLATE"]
    assert shown["PROVISION_BODY"]["description"] == "from a file"

    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps({**body, "name": "other"}))
    refused = tool("update", "0", str(renamed))
    assert (refused.code, refused.err) == (255, "ERROR : `name` can not be changed\n")
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"name": "do"}))
    assert tool("update", "0", str(keys)).err == "ERROR : Keys can not be changed\n"

    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    log = tmp_path / "editor.log"
    editor = {"EDITOR": f"{sys.executable} {script}", "EDITOR_LOG": str(log)}
    edit = {**editor, "EDITOR_MODE": "edit", "EDITOR_KEY": "description", "EDITOR_VALUE": "ed"}
    assert tool("update", "0", env=edit).code == 0
    shown = json.loads(tool("show", "0", "-j").out)["DOCUMENT"]["TEMPLATE"]
    assert shown["PROVISION_BODY"]["description"] == "ed"
    plain = {**edit, "EDITOR_KEY": "provision_type", "EDITOR_VALUE": "virtual"}
    assert tool("update", "0", "--plain", env=plain).code == 0
    shown = json.loads(tool("show", "0", "-j").out)["DOCUMENT"]["TEMPLATE"]
    assert json.loads(shown["PLAIN"]) == {"provider": "digitalocean", "provision_type": "virtual"}
    same = tool("update", "0", "-v", env={**editor, "EDITOR_MODE": "same"})
    assert same.code == 0 and "No changes" in same.err
    failed = tool("update", "0", env={**editor, "EDITOR_MODE": "fail"})
    assert failed.code == 255 and "status 3" in failed.err
    assert log.read_text().split() == ["0o600"] * 4  # every temp file private
    leftovers = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("oneprovider-*.json")]
    assert leftovers == []


def test_ownership_commands(tool: Tool, tmp_path: Path, base_env: dict[str, str]) -> None:
    from onetools.one.local import LocalOne

    created_id(tool("create", str(provider_file(tmp_path, "do"))))
    created_id(tool("create", str(provider_file(tmp_path, "do2"))))
    with LocalOne(Path(base_env["ONETOOLS_HOME"])) as store:  # type: ignore[call-arg]
        uid = store.allocate_user("alice", "pw")
        gid = store.allocate_group("edge")
    assert tool("chown", "0,1", "alice", "edge").code == 0
    document = json.loads(tool("show", "1", "-j").out)["DOCUMENT"]
    assert (document["UID"], document["GID"]) == (str(uid), str(gid))
    assert tool("chgrp", "do", "0").code == 0
    assert json.loads(tool("show", "0", "-j").out)["DOCUMENT"]["GID"] == "0"
    assert tool("chmod", "0..1", "640").code == 0
    permissions = json.loads(tool("show", "do2", "-j").out)["DOCUMENT"]["PERMISSIONS"]
    assert [permissions[k] for k in ("OWNER_U", "OWNER_M", "GROUP_U", "OTHER_U")] == [
        "1",
        "1",
        "1",
        "0",
    ]
    nobody = tool("chown", "0", "bob")
    assert (nobody.code, nobody.err) == (255, "ERROR : User named 'bob' not found\n")


def test_no_secret_in_any_output(tool: Tool, tmp_path: Path) -> None:
    """Every command, with -D, successful or failing: the secret appears only with --decrypt."""
    path = provider_file(tmp_path, "do")
    created_id(tool("create", str(path), "-D"))
    tool("create", str(path), "-D")  # already exists
    tool("list", "-D")
    for flag in ("-x", "-j", "-y"):
        tool("list", flag, "-D")
        tool("show", "0", flag, "-D")
    tool("show", "do", "-D", "-v")
    broken = tmp_path / "broken.yml"
    broken.write_text(f"name: x\nprovider: digitalocean\nconnection:\n  token: '{SECRET}\n  x: [\n")
    tool("create", str(broken), "-D")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"connection": {"token": "' + SECRET + '"},')
    tool("update", "0", str(bad_json), "-D")
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"connection": {"token": SECRET}}))
    tool("update", "0", str(keys), "-D")
    tool("chmod", "0", "600", "-D")
    tool("delete", "0", "-D")
    assert len(tool.outputs) == 15
    for output in tool.outputs:
        assert SECRET not in output
    assert any("DEBUG" in output for output in tool.outputs)  # -D did log


def test_fast_start_imports_nothing_heavy(
    tool: Tool, tmp_path: Path, base_env: dict[str, str]
) -> None:
    created_id(tool("create", str(provider_file(tmp_path, "do"))))
    probe = (
        "import sys\n"
        "from onetools.cli.oneprovider import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('pyone', 'lxml', 'cryptography', 'yaml', 'jinja2')\n"
        "               if m in sys.modules)\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
    )
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONE_", "ONETOOLS_"))}
    env.update(base_env)
    for argv in (["--help"], ["list"], ["list", "--help"], ["show", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env
        )
        assert "HEAVY=\n" in proc.stderr, (argv, proc.stderr)
    listing = subprocess.run(
        [sys.executable, "-c", probe, "list"], capture_output=True, text=True, env=env
    )
    assert "do" in listing.stdout


def test_verbose_names_the_backend(tool: Tool) -> None:
    result = tool("list", "-v")
    assert result.code == 0 and result.err.startswith("INFO  : Using ")


def test_options_before_the_command(tmp_path: Path, base_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONE_", "ONETOOLS_"))}
    env.update(base_env)
    path = str(provider_file(tmp_path, "do"))
    # "--home list": an option's value that is also a command name, relative to the cwd
    created = run_tool("oneprovider", "--home", "list", "-v", "create", path, env=env, cwd=tmp_path)
    assert created_id(created) == 0 and created.err.startswith("INFO  : Using ")
    assert (tmp_path / "list").is_dir()
    show = run_tool("oneprovider", "--home", "list", "show", "do", env=env, cwd=tmp_path)
    assert show.code == 0 and "NAME : do" in show.out


def test_over_xmlrpc(remote_tool: Tool, tmp_path: Path) -> None:
    oid = created_id(remote_tool("create", str(provider_file(tmp_path, "do")), "-D"))
    assert created_id(remote_tool("create", str(ONPREM_FILE))) == oid + 1
    listing = remote_tool("list", "--no-header", "-l", "NAME")
    assert listing.out.split() == ["do", "onprem"]
    show = remote_tool("show", "do", "-D")
    assert "token  : ********" in show.out and "region : ams3" in show.out
    assert SECRET in remote_tool("show", "do", "--decrypt").out
    pool = json.loads(remote_tool("list", "-j", "-D").out)
    bodies = [d["TEMPLATE"]["PROVISION_BODY"] for d in pool["DOCUMENT_POOL"]["DOCUMENT"]]
    assert bodies[0]["connection"] == {"token": "********", "region": "ams3"}
    body = json.loads(remote_tool("show", "do", "-j", "--decrypt").out)["DOCUMENT"]["TEMPLATE"][
        "PROVISION_BODY"
    ]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({**body, "connection": {**body["connection"], "region": "fra1"}}))
    assert remote_tool("update", "do", str(edited), "-D").code == 0
    assert "region : fra1" in remote_tool("show", "do").out
    assert SECRET in remote_tool("show", "do", "--decrypt").out
    dup = remote_tool("create", str(provider_file(tmp_path, "do")))
    assert (dup.code, dup.err) == (255, "ERROR : Provider do already exists\n")
    assert remote_tool("chmod", "do", "600").code == 0
    assert remote_tool("delete", "0..1", "-D").code == 0
    assert json.loads(remote_tool("list", "-j").out) == {"DOCUMENT_POOL": {}}
    for output in remote_tool.outputs:
        assert SECRET not in output
    wrong = Tool(remote_tool.env, (*remote_tool.extra[:-1], "wrong-password"))
    denied = wrong("list")
    assert denied.code == 255 and denied.err.startswith("ERROR : ")
