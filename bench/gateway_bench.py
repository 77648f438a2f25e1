"""Gateway and inventory benchmark (run it with `bench/gateway`).

wrk against inventory directly, through the gateway, through nginx (a plain keep-alive reverse
proxy, bench/nginx/nginx.conf.template) and through a Python byte relay (bench/relay: the floor
of any asyncio proxy, not a gateway), and on request through HAProxy (the same plain proxy,
bench/haproxy/haproxy.cfg.template; `--targets ...,haproxy`) and through nginx in front of the
gateway (`--targets ...,nginx+gateway`: the same nginx configuration, its upstream the gateway;
what a route costs that nginx at the door does not serve itself), for four workloads:

  id      GET /api/movies/{id}, ids uniformly random over 1 000 movies
  list    GET /api/movies?limit=100 (1 000 movies)
  post    POST /api/movies
  search  GET /api/movies?title=<term> on 1 000 000 movies, the term matching ~660 of them

Everything runs on loopback in processes of its own: a private PostgreSQL (initdb under a
temporary directory, deleted at the end), inventory and the gateway as `python server.py`
(cwd = that directory, so no `.env` is read: every setting comes from here), and nginx with its
own prefix. Targets are measured in interleaved rounds (the order rotates every round) and the
table shows each target's median round, because two shared cores are noisy. For the proxies it
also shows their own CPU time per request (user + system, from /proc), which varies far less
between rounds than throughput does, and the CPU time of inventory and PostgreSQL per request
(behind), which shows whether a proxy makes inventory work more.
"""

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

from loopback import require_loopback
from revisions import checkout, python_path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PYTHON = str(ROOT / ".venv/bin/python")
DEFAULT_TARGETS = ("direct", "gateway", "nginx", "relay")
TARGETS = (*DEFAULT_TARGETS, "haproxy", "nginx+gateway")
WORKLOADS = ("id", "list", "post", "search")

# Titles "<Name>: <lead> <adjective> <noun> <n>", e.g. "Agikkub: A Golden Island 3". The 1 500
# names are made-up 7-letter words (letters of md5 digests), each in 1 000 000 / 1 500 ≈ 667
# titles: like a real catalogue, a term matching a few hundred titles has rare trigrams. (A
# pair of common words, e.g. "crimson harbor", also matches ~660 here, but each of its trigrams
# is in 24 000+ titles: the trigram index then reads far more, ~12 ms a query.)
_LEADS = "The,A,Last,Return of the,Beyond the,Night of the,Secret,Song of the,Dawn of the,My"
_ADJECTIVES = (
    "Silent,Crimson,Golden,Hidden,Broken,Frozen,Burning,Lost,Wild,Quiet,Electric,Hollow,Iron,"
    "Velvet,Savage,Gentle,Midnight,Scarlet,Distant,Restless,Wandering,Shattered,Fading,Bitter,"
    "Radiant,Forgotten,Endless,Sacred,Stolen,Twisted,Emerald,Silver,Northern,Sunken,Painted,"
    "Lonely,Hungry"
)
_NOUNS = (
    "Harbor,River,Empire,Garden,Mirror,Forest,Kingdom,Signal,Horizon,Engine,Lantern,Island,"
    "Valley,Prophet,Circus,Desert,Winter,Orchard,Machine,Cathedral,Frontier,Tide,Voyage,Citadel,"
    "Meadow,Storm,Shadow,Compass,Dragon,Letter,Station,Bridge,Canyon,Mountain,Ocean,Temple,"
    "Republic,Hunter,Dancer,Witness,Tower"
)
_NAME_SQL = "initcap(translate(substr(md5('name' || {k}), 1, 7), '0123456789abcdef', '{letters}'))"
_LETTERS = "aeioulmnrstkdbgv"
NAMES = 1500


def name(k: int) -> str:
    """The k-th made-up name, as SEED_SQL computes it."""
    digest = hashlib.md5(f"name{k}".encode()).hexdigest()[:7]
    return digest.translate(str.maketrans("0123456789abcdef", _LETTERS)).capitalize()


SEARCH_TERM = name(1).lower()  # "agikkub": in titles i with i % 1 500 == 1


def _sql_array(words: str) -> str:
    return "ARRAY[" + ",".join(f"'{w}'" for w in words.split(",")) + "]"


