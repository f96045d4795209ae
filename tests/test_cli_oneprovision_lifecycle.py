"""``oneprovision create/list/show/delete`` and the object commands through the real command
line, on the embedded store and on the XML-RPC test server: exit codes, the CI recipe
(``create --batch`` / ``delete --batch``), fail modes ending in cleanup (255, nothing left),
the lock refusing a second process, and SIGKILL of a create at random moments followed by
``create --resume`` or ``delete`` (no leftover, no duplicate).  On-premise provisions: no
Terraform, ``--skip-config`` (no Ansible)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Result, run_tool, tool_command

SMALL = """\
name: 'ci-edge'
defaults:
  provision: {provider_name: 'onprem'}
cluster: {name: "${provision}", datastores: [1, 2]}
hosts:
  - {im_mad: kvm, vm_mad: kvm, provision: {hostname: 'node${index}', count: 2}}
datastores:
  - {name: "${provision}-images", ds_mad: fs, tm_mad: ssh}
networks:
  - name: "${provision}-net"
    vn_mad: bridge
    bridge: br0
    ar: [{type: IP4, ip: 10.7.0.1, size: 8}]
templates:
  - {name: "${provision}-vm", cpu: 1, memory: 64}
"""


def big_template(name: str = "big") -> str:
    """Many objects of every kind: a create long enough to be killed in every step."""
    lines = [
        f"name: {name}",
        "defaults: {provision: {provider_name: onprem}}",
        f"cluster: {{name: {name}, datastores: [1, 2]}}",
        "hosts:",
        "  - {im_mad: kvm, vm_mad: kvm, provision: {hostname: 'h${index}', count: 12}}",
        "datastores:",
        *[f"  - {{name: {name}-ds{i}, ds_mad: fs, tm_mad: ssh}}" for i in range(8)],
        "networks:",
        *[
            f"  - {{name: {name}-net{i}, vn_mad: bridge, bridge: br0, "
            f"ar: [{{type: IP4, ip: 10.0.{i}.1, size: 4}}]}}"
            for i in range(6)
        ],
        "images:",
        *[
            f"  - {{name: {name}-img{i}, ds_id: '${{datastore.0.id}}', type: datablock, size: 8}}"
            for i in range(6)
        ],
        "templates:",
        *[f"  - {{name: {name}-vm{i}, cpu: 1, memory: 64}}" for i in range(8)],
        "vntemplates:",
        *[f"  - {{name: {name}-vnt{i}, vn_mad: vxlan}}" for i in range(4)],
        "flowtemplates:",
        *[f"  - {{name: {name}-flow{i}, roles: []}}" for i in range(4)],
    ]
    return "\n".join(lines) + "\n"


#: Objects ``big_template`` makes, by ``oneprovision <group> list`` group.
BIG_COUNTS = {
    "cluster": 1,
    "host": 12,
    "datastore": 8,
    "network": 6,
    "image": 6,
    "template": 8,
    "vntemplate": 4,
}


@pytest.fixture(params=["embedded", "xmlrpc"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a command line on a fresh store, embedded or behind the server."""
    home = tmp_path / "user"
    home.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ONE_", "ONETOOLS_"))}
    clean.update({"HOME": str(home), "COLUMNS": "120", "TMPDIR": str(tmp_path)})
    if request.param == "embedded":
        clean["ONETOOLS_HOME"] = str(tmp_path / "store")
        yield clean
        return
    from one_xmlrpc_server import serve

    server = serve(tmp_path / "store")
    auth = tmp_path / "one_auth"
    auth.write_text(server.session + "\n")
    clean.update({"ONE_XMLRPC": server.url, "ONE_AUTH": str(auth)})
    try:
        yield clean
    finally:
        server.stop()


def oneprovision(env: dict[str, str], *args: str, cwd: Path | None = None) -> Result:
    return run_tool("oneprovision", *args, env=env, cwd=cwd)


