"""Speed of app downloads, catalog refreshes and exports; prints figures, asserts nothing.

Usage: python benchmarks/bench_onemarketapp.py [--size-mib N] [--apps N] [--disk-mib N]
                                               [--pace-mib N] [--runs N] [--skip-download]
                                               [--skip-refresh] [--skip-export]

Every input is generated in a temporary directory (removed afterwards) and served from
loopback by a small HTTP server of this script run as its own process (``--serve``): it
answers GET with ``os.sendfile`` from its directory, so it is not the bottleneck (stdlib
``SimpleHTTPRequestHandler`` copies through Python in 64 KiB pieces).

* Download: a ``--size-mib`` (default 1024) random file, an IMAGE app of a private market in
  a fresh embedded store (``$ONETOOLS_HOME``) whose SOURCE is its URL and MD5 its digest.
  Timed: ``onemarketapp download APP PATH`` as a fresh process of the installed entry point
  (so start-up, MD5 + SHA-256 while it streams, the fsync and the rename are in it),
  ``curl -s -o /dev/null URL`` and ``curl -s -o FILE URL`` on the same file from the same
  server.  Printed: seconds and MB/s (MiB/s) of each, the best of ``--runs`` (default 3), and
  the ratio ours / curl to /dev/null (target at least 0.9), and what one ``hashlib`` MD5 and
  SHA-256 manage on one core here (MD5 cannot be split over cores: its rate bounds ours).
* Refresh: a ``one``-format catalog (``GET <endpoint>/appliance``) of ``--apps`` (default
  2,000) appliances; the store's "OpenNebula Public" market points at it.  Timed:
  ``onemarket refresh 0`` as a fresh process, three times: all new; nothing changed; a tenth
  changed (new version) and a twentieth removed.  Printed: seconds and catalog apps/s.
* Export: a VMTEMPLATE app with four disks, each an IMAGE app of a ``--disk-mib`` (default 64)
  file, exported in this process by ``onetools.market.export.export`` with its default
  ``parallel`` and with ``parallel=1``, from the server at full loopback speed and from the
  server pacing each connection at ``--pace-mib`` (default 50) MiB/s, as a distant server
  does.  Printed: wall seconds of each (best of ``--runs``) and the speed-up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from onetools.one.local import LocalOne

MIB = 1024 * 1024
#: A market whose files are elsewhere: its apps are only allocated (their SOURCE is then set to
#: the benchmark server's URL), so no gigabyte is copied into a PUBLIC_DIR first.
PRIVATE_MARKET = 'NAME = "bench"\nMARKET_MAD = "http"\nBASE_URL = "http://m"\nPUBLIC_DIR = "/x"'


# -- the file server (run as ``--serve DIR``) -----------------------------------------------------
def serve(root: Path) -> None:
    """Serve the files of ``root`` on a free loopback port (printed on the first line)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            name, _, query = self.path.partition("?")
            name = name.lstrip("/")
            # ?rate=N: at most N MiB/s on this connection (a distant server's pace)
            rate = float(query[5:]) * MIB if query.startswith("rate=") else 0.0
            path = root / name
            if "/" in name or not path.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.flush()
                offset = 0
                start = time.perf_counter()
                while offset < size:
                    piece = min(size - offset, MIB) if rate else size - offset
                    sent = os.sendfile(self.connection.fileno(), handle.fileno(), offset, piece)
                    if sent == 0:
                        break
                    offset += sent
                    if rate:
                        time.sleep(max(0.0, start + offset / rate - time.perf_counter()))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