SEED_SQL = f"""
WITH names AS (
  SELECT array_agg({_NAME_SQL.format(k="k", letters=_LETTERS)} ORDER BY k) AS a
  FROM generate_series(0, {NAMES - 1}) AS k
)
INSERT INTO movies (title, description)
SELECT names.a[1 + i % {NAMES}] || ': '
       || ({_sql_array(_LEADS)})[1 + (i * 7) % 10] || ' '
       || ({_sql_array(_ADJECTIVES)})[1 + (i * 13) % 37] || ' '
       || ({_sql_array(_NOUNS)})[1 + (i * 31) % 41] || ' ' || i,
       'Movie number ' || i || ', seeded by bench/gateway for the benchmark.'
FROM names, generate_series(1, {{count}}) AS i
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def program(name: str) -> str | None:
    """The path of a server program on PATH or in /usr/sbin (not on a plain user's PATH)."""
    path = shutil.which(name) or f"/usr/sbin/{name}"
    return path if Path(path).exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing answers on 127.0.0.1:port (a leftover server of an earlier run would)."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout}s")
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


class Postgres:
    """A private PostgreSQL cluster on a loopback port, under `root`."""

    def __init__(self, root: Path) -> None:
        versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: int(p.name))
        self.bin = versions[-1] / "bin"
        self.data = root / "pgdata"
        self.socket_dir = root / "pgsocket"
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [*self.as_postgres, *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def start(self) -> None:
        for directory in (self.data, self.socket_dir):
            directory.mkdir()
            if self.as_postgres:
                shutil.chown(directory, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "--no-sync")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.socket_dir} -c max_connections=100"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.data / "server.log"), "-w", "start")  # fmt: skip
        self.psql(f"CREATE ROLE movies_bench LOGIN PASSWORD '{self.password}'", database="postgres")
        self.psql("CREATE DATABASE movies_bench OWNER movies_bench", database="postgres")

    def psql(self, sql: str, database: str = "movies_bench") -> str:
        return self._run(str(self.bin / "psql"), "-h", str(self.socket_dir), "-p",
                         str(self.port), "-U", "postgres", "-d", database, "-v",
                         "ON_ERROR_STOP=1", "-qAtc", sql)  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def env(self) -> dict[str, str]:
        return {
            "INVENTORY_DB_HOST": "127.0.0.1",
            "INVENTORY_DB_PORT": str(self.port),
            "INVENTORY_DB_NAME": "movies_bench",
            "INVENTORY_DB_USER": "movies_bench",
            "INVENTORY_DB_PASSWORD": self.password,
        }