def write(tmp_path: Path, text: str, name: str = "provision.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def listed(env: dict[str, str], group: str) -> list[dict[str, Any]]:
    """``oneprovision <group> list -j`` (``provision`` for the provisions) as objects."""
    args = ["list", "-j"] if group == "provision" else [group, "list", "-j"]
    result = oneprovision(env, *args)
    assert result.code == 0, result.err
    (pool,) = json.loads(result.out).values()
    if not pool:
        return []
    (objects,) = pool.values()
    return list(objects)


def leftovers(env: dict[str, str]) -> dict[str, int]:
    """How many provision objects of each group are left (empty: none)."""
    counts = {group: len(listed(env, group)) for group in [*BIG_COUNTS, "provision"]}
    return {group: count for group, count in counts.items() if count}


def test_ci_recipe_create_show_list_delete(env: dict[str, str], tmp_path: Path) -> None:
    created = oneprovision(env, "create", str(write(tmp_path, SMALL)), "--batch", "--skip-config")
    assert created.code == 0, created.err
    assert created.out == "ID: 0\n"
    assert "Provision 0 successfully created" in created.err

    table = oneprovision(env, "list")
    assert table.code == 0
    assert table.out.splitlines() == [
        "  ID NAME            CLUSTERS HOSTS NETWORKS DATASTORES STAT",
        "   0 ci-edge                1     2        1          1 RUNNING",
    ]
    shown = oneprovision(env, "show", "ci-edge")
    assert shown.code == 0
    assert shown.out.splitlines()[:5] == [
        "PROVISION 0 INFORMATION",
        "ID        : 0",
        "NAME      : ci-edge",
        "STATE     : RUNNING",
        "PROVIDER  : onprem",
    ]
    assert "HOSTS\n0: node0\n1: node1\n" in shown.out
    assert shown.out.index("Provision Infrastructure Resources") < shown.out.index(
        "Provision Resource Resources"
    )
    document = json.loads(oneprovision(env, "show", "0", "-j").out)["DOCUMENT"]
    body = document["TEMPLATE"]["BODY"]  # decoded from its JSON string (§1.2)
    assert body["state"] == 3 and body["provider"] == "onprem"
    assert document["TYPE"] == "103"
    assert oneprovision(env, "show", "0", "-x").out.startswith("<DOCUMENT>")
    hosts = oneprovision(env, "host", "list")
    assert [line.split()[1] for line in hosts.out.splitlines()[1:]] == ["node0", "node1"]
    assert {d["NAME"] for d in listed(env, "datastore")} == {"ci-edge-images"}

    deleted = oneprovision(env, "delete", "0", "--batch")
    assert (deleted.code, deleted.out) == (0, ""), deleted.err
    assert leftovers(env) == {}
    assert oneprovision(env, "show", "0").code == 255


def test_failure_retried_then_cleaned_up_exits_255_and_leaves_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    # the store refuses the image (a datablock needs a SIZE): a real failure after the hosts
    text = SMALL + "images:\n  - {name: bad, ds_id: 1, type: datablock}\n"
    result = oneprovision(
        env,
        "create",
        str(write(tmp_path, text)),
        "--batch",
        "--skip-config",
        "--fail-retry",
        "1",
        "--fail-cleanup",
    )
    assert result.code == 255
    assert result.out == "ID: 0\n"
    failures = [
        line for line in result.err.splitlines() if line == "ERROR : Failed to create image bad"
    ]
    assert len(failures) == 3  # 1 attempt + 1 counted retry + the popped retry (§1.4)
    assert "cleaned up" in result.err.splitlines()[-1]
    assert "successfully created" not in result.err
    assert leftovers(env) == {}


def test_default_quit_leaves_an_error_provision_that_delete_removes(
    env: dict[str, str], tmp_path: Path
) -> None:
    text = SMALL.replace("tm_mad: ssh", "tm_mad: nosuch")
    result = oneprovision(env, "create", str(write(tmp_path, text)), "--batch", "--skip-config")
    assert result.code == 255
    assert "Failed to create datastore ci-edge-images" in result.err
    assert result.err.count("Failed to create datastore") == 2  # the error, then the quit
    (provision,) = listed(env, "provision")
    assert provision["TEMPLATE"]["BODY"]["state"] == 4  # ERROR
    assert leftovers(env) == {"cluster": 1, "provision": 1}
    assert oneprovision(env, "delete", "0", "--batch").code == 0
    assert leftovers(env) == {}


def test_wrong_fail_mode_and_missing_file(env: dict[str, str], tmp_path: Path) -> None:
    path = str(write(tmp_path, SMALL))
    wrong = oneprovision(env, "create", path, "--batch", "--fail-modes", "retry,panic")
    assert (wrong.code, wrong.err) == (255, "ERROR : Wrong fail mode `panic'\n")
    assert oneprovision(env, "create", "--batch").code == 255
    both = oneprovision(env, "create", path, "--resume", "0")
    assert both.code == 255 and "takes no FILE" in both.err
    assert leftovers(env) == {}


def test_object_delete_and_refusals(env: dict[str, str], tmp_path: Path) -> None:
    assert oneprovision(env, "create", str(write(tmp_path, SMALL)), "-b", "--skip-config").code == 0
    removed = oneprovision(env, "host", "delete", "node0", "--batch")
    assert removed.code == 0, removed.err
    assert [h["NAME"] for h in listed(env, "host")] == ["node1"]
    shown = oneprovision(env, "show", "0").out
    assert "0: node0" not in shown and "1: node1" in shown
    missing = oneprovision(env, "template", "delete", "77")
    assert missing.code == 255
    grown = oneprovision(env, "host", "add", "0", "--hostnames", "node9", "--batch")
    assert (grown.code, grown.out) == (0, "ID: 2\n"), grown.err
    assert [h["NAME"] for h in listed(env, "host")] == ["node1", "node9"]
    no_ips = oneprovision(env, "ip", "add", "0", "--batch")
    assert (no_ips.code, no_ips.err) == (
        255,
        "ERROR : Can't add IPs to network, wrong VN_MAD 'bridge'\n",
    )
    running = oneprovision(env, "configure", "0", "--batch")
    assert (running.code, running.err) == (255, "ERROR : Can't configure provision in RUNNING\n")
    assert oneprovision(env, "delete", "0", "-b").code == 0
    assert leftovers(env) == {}


def test_a_second_command_is_refused_while_the_lock_is_held(
    env: dict[str, str], tmp_path: Path
) -> None:
    # the first create sleeps between retries of a failing step, holding the lock
    text = SMALL + "images:\n  - {name: bad, ds_id: 1, type: datablock}\n"
    first = subprocess.Popen(
        [
            *tool_command("oneprovision"),
            "create",
            str(write(tmp_path, text)),
            "--batch",
            "--skip-config",
            "--fail-retry",
            "1",
            "--fail-sleep",
            "2",
            "--fail-cleanup",
        ],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdout.readline() == "ID: 0\n"
        deadline = time.monotonic() + 30
        refused = None
        while time.monotonic() < deadline:
            second = oneprovision(env, "delete", "0", "--batch")
            if "being changed by another command" in second.err:
                refused = second
                break
            time.sleep(0.2)
        assert refused is not None, "the second command was never refused"
        assert refused.code == 255
        assert refused.err.startswith("ERROR : Provision 0 is being changed by another command")
        assert "Object is locked" in refused.err
    finally:
        _out, err = first.communicate(timeout=60)
    assert first.returncode == 255 and "cleaned up" in err
    assert leftovers(env) == {}


def _spawn_create(env: dict[str, str], path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*tool_command("oneprovision"), "create", str(path), "--batch", "--skip-config"],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_at_random_moments_then_resume_or_delete(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A create killed anywhere is finished by ``create --resume`` (every object exactly once)
    or removed by ``delete`` (nothing left), also when that delete is killed and run again."""
    rng = random.Random(20261203)
    timing = _spawn_create(env, write(tmp_path, big_template("timing"), "timing.yml"))
    assert timing.stdout is not None and timing.stdout.readline() == "ID: 0\n"
    started = time.monotonic()
    timing.communicate(timeout=120)
    duration = time.monotonic() - started  # from the document to RUNNING
    assert timing.returncode == 0
    started = time.monotonic()
    assert oneprovision(env, "delete", "timing", "--batch").code == 0
    delete_duration = time.monotonic() - started  # with the start-up of Python

    outcomes = []
    for attempt in range(7):
        path = write(tmp_path, big_template(f"k{attempt}"), f"k{attempt}.yml")
        worker = _spawn_create(env, path)
        if attempt == 6:  # anywhere, even before the document exists
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            assert worker.stdout is not None
            worker.stdout.readline()  # "ID: n": the document exists
            time.sleep(rng.uniform(0.0, duration * 0.9))
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=60)
        provisions = listed(env, "provision")
        if not provisions:  # killed before the document existed
            outcomes.append("none")
            assert leftovers(env) == {}
            continue
        (provision,) = provisions
        oid = provision["ID"]
        if attempt % 2 == 0:
            resumed = oneprovision(env, "create", "--resume", oid, "--batch")
            if resumed.code == 255 and "already RUNNING" in resumed.err:
                outcomes.append("finished")
            else:
                assert resumed.code == 0, resumed.err
                outcomes.append(
                    f"resumed from {provision['TEMPLATE']['BODY']['onetools']['steps']}"
                )
            counts = {group: len(listed(env, group)) for group in BIG_COUNTS}
            assert counts == BIG_COUNTS  # nothing twice, nothing missing
            names = [h["NAME"] for h in listed(env, "host")]
            assert names == [f"h{i}" for i in range(12)]
            assert len(listed(env, "provision")) == 1
        else:
            # the delete is killed too, then run again
            killer = subprocess.Popen(
                [*tool_command("oneprovision"), "delete", oid, "--batch"],
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.0, delete_duration))
            killer.send_signal(signal.SIGKILL)
            killer.wait(timeout=60)
            outcomes.append("deleted" if killer.returncode == 0 else "delete killed")
            if not listed(env, "provision"):  # it finished (the document goes last)
                assert leftovers(env) == {}
                continue
        deleted = oneprovision(env, "delete", oid, "--batch")
        assert deleted.code == 0, deleted.err
        assert leftovers(env) == {}, outcomes
    assert any(outcome.startswith("resumed") for outcome in outcomes), outcomes


def test_interactive_menu_on_a_terminal(tmp_path: Path) -> None:
    """Without --batch on a terminal the failure menu asks; answering "skip" goes on."""
    import pty
    import select

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ONE_", "ONETOOLS_"))},
        "ONETOOLS_HOME": str(tmp_path / "store"),
        "HOME": str(tmp_path),
    }
    text = SMALL + "images:\n  - {name: bad, ds_id: 1, type: datablock}\n"
    path = write(tmp_path, text)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*tool_command("oneprovision"), "create", str(path), "--skip-config"],
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    seen = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the terminal closed: the command ended
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"Choose: " in seen:
                os.write(controller, b"3\n")  # 3. skip
                answered = True
            if process.poll() is not None and not ready:
                break
    finally:
        os.close(controller)
        process.wait(timeout=30)
    output = seen.decode(errors="replace")
    assert answered, output
    assert "Failed to create image bad: what to do?" in output
    assert "4. cleanup" in output  # offered: the hosts exist
    assert process.returncode == 0, output
    assert "Provision 0 successfully created" in output


def test_json_output_gives_json_log_lines(env: dict[str, str], tmp_path: Path) -> None:
    """With -j the messages are the original's JSON log lines, the message base64 (§1.2)."""
    import base64

    text = SMALL.replace("tm_mad: ssh", "tm_mad: nosuch")
    result = oneprovision(env, "create", str(write(tmp_path, text)), "-b", "--skip-config", "-j")
    assert result.code == 255
    assert result.out == "ID: 0\n"
    *logged, last = result.err.splitlines()
    entries = [json.loads(line) for line in logged]
    assert {entry["severity"] for entry in entries} == {"ERROR"}
    assert all(len(entry["timestamp"]) == 19 for entry in entries)  # YYYY-mm-dd HH:MM:SS
    messages = [base64.b64decode(entry["message"]).decode() for entry in entries]
    assert messages[0] == "Failed to create datastore ci-edge-images"
    assert "nosuch" in messages[1]
    assert last.startswith("ERROR : ")  # the command's own failure line, as every command's
    assert oneprovision(env, "delete", "0", "-b").code == 0


CLOUD = """\
name: 'cloud-edge'
defaults:
  provision: {provider_name: 'do1'}
cluster: {name: "${provision}"}
hosts:
  - {im_mad: kvm, vm_mad: kvm, provision: {hostname: 'node${index}', count: 2, image: x, size: y}}
"""


def test_own_template_directory_without_the_provider_fails_the_step(
    env: dict[str, str], tmp_path: Path
) -> None:
    # --templates points at the user's own Terraform templates; one without the provider's
    # folder is a failed step: ERROR (resumable, deletable) or, with --fail-cleanup, nothing left
    provider = write(
        tmp_path,
        "name: do1\nprovider: digitalocean\nconnection: {token: T0KEN, region: nyc3}\n",
        "do.yml",
    )
    assert run_tool("oneprovider", "create", str(provider), env=env).code == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    template = str(write(tmp_path, CLOUD))
    args = ["create", template, "--batch", "--skip-config", "--templates", str(mine)]
    cleaned = oneprovision(env, *args, "--fail-cleanup")
    assert cleaned.code == 255
    assert f"no Terraform templates for provider 'digitalocean' in {mine}" in cleaned.err
    assert "was cleaned up: nothing was left" in cleaned.err
    assert leftovers(env) == {}

    failed = oneprovision(env, *args)
    assert failed.code == 255
    (provision,) = listed(env, "provision")
    assert provision["TEMPLATE"]["BODY"]["state"] == 4  # ERROR
    assert oneprovision(env, "delete", provision["ID"], "--batch").code == 0
    assert leftovers(env) == {}