class Server:
    """``serve(root)`` in a child process; ``url(name)``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


# -- helpers ------------------------------------------------------------------------------------
def entry_point(name: str) -> list[str]:
    """The installed console script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", f"onetools.cli.{name}"]


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of ``command``; a failure ends the benchmark."""
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(
            f"bench_onemarketapp: {' '.join(command)} exited {completed.returncode}:\n"
            f"{completed.stderr.strip()[-2000:]}"
        )
    return wall


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; their MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    block = os.urandom(16 * MIB)
    with open(path, "wb") as out:
        left = size
        counter = 0
        while left > 0:
            # a different block each time (cheap: a counter in front), so nothing repeats
            piece = counter.to_bytes(8, "little") + block[8 : min(left, len(block))]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
            counter += 1
    return digest.hexdigest()


def publish(store: LocalOne, app_id: int, source: str, md5: str, size_mib: int) -> None:
    """What a market driver's IMPORT reply writes (SOURCE, MD5, SIZE, FORMAT): no API call
    sets them, so they go into the stored body (as the tests do)."""
    from onetools.one import bodies
    from onetools.one.api import MARKETAPP

    with store._write() as db:
        root = store._load(db, MARKETAPP, app_id, "bench")
        for key, value in (("SOURCE", source), ("MD5", md5), ("SIZE", size_mib)):
            bodies.set_text(root, key, value)
        bodies.set_text(root, "FORMAT", "raw")
        store._save(db, MARKETAPP, app_id, root)


def image_app(store: LocalOne, market: int, work: Path, name: str, source: str, md5: str) -> int:
    from onetools.market import apps

    seed = work / f"{name}.seed"
    seed.write_bytes(b"x" * 4096)
    image = store.allocate_image(f'NAME = "{name}-src"\nPATH = "{seed}"\nTYPE = "OS"', 1)
    app_id = apps.create(store, market, apps.image_app_template(store, image, name=name))
    publish(store, app_id, source, md5, 1)
    return app_id


def hash_rate(name: str) -> float:
    """MiB/s of one ``hashlib`` digest over 256 MiB in this process (best of 3)."""
    block = os.urandom(4 * MIB)
    best = float("inf")
    for _ in range(3):
        digest = hashlib.new(name)
        start = time.perf_counter()
        for _ in range(64):
            digest.update(block)
        best = min(best, time.perf_counter() - start)
    return 256 / best


def rate(size: int, seconds: float) -> str:
    return f"{seconds:6.2f} s  {size / MIB / seconds:7.0f} MiB/s"


# -- a. download --------------------------------------------------------------------------------
def bench_download(work: Path, server: Server, size_mib: int, runs: int) -> None:
    from onetools.one.local import LocalOne

    size = size_mib * MIB
    source = server.root / "app.raw"
    print(f"download of a {size_mib} MiB app (best of {runs})")
    md5 = random_file(source, size)
    home = work / "download-home"
    with LocalOne(home) as store:
        market = store.allocate_market(PRIVATE_MARKET)
        app_id = image_app(store, market, work, "big", server.url("app.raw"), md5)
    env = dict(os.environ, ONETOOLS_HOME=str(home))
    for variable in ("ONE_XMLRPC", "ONE_AUTH"):
        env.pop(variable, None)
    onemarketapp = entry_point("onemarketapp")
    target = work / "downloaded.raw"
    copy = work / "curl.raw"
    ours, curl_null, curl_file = [], [], []
    for _ in range(runs):
        curl_null.append(timed(["curl", "-sf", "-o", "/dev/null", server.url("app.raw")]))
        curl_file.append(timed(["curl", "-sf", "-o", str(copy), server.url("app.raw")]))
        copy.unlink()
        ours.append(timed([*onemarketapp, "download", str(app_id), str(target)], env))
        target.unlink()
    startup = min(timed([*onemarketapp, "--help"], env) for _ in range(runs))
    print(f"  {'curl -s -o /dev/null URL':<36} {rate(size, min(curl_null))}")
    print(f"  {'curl -s -o FILE URL':<36} {rate(size, min(curl_file))}")
    print(f"  {'onemarketapp download APP PATH':<36} {rate(size, min(ours))}")
    print(f"  ratio ours / curl to /dev/null: {min(curl_null) / min(ours):.2f} (target >= 0.90)")
    for name in ("md5", "sha256"):
        print(f"  (hashlib {name} alone, one core: {hash_rate(name):.0f} MiB/s)")
    print(f"  (onemarketapp --help alone: {startup:.2f} s of start-up)")
    source.unlink()


# -- b. refresh ---------------------------------------------------------------------------------
def appliances(count: int, version: str = "1.0") -> Iterator[dict[str, object]]:
    for index in range(count):
        yield {
            "_id": {"$oid": f"{index:024x}"},
            "name": f"App {index}",
            "version": version,
            "short_description": f"appliance number {index}",
            "publisher": "bench",
            "creation_time": 1700000000 + index,
            "os-arch": "amd64",
            "hypervisor": "KVM",
            "tags": ["bench", "linux"],
            "format": "qcow2",
            "files": [
                {"size": (index + 1) * MIB, "md5": f"{index:032x}", "type": "OS"},
            ],
            "opennebula_template": json.dumps({"CPU": 1, "MEMORY": 768, "CONTEXT": {"A": "B"}}),
        }


def write_catalog(path: Path, entries: list[dict[str, object]]) -> None:
    path.write_text(json.dumps({"sEcho": 1, "appliances": entries}))


def bench_refresh(work: Path, server: Server, count: int) -> None:
    from onetools.one.api import MARKET
    from onetools.one.local import LocalOne

    print(f"onemarket refresh of a {count}-app 'one' catalog (fresh process each)")
    entries = list(appliances(count))
    home = work / "refresh-home"
    with LocalOne(home) as store:
        # the driver asks for <ENDPOINT>/appliance: the file "appliance" of the server
        store.update(MARKET, 0, f'ENDPOINT = "{server.url("")}"', merge=True)
    env = dict(os.environ, ONETOOLS_HOME=str(home))
    for variable in ("ONE_XMLRPC", "ONE_AUTH"):
        env.pop(variable, None)
    onemarket = entry_point("onemarket")
    steps: list[tuple[str, list[dict[str, object]]]] = [("all new", entries)]
    steps.append(("nothing changed", entries))
    changed = max(1, count // 10)
    removed = max(1, count // 20)
    third = list(appliances(changed, version="2.0")) + entries[changed : count - removed]
    steps.append((f"{changed} changed, {removed} removed", third))
    for label, catalog in steps:
        write_catalog(server.root / "appliance", catalog)
        wall = timed([*onemarket, "refresh", "0"], env)
        print(f"  {label:<28} {wall:6.2f} s  {len(catalog) / wall:7.0f} apps/s")
    (server.root / "appliance").unlink()


# -- c. export ----------------------------------------------------------------------------------
def bench_export(work: Path, server: Server, disk_mib: int, runs: int, paces: list[float]) -> None:
    from onetools.market import apps
    from onetools.market.export import DEFAULT_PARALLEL, export
    from onetools.one.local import LocalOne

    print(f"export of a VMTEMPLATE app with 4 disks of {disk_mib} MiB (best of {runs})")
    home = work / "export-home"
    size = 4 * disk_mib * MIB
    md5s = [random_file(server.root / f"disk{i}.raw", disk_mib * MIB) for i in range(4)]
    with LocalOne(home) as store:
        market = store.allocate_market(PRIVATE_MARKET)
        for pace in paces:
            # one set of apps per server pace (0: as fast as loopback goes)
            query = f"?rate={pace:g}" if pace else ""
            disks = []
            for index, md5 in enumerate(md5s):
                name = f"disk{index}-{pace:g}"
                image_app(store, market, work, name, server.url(f"disk{index}.raw{query}"), md5)
                disks.append(f'DISK = [ NAME = "D{index}", APP = "{name}" ]')
            template = apps.encode64('CPU = "1"\nMEMORY = "512"')
            app_id = apps.create(
                store,
                market,
                f'NAME = "quad-{pace:g}"\nTYPE = "VMTEMPLATE"\nAPPTEMPLATE64 = "{template}"\n'
                + "\n".join(disks),
            )
            walls: dict[int, list[float]] = {DEFAULT_PARALLEL: [], 1: []}
            for run in range(runs):
                for parallel in walls:
                    start = time.perf_counter()
                    export(store, app_id, f"site-{pace:g}-{parallel}-{run}", 1, parallel=parallel)
                    walls[parallel].append(time.perf_counter() - start)
                shutil.rmtree(home / "datastores")
            where = f"server at {pace:g} MiB/s per connection" if pace else "loopback at full speed"
            for parallel, values in walls.items():
                label = f"{where}, parallel={parallel}"
                print(f"  {label:<50} {rate(size, min(values))}")
            speed_up = min(walls[1]) / min(walls[DEFAULT_PARALLEL])
            print(f"  {'':<50} speed-up {speed_up:.2f}x")


def main() -> int:
    from onetools.log import get_logger

    # the warning that such apps have no file yet is expected here, once per app
    get_logger("market").setLevel(40)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="download size (1024)")
    parser.add_argument("--apps", type=int, default=2000, help="catalog apps (2000)")
    parser.add_argument("--disk-mib", type=int, default=64, help="export: each disk (64)")
    parser.add_argument(
        "--pace-mib",
        type=float,
        default=50.0,
        help="export: also with the server sending at most this many MiB/s per connection, "
        "as a distant server would (50; 0: only full speed)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs, best kept (3)")
    parser.add_argument("--skip-download", action="store_true")
    parser.add_argument("--skip-refresh", action="store_true")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(Path(options.serve))
        return 0
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} CPUs, {time.strftime('%F %T %Z')}")
    with tempfile.TemporaryDirectory(prefix="bench-onemarketapp-") as tmp:
        work = Path(tmp)
        root = work / "served"
        root.mkdir()
        server = Server(root)
        try:
            if not options.skip_download:
                bench_download(work, server, options.size_mib, options.runs)
            if not options.skip_refresh:
                bench_refresh(work, server, options.apps)
            if not options.skip_export:
                paces = [0.0] + ([options.pace_mib] if options.pace_mib > 0 else [])
                bench_export(work, server, options.disk_mib, options.runs, paces)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