class Platform:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="crud-bench-gateway-"))
        self.root.chmod(0o755)
        self.pg = Postgres(self.root)
        self.processes: list[subprocess.Popen] = []
        self.daemon_pid_files: list[Path] = []  # nginx and HAProxy detach: stopped by pid file
        self.ports = {
            "direct": args.inventory_port,
            "gateway": args.gateway_port,
            "nginx": args.nginx_port,
            "relay": args.relay_port,
        }
        optional = {"haproxy": args.haproxy_port, "nginx+gateway": args.nginx_gateway_port}
        for target in args.targets.split(","):
            if target in optional:
                self.ports[target] = optional[target]
        self.base_tree: Path | None = None  # with --base: a checkout of that revision
        if args.base:
            self.ports["base"] = args.base_port
        self.proxy_pids: dict[str, list[int]] = {}  # target -> the pids whose trees proxy
        self.inventory_pid = 0

    def url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.ports[target]}"

    def service_env(self) -> dict[str, str]:
        test_env = env_file(ROOT / ".env.test")
        env = dict(os.environ)
        env |= {k: v for k, v in test_env.items() if k.startswith("RABBITMQ_")}
        env |= self.pg.env()
        env |= {
            "APP_ENV": "production",
            "LOG_LEVEL": "WARNING",
            "INVENTORY_HOST": "127.0.0.1",
            "INVENTORY_PORT": str(self.ports["direct"]),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.ports["gateway"]),
            "INVENTORY_URLS": self.url("direct"),
            "BILLING_URL": f"http://127.0.0.1:{free_port()}",
            "GATEWAY_API_KEYS": "",  # writes open, as for nginx and direct
            "GATEWAY_ALLOW_ANONYMOUS_WRITES": "true",
        }
        env |= dict(item.split("=", 1) for item in self.args.env)
        return env

    def start(self) -> None:
        env = require_loopback(self.service_env())  # before anything is started
        for target, port in self.ports.items():
            if not port_is_free(port):
                raise RuntimeError(f"port {port} ({target}) is in use; pick another with --*-port")
        log(f"private PostgreSQL on 127.0.0.1:{self.pg.port} under {self.root}")
        self.pg.start()
        subprocess.run([PYTHON, "-m", "inventory.migrate"], env=env, cwd=self.root, check=True)
        self.inventory_pid = self.spawn("inventory", ROOT / "services/inventory/server.py", env)
        wait_for(lambda: http_ok(self.url("direct") + "/health"), 30, "inventory")
        self.proxy_pids["gateway"] = [
            self.spawn("gateway", ROOT / "services/gateway/server.py", env)
        ]
        wait_for(lambda: http_ok(self.url("gateway") + "/api/movies?limit=1"), 30, "gateway")
        if self.base_tree:
            base_env = env | {
                "GATEWAY_PORT": str(self.ports["base"]),
                "PYTHONPATH": python_path(self.base_tree),
            }
            server = self.base_tree / "services/gateway/server.py"
            self.proxy_pids["base"] = [self.spawn("base", server, base_env)]
            wait_for(lambda: http_ok(self.url("base") + "/api/movies?limit=1"), 30, "base gateway")
        self.proxy_pids["nginx"] = [self.start_nginx("nginx", "direct")]
        relay = (str(self.ports["relay"]), str(self.ports["direct"]))
        self.proxy_pids["relay"] = [self.spawn("relay", BENCH / "relay/relay.py", env, relay)]
        wait_for(lambda: http_ok(self.url("relay") + "/api/movies?limit=1"), 10, "relay")
        if "haproxy" in self.ports:
            self.proxy_pids["haproxy"] = [self.start_haproxy()]
        if "nginx+gateway" in self.ports:  # both processes' CPU is the door's
            nginx = self.start_nginx("nginx+gateway", "gateway")
            self.proxy_pids["nginx+gateway"] = [nginx, *self.proxy_pids["gateway"]]

    def spawn(
        self, name: str, script: Path, env: dict[str, str], args: tuple[str, ...] = ()
    ) -> int:
        output = open(self.root / f"{name}.log", "wb")  # closed by the child's exit
        process = subprocess.Popen(
            [PYTHON, str(script), *args], env=env, cwd=self.root, stdout=output, stderr=output,
            start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process.pid

    def proxy_cpu_seconds(self, target: str) -> float | None:
        """CPU time (user + system) used so far by the target's proxy processes, or None for
        direct."""
        pids = self.proxy_pids.get(target)
        if pids is None:
            return None
        return sum(cpu_seconds(p) for pid in pids for p in process_tree(pid))

    def behind_cpu_seconds(self) -> float:
        """CPU time used so far by what every target shares: inventory and PostgreSQL."""
        postmaster = int((self.pg.data / "postmaster.pid").read_text().split()[0])
        pids = process_tree(self.inventory_pid) + process_tree(postmaster)
        return sum(map(cpu_seconds, pids))

    def configure(self, server: str, target: str, upstream: str = "direct") -> Path:
        """<temporary directory>/`target`/<the config file of `server`>, from bench/`server`'s
        template with its placeholders filled in: `target`'s port, proxying to `upstream`'s."""
        template = {"nginx": "nginx.conf.template", "haproxy": "haproxy.cfg.template"}[server]
        prefix = self.root / target
        prefix.mkdir()
        config = (
            (BENCH / server / template)
            .read_text()
            .replace("${PREFIX}", str(prefix))
            .replace("${PORT}", str(self.ports[target]))
            .replace("${UPSTREAM}", f"127.0.0.1:{self.ports[upstream]}")
        )
        conf = prefix / template.removesuffix(".template")
        conf.write_text(config)
        return conf

    def start_haproxy(self) -> int:
        conf = self.configure("haproxy", "haproxy")
        subprocess.run([program("haproxy"), "-f", str(conf)], check=True)
        return self.answering("haproxy", conf.parent / "haproxy.pid")

    def start_nginx(self, target: str, upstream: str) -> int:
        """An nginx for `target` in front of `upstream`, once it answers: its master's pid."""
        conf = self.configure("nginx", target, upstream)
        prefix = conf.parent
        subprocess.run(
            [program("nginx"), "-p", str(prefix), "-c", str(conf), "-e",
             str(prefix / "error.log")],
            check=True,
        )  # fmt: skip
        return self.answering(target, prefix / "nginx.pid")

    def answering(self, target: str, pid_file: Path) -> int:
        """Once the daemon started for `target` answers: its pid (from `pid_file`, which
        stop() reads)."""
        self.daemon_pid_files.append(pid_file)
        wait_for(lambda: http_ok(self.url(target) + "/api/movies?limit=1"), 10, target)
        return int(pid_file.read_text())

    def seed(self, count: int) -> None:
        """Exactly `count` movies, ids 1..count (the trigram index is rebuilt once, after)."""
        started = time.monotonic()
        self.pg.psql(
            "TRUNCATE movies RESTART IDENTITY; DROP INDEX ix_movies_title_trgm;"
            "SET maintenance_work_mem = '256MB';"
            + SEED_SQL.replace("{count}", str(int(count)))
            + "; CREATE INDEX ix_movies_title_trgm ON movies USING gin (title gin_trgm_ops);"
        )
        self.pg.psql("VACUUM ANALYZE movies")  # visibility map set: index-only scans work
        matches = self.pg.psql(f"SELECT count(*) FROM movies WHERE title ILIKE '%{SEARCH_TERM}%'")
        log(f"seeded {count} movies in {time.monotonic() - started:.1f}s; "
            f"{matches.strip()} match {SEARCH_TERM!r}")  # fmt: skip

    def stop(self) -> None:
        for pid_file in self.daemon_pid_files:
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
                except (ValueError, ProcessLookupError):
                    pass
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        try:
            self.pg.stop()
        finally:
            if self.args.keep:
                log(f"kept {self.root}")
            else:
                shutil.rmtree(self.root, ignore_errors=True)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn or nginx workers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += parents.get(tree[-1], [])
    return tree


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # exited
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wrk(url: str, workload: str, duration: int, args: argparse.Namespace) -> dict[str, float]:
    script, extra = {
        "id": ("movie_by_id.lua", ["--", "1000"]),
        "list": ("get.lua", []),
        "post": ("post_movie.lua", []),
        "search": ("get.lua", []),
    }[workload]
    path = {
        "id": "",
        "list": "/api/movies?limit=100",
        "post": "",
        # percent-encoded, as users' searches are ("name: " matches the same titles as "name")
        "search": "/api/movies?title=" + quote(SEARCH_TERM + ": "),
    }[workload]
    connections = args.search_connections if workload == "search" else args.connections
    command = [
        "wrk", f"-t{args.threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
        "-s", str(BENCH / "wrk" / script), url + path, *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    return {
        "requests": result["requests"],
        "rps": result["requests"] / (result["duration_us"] / 1e6),
        "p50": result["p50_us"] / 1000,
        "p99": result["p99_us"] / 1000,
        "errors": result["non_2xx"] + result["socket_errors"],
    }


def measure(
    platform: Platform, workload: str, targets: list[str], args: argparse.Namespace
) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {target: [] for target in targets}
    for target in targets:  # warm-up: connections, caches, JIT-less but still
        wrk(platform.url(target), workload, args.warmup, args)
    for round_number in range(args.rounds):
        shift = round_number % len(targets)
        for target in targets[shift:] + targets[:shift]:
            cpu_before = platform.proxy_cpu_seconds(target)
            behind_before = platform.behind_cpu_seconds()
            run = wrk(platform.url(target), workload, args.duration, args)
            behind = platform.behind_cpu_seconds() - behind_before
            run["behind_us"] = behind / max(run["requests"], 1) * 1e6
            if cpu_before is not None:
                cpu = platform.proxy_cpu_seconds(target) - cpu_before  # type: ignore[operator]
                run["cpu_us"] = cpu / max(run["requests"], 1) * 1e6
            runs[target].append(run)
        log(
            f"{workload} round {round_number + 1}/{args.rounds}: "
            + ", ".join(f"{t} {runs[t][-1]['rps']:.0f}/s" for t in targets)
        )
    return runs


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]} | {
        "errors": sum(run["errors"] for run in runs)
    }


