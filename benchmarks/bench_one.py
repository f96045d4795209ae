"""Speed of the object layer and of oneprovider's start-up; prints figures, asserts nothing.

Usage: python benchmarks/bench_one.py [--objects N] [--runs N] [--skip-xmlrpc]
                                      [--server-process] [--profile]

* Start-up: ``oneprovider --help``, ``oneprovider list`` and ``oneprovider list --json`` (on an
  embedded store holding three providers) beside ``python -c pass`` of the same interpreter,
  as medians of fresh processes of the installed entry point and as ratios; and which of
  pyone, lxml and cryptography each run imported (``PYTHONPROFILEIMPORTTIME`` on the real
  command line, so what is measured is what a user runs).
* The embedded store with N hosts and N provider documents (default 10,000 each): allocate
  rate (overall, and over the first and the last tenth, because the rate may fall as pools
  grow), ``info`` by id, and a full pool listing; then ``oneprovider list`` as a fresh process
  over those N providers.  Then all of it again through the test XML-RPC server
  (``tests/one_xmlrpc_server.py``, imported by path) with the real pyone client
  (``onetools.one.xmlrpc.XmlRpcOne``), and ``oneprovider list`` once more through a server
  whose document pools hold ciphertext bodies, as a real oned answers (that server needs a
  store of our own, so it runs in this process only).
* ``--profile`` runs each store phase under cProfile and prints where its time goes.

The test server runs in this process (threads) unless ``--server-process``, which starts it as
its own process, as a real oned would be; calls are sequential, so both give similar figures.
Inputs are generated on the fly in a temporary directory.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from onetools.one.api import OneApi
    from onetools.one.xml import OneObject

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pyone", "lxml", "cryptography")
INFO_SAMPLE = 1000
CLI_LIST_RUNS = 3

#: The start-up store's providers, as a user writes them for ``oneprovider create``.
STARTUP_PROVIDERS = {
    "aws": "connection: {access_key: AK, secret_key: SK, region: eu-central-1}",
    "onprem": "connection: {}",
    "digitalocean": "connection: {token: T, region: nyc3}",
}

PROFILE = False


def entry_point(name: str) -> list[str]:
    """The installed console script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", f"onetools.cli.{name}"]