WORKLOAD_LABELS = {
    "id": "GET /api/movies/{id} (1k movies)",
    "list": "GET /api/movies?limit=100 (1k)",
    "post": "POST /api/movies",
    "search": "GET ?title= (1M movies, 667 hits)*",
}


def print_table(
    results: dict[str, dict[str, dict[str, float]]], targets: list[str], args: argparse.Namespace
) -> None:
    width = max(7, *map(len, targets))
    header = f"| {'workload':<36} | {'target':<{width}} | {'req/s':>7} "
    header += f"| {'p50 ms':>7} | {'p99 ms':>7} | ratio | proxy µs/req | behind µs/req | errors |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for workload, by_target in results.items():
        direct = by_target.get("direct")
        for target in targets:
            run = by_target[target]
            ratio = f"{run['rps'] / direct['rps']:.2f}" if direct and target != "direct" else ""
            cpu = f"{run['cpu_us']:.1f}" if "cpu_us" in run else ""
            print(
                f"| {WORKLOAD_LABELS[workload]:<36} | {target:<{width}} | {run['rps']:>7.0f} "
                f"| {run['p50']:>7.2f} | {run['p99']:>7.2f} | {ratio:>5} | {cpu:>12} "
                f"| {run['behind_us']:>13.1f} | {run['errors']:>6.0f} |"
            )
    if "gateway" in targets and "nginx" in targets and "direct" in targets:
        print("\n| workload | gateway ratio | nginx ratio | nginx - gateway (goal <= 0.10) |")
        print("|---|---|---|---|")
        for workload, by_target in results.items():
            direct_rps = by_target["direct"]["rps"]
            ours = by_target["gateway"]["rps"] / direct_rps
            nginx = by_target["nginx"]["rps"] / direct_rps
            print(
                f"| {WORKLOAD_LABELS[workload]} | {ours:.2f} | {nginx:.2f} | {nginx - ours:+.2f} |"
            )
    if "base" in targets and "gateway" in targets:
        print(f"\n| workload | gateway / base ({args.base}): req/s | proxy µs/req |")
        print("|---|---|---|")
        for workload, by_target in results.items():
            ours, base = by_target["gateway"], by_target["base"]
            print(
                f"| {WORKLOAD_LABELS[workload]} | {ours['rps'] / base['rps']:.2f} "
                f"| {ours['cpu_us'] / base['cpu_us']:.2f} |"
            )
    print(
        "\nreq/s, p50, p99, proxy µs/req: median of the rounds; ratio: target req/s / direct "
        "req/s;\nproxy µs/req: CPU time of the proxy's processes / requests; errors: non-2xx "
        "answers + socket errors over all rounds;\nbehind µs/req: CPU time of inventory and "
        "PostgreSQL / requests (the same for every target when proxies add no work behind them).\n"
        f"wrk: {args.threads} threads, {args.connections} connections "
        f"(* search: {args.search_connections}), "
        f"{args.duration}s x {args.rounds} rounds per target."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up (1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--search-connections", type=int, default=8, help="wrk connections for search (8)"
    )
    parser.add_argument("--search-rows", type=int, default=1_000_000)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="subset, e.g. id,post")
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"of {','.join(TARGETS)}; default {','.join(DEFAULT_TARGETS)}",
    )
    parser.add_argument("--inventory-port", type=int, default=28080)
    parser.add_argument("--gateway-port", type=int, default=28082)
    parser.add_argument("--nginx-port", type=int, default=28090)
    parser.add_argument("--relay-port", type=int, default=28092)
    parser.add_argument("--haproxy-port", type=int, default=28096)
    parser.add_argument("--nginx-gateway-port", type=int, default=28098)
    parser.add_argument("--base", help="also the gateway of this git revision (target 'base')")
    parser.add_argument("--base-port", type=int, default=28094)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the services")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    targets = [t for t in args.targets.split(",") if t]
    if unknown := (set(workloads) - set(WORKLOADS)) | (set(targets) - set(TARGETS)):
        parser.error(f"unknown workload/target: {', '.join(sorted(unknown))}")
    if not shutil.which("wrk"):
        parser.error("wrk is missing: apt-get install wrk")
    if "haproxy" in targets and not program("haproxy"):
        parser.error("haproxy is missing: apt-get install haproxy")

    started = time.monotonic()
    platform = Platform(args)
    stack = ExitStack()  # the --base checkout
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        if args.base:
            platform.base_tree = stack.enter_context(checkout(args.base))
            targets.append("base")
        platform.start()
        if set(workloads) & {"id", "list", "post"}:
            platform.seed(1000)
        for workload in workloads:
            if workload == "search":
                platform.seed(args.search_rows)
            runs = measure(platform, workload, targets, args)
            results[workload] = {target: median_run(runs[target]) for target in targets}
    finally:
        platform.stop()
        stack.close()
    print_table(results, targets, args)
    log(f"done in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