def run_checked(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``command``; a failure ends the benchmark (a fast failing command is no figure)."""
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.exit(
            f"bench_one: {' '.join(command)} exited {completed.returncode}:\n"
            f"{completed.stderr.strip()[-2000:]}"
        )
    return completed


def median_wall(command: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall seconds of ``runs`` fresh processes, after one unmeasured warm-up run."""
    run_checked(command, env)
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        run_checked(command, env)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def imported_modules(command: list[str], env: dict[str, str]) -> list[str]:
    """Every module a run of ``command`` imports, from ``-X importtime``'s report on stderr
    (``import time: self [us] | cumulative | imported package``)."""
    completed = run_checked(command, dict(env, PYTHONPROFILEIMPORTTIME="1"))
    modules = []
    for line in completed.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.append(name)
    return modules


def heavy_of(modules: list[str]) -> list[str]:
    return sorted({name.split(".")[0] for name in modules} & set(HEAVY))


def bench_startup(runs: int, home: Path) -> None:
    env = dict(os.environ, ONETOOLS_HOME=str(home), COLUMNS="100")
    for variable in ("ONE_XMLRPC", "ONE_AUTH"):
        env.pop(variable, None)
    oneprovider = entry_point("oneprovider")
    for index, (driver, connection) in enumerate(STARTUP_PROVIDERS.items()):
        spec = home.parent / f"provider-{index}.yml"
        spec.write_text(f"name: {driver}-{index}\nprovider: {driver}\n{connection}\n")
        run_checked([*oneprovider, "create", str(spec)], env)
    listed = run_checked([*oneprovider, "list"], env).stdout
    if any(f"{driver}-{index}" not in listed for index, driver in enumerate(STARTUP_PROVIDERS)):
        sys.exit(f"bench_one: 'oneprovider list' does not list the providers:\n{listed}")

    base = median_wall([sys.executable, "-c", "pass"], runs, env)
    print(f"  {'python -c pass':<28} {base * 1000:7.1f} ms")
    for args in (["--help"], ["list"], ["list", "--json"]):
        command = [*oneprovider, *args]
        wall = median_wall(command, runs, env)
        modules = imported_modules(command, env)
        heavy = heavy_of(modules)
        print(
            f"  {'oneprovider ' + ' '.join(args):<28} {wall * 1000:7.1f} ms  "
            f"{wall / base:4.1f}x python  {len(modules):4d} modules, "
            f"of {'/'.join(HEAVY)}: {', '.join(heavy) or 'none'}"
        )


# -- the object layer ----------------------------------------------------------------------------
@contextmanager
def profiled(label: str) -> Iterator[None]:
    """With ``--profile``: the block under cProfile, then its top functions by own time."""
    if not PROFILE:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        report = io.StringIO()
        stats = pstats.Stats(profile, stream=report)
        stats.sort_stats("tottime").print_stats(8)
        lines = [line for line in report.getvalue().splitlines() if line.strip()]
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        print(f"    profile of '{label}' (top functions by own time):")
        for line in lines[start:]:
            print("      " + line.replace(str(REPO) + "/", ""))


def allocate_all(label: str, count: int, allocate: Callable[[int], int]) -> list[int]:
    """Allocate ``count`` objects; print the overall rate and that of the first and last tenth."""
    tenth = max(count // 10, 1)
    ids: list[int] = []
    marks: list[float] = []
    with profiled(label):
        start = time.perf_counter()
        for index in range(count):
            ids.append(allocate(index))
            if (index + 1) % tenth == 0:
                marks.append(time.perf_counter())
        wall = time.perf_counter() - start
    first = tenth / (marks[0] - start) if marks else 0.0
    last = tenth / (marks[-1] - marks[-2]) if len(marks) >= 2 else first
    print(
        f"  {label:<42} {wall:8.2f} s  {count / wall:7.0f} /s  "
        f"(first tenth {first:.0f} /s, last tenth {last:.0f} /s)"
    )
    return ids


def per_call(label: str, count: int, action: Callable[[], object]) -> None:
    with profiled(label):
        start = time.perf_counter()
        action()
        wall = time.perf_counter() - start
    print(
        f"  {label:<42} {wall:8.2f} s  {count / wall:7.0f} /s  ({wall / count * 1e6:.0f} us each)"
    )


def listing(label: str, list_pool: Callable[[], list[OneObject]]) -> None:
    """One full pool listing: the ``pool`` call, then reading a field of every object (the
    embedded store parses each body on first access; the XML-RPC client parses the whole
    answer in ``pool``)."""
    with profiled(label):
        start = time.perf_counter()
        objects = list_pool()
        fetched = time.perf_counter()
        for obj in objects:
            _ = obj.name
        wall = time.perf_counter() - start
    print(
        f"  {label + f' ({len(objects)})':<42} {wall:8.2f} s  {len(objects) / wall:7.0f} /s  "
        f"(pool call {fetched - start:.2f} s, then NAME of each {wall - (fetched - start):.2f} s)"
    )


def bench_store(store: OneApi, objects: int) -> None:
    from onetools.one import api
    from onetools.provision.provider import document_template

    def allocate_provider(index: int) -> int:
        # What ``oneprovider create`` allocates (create_provider also lists the pool first to
        # refuse a duplicate name: left out, it would measure pool listings, not allocate).
        name = f"provider-{index}"
        body = {
            "provider": "aws",
            "connection": {"access_key": f"AK{index}", "secret_key": "SK", "region": "eu-west-1"},
            "registration_time": 1_700_000_000 + index,
            "name": name,
        }
        template = document_template(name, body, {"provider": "aws"})
        return store.allocate_document(template, api.DOC_PROVIDER)

    host_ids = allocate_all(
        f"allocate {objects} hosts",
        objects,
        lambda i: store.allocate_host(f"host-{i}", "kvm", "kvm"),
    )
    document_ids = allocate_all(f"allocate {objects} providers", objects, allocate_provider)
    sampler = random.Random(7)
    for kind, label, ids, decrypt in (
        (api.HOST, "hosts", host_ids, False),
        (api.DOCUMENT, "providers", document_ids, False),
        (api.DOCUMENT, "providers, decrypt", document_ids, True),
    ):
        sample = sampler.sample(ids, min(INFO_SAMPLE, len(ids)))
        per_call(
            f"info by id + NAME ({len(sample)} {label})",
            len(sample),
            lambda kind=kind, sample=sample, decrypt=decrypt: [
                store.info(kind, oid, decrypt=decrypt).name for oid in sample
            ],
        )
    listing("pool listing of hosts", lambda: store.pool(api.HOST))
    listing(
        "pool listing of providers", lambda: store.pool(api.DOCUMENT, doc_type=api.DOC_PROVIDER)
    )


def bench_cli_list(objects: int, runs: int, env: dict[str, str]) -> None:
    """``oneprovider list`` (table, median of ``runs``) and ``list --json`` (one run) over the
    store the environment names, as fresh processes."""
    oneprovider = entry_point("oneprovider")
    wall = median_wall([*oneprovider, "list"], runs, env)
    print(f"  {f'oneprovider list ({objects} providers)':<42} {wall:8.2f} s  (median of {runs})")
    start = time.perf_counter()
    run_checked([*oneprovider, "list", "--json"], env)
    wall = time.perf_counter() - start
    print(f"  {f'oneprovider list --json ({objects})':<42} {wall:8.2f} s  (one run)")


@contextmanager
def server_process(home: Path) -> Iterator[tuple[str, str]]:
    """``tests/one_xmlrpc_server.py HOME`` as its own process: (url, session)."""
    child = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "one_xmlrpc_server.py"), str(home)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip().removeprefix("ONE_XMLRPC=")
        session = child.stdout.readline().strip().removeprefix("ONE_AUTH line: ")
        if not url.startswith("http"):
            sys.exit("bench_one: the test XML-RPC server did not start")
        yield url, session
    finally:
        child.terminate()
        child.wait(timeout=30)


def ciphertext_pool_store(home: Path) -> OneApi:
    """The embedded store answering document pools as a real oned does.

    oned encrypts the whole ``PROVISION_BODY`` (``DOCUMENT_ENCRYPTED_ATTR``) and decrypts it
    only in ``one.document.info`` with decrypt; the embedded store seals only the
    ``connection`` member, so listings through the plain test server find readable bodies
    and never show what ``oneprovider list`` costs on a real front-end.  Here the pool's
    bodies are base64 (not JSON, as oned's ciphertext), ``info`` is left as it is."""
    import base64
    import xml.etree.ElementTree as ET

    from onetools.one import api
    from onetools.one.local import LocalOne
    from onetools.one.xml import OneObject

    class CiphertextPool(LocalOne):
        def pool(self, kind: str, *args: Any, **kwargs: Any) -> list[OneObject]:
            documents = super().pool(kind, *args, **kwargs)
            if kind != api.DOCUMENT:
                return documents
            hidden = []
            for document in documents:
                root = ET.fromstring(document.xml)
                body = root.find("TEMPLATE/PROVISION_BODY")
                if body is not None:
                    body.text = base64.b64encode((body.text or "").encode()).decode()
                hidden.append(OneObject(kind, ET.tostring(root, encoding="unicode")))
            return hidden

    return CiphertextPool(home)


@contextmanager
def server_in_process(
    home: Path, store_factory: Callable[[Path], OneApi] | None = None
) -> Iterator[tuple[str, str]]:
    """The test server imported by path and run on threads of this process: (url, session)."""
    sys.path.insert(0, str(REPO / "tests"))
    from one_xmlrpc_server import serve  # type: ignore[import-not-found]

    server = serve(home, store_factory=store_factory)
    try:
        yield server.url, f"oneadmin:{server.password}"
    finally:
        server.stop()


def main() -> int:
    global PROFILE
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000, help="hosts and providers (10000)")
    parser.add_argument("--runs", type=int, default=11, help="start-up runs per command (11)")
    parser.add_argument("--skip-xmlrpc", action="store_true", help="only the embedded store")
    parser.add_argument(
        "--server-process", action="store_true", help="run the test server as its own process"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile each store phase")
    options = parser.parse_args()
    PROFILE = options.profile
    from onetools.one.local import LocalOne

    print(f"python {sys.version.split()[0]} on {os.cpu_count()} CPUs, {time.strftime('%F %T %Z')}")
    with tempfile.TemporaryDirectory(prefix="bench-one-") as tmp:
        base = Path(tmp)
        env = dict(os.environ, COLUMNS="100")
        for variable in ("ONE_XMLRPC", "ONE_AUTH", "ONETOOLS_HOME"):
            env.pop(variable, None)

        print(f"start-up (median of {options.runs} fresh processes)")
        bench_startup(options.runs, base / "startup-home")

        print(f"embedded store, {options.objects} hosts + {options.objects} providers")
        with LocalOne(base / "embedded") as one:
            bench_store(one, options.objects)
        bench_cli_list(
            options.objects, CLI_LIST_RUNS, dict(env, ONETOOLS_HOME=str(base / "embedded"))
        )

        if not options.skip_xmlrpc:
            from onetools.one.xmlrpc import XmlRpcOne

            serving = server_process if options.server_process else server_in_process
            with serving(base / "remote") as (url, session):
                where = "its own process" if options.server_process else "this process"
                print(f"through the test XML-RPC server ({url}, in {where}), pyone client")
                with XmlRpcOne(url, session) as remote:
                    bench_store(remote, options.objects)
                bench_cli_list(options.objects, CLI_LIST_RUNS, remote_env(env, base, url, session))
            if not options.server_process:
                with server_in_process(base / "remote", ciphertext_pool_store) as (url, session):
                    print("the same server answering document pools as oned (ciphertext bodies)")
                    bench_cli_list(
                        options.objects, CLI_LIST_RUNS, remote_env(env, base, url, session)
                    )
    return 0


def remote_env(env: dict[str, str], base: Path, url: str, session: str) -> dict[str, str]:
    """``env`` pointing the tools at ``url`` as ``session`` (through a ``ONE_AUTH`` file)."""
    auth = base / "one_auth"
    auth.write_text(session + "\n")
    auth.chmod(0o600)
    return dict(env, ONE_XMLRPC=url, ONE_AUTH=str(auth))


if __name__ == "__main__":
    sys.exit(main())
