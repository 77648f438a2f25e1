"""Billing benchmark (run it with `bench/billing`): each measurement beside a naive baseline
measured in the same run, on a private RabbitMQ node and a private PostgreSQL (own ports, data and
vhost under /tmp; loopback only), with the services started as processes (`python server.py`).

(a) drain: orders stored per second from a backlog of N queued orders (default 50 000)
    real      billing's consumer (prefetch 1000, batches of 500 in one transaction, ack after
              commit)
    baseline  a naive consumer written here: same prefetch, one INSERT (autocommit) + one ack per
              message
(b) POST /api/billing accepted (200) per second, wrk with 32 connections
    real      the gateway (uvicorn, GATEWAY_WORKERS=1, then 2)
    baseline  a bare aiohttp endpoint written here: parses the JSON body, publishes with aio-pika
              on one long-lived confirming channel and answers 200 after the confirm; no
              validation, no framework; one process
Billing is not running during (b): the queue only fills (the gateway answers without it).
(c) where the queue lives, (a) and (b) again with the real services (gateway: 1 worker):
    a classic queue on one node (as installs before quorum queues had: the services run with
    their declarations turned classic, see CLASSIC_PATCH), the quorum queue on one node (`make
    up`), the quorum queue on a cluster of three nodes (Compose, Kubernetes; services given the
    three addresses).
(d) with --base REV: (a) and (b, 1 worker) for the working tree and for REV (a temporary git
    worktree), alternated round by round: a change's cost measured under the same load.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests/e2e"), str(ROOT / "tests/resilience")]

import aio_pika  # noqa: E402
import asyncpg  # noqa: E402
import orjson  # noqa: E402
from loopback import require_loopback  # noqa: E402
from revisions import checkout, python_path  # noqa: E402

from amqp_bulk import BulkPublisher  # noqa: E402
from billing.broker import queue_arguments  # noqa: E402
from platform_processes import Platform  # noqa: E402
from private_nodes import (  # noqa: E402
    PostgresNode,
    RabbitCluster,
    RabbitNode,
    free_port,
    private_root,
)

QUEUE = "billing_queue"
ARGUMENTS = queue_arguments(f"{QUEUE}.dlq")  # the quorum queue the services declare
PREFETCH = 1000  # billing's default; the naive consumer gets the same
# Put first on a service's PYTHONPATH (as sitecustomize.py), it makes the service declare both
# queues classic, as the code did before quorum queues; nothing else differs.
CLASSIC_PATCH = """
import os

if os.path.basename(os.getcwd()) == "gateway":
    import gateway.publisher

    gateway.publisher.queue_arguments = lambda queue: {}
elif os.path.basename(os.getcwd()) == "billing":
    import billing.broker

    billing.broker.queue_arguments = lambda dead_letter_queue: {}
    billing.broker.DLQ_ARGUMENTS = {}
"""
WRK_SCRIPT = ROOT / "bench/wrk/post_order.lua"


# --- naive baselines (run as subprocesses of this script) ----------------------------------------
async def naive_consumer(url: str, dsn: str) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.declare_queue(QUEUE, durable=True, arguments=ARGUMENTS)
    db = await asyncpg.connect(dsn)
    insert = (
        "INSERT INTO orders (order_id, user_id, number_of_items, total_amount) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING"
    )
    async with queue.iterator() as messages:
        async for message in messages:
            order = orjson.loads(message.body)
            await db.execute(
                insert,
                uuid.UUID(order["order_id"]),
                int(order["user_id"]),
                int(order["number_of_items"]),
                Decimal(order["total_amount"]),
            )
            await message.ack()


def naive_endpoint(url: str, port: int) -> None:
    from aiohttp import web

    async def start(app: web.Application) -> None:
        app["connection"] = await aio_pika.connect_robust(url)
        app["channel"] = await app["connection"].channel(publisher_confirms=True)
        await app["channel"].declare_queue(QUEUE, durable=True, arguments=ARGUMENTS)

    async def stop(app: web.Application) -> None:
        await app["connection"].close()

    async def post_order(request: web.Request) -> web.Response:
        order = orjson.loads(await request.read())
        order_id = str(uuid.uuid4())
        order["order_id"] = order_id
        message = aio_pika.Message(
            orjson.dumps(order), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=order_id
        )
        await request.app["channel"].default_exchange.publish(message, routing_key=QUEUE)
        return web.json_response({"message": "Message posted", "order_id": order_id})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "broker": "ok"})

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/api/billing", post_order)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- the run -------------------------------------------------------------------------------------
class Bench:
    def __init__(self, backlog: int, duration: int) -> None:
        self.backlog, self.duration = backlog, duration
        self.rabbit = RabbitNode(private_root("bench-rabbitmq"), vhost="crud_master_bench")
        self.postgres = PostgresNode(
            private_root("bench-postgres"), database="orders_bench", user="orders_bench"
        )
        self.logs = Path(tempfile.mkdtemp(prefix="crud-master-bench-logs-"))
        billing_port, gateway_port = free_port(), free_port()
        self.env = {
            **self.rabbit.settings_env(),
            **self.postgres.settings_env(),
            "APP_ENV": "development",
            "LOG_LEVEL": "WARNING",
            "BILLING_HOST": "127.0.0.1",
            "BILLING_PORT": str(billing_port),
            "BILLING_QUEUE": QUEUE,
            "BILLING_PREFETCH": str(PREFETCH),
            "BILLING_BATCH_SIZE": "500",
            "BILLING_BATCH_LINGER": "0.02",
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(gateway_port),
            "GATEWAY_WORKERS": "1",
            "GATEWAY_API_KEYS": "",  # whatever ../../.env says: open, no rate limit
            "GATEWAY_RATE_LIMIT": "0",
            "BILLING_URL": f"http://127.0.0.1:{billing_port}",
            "INVENTORY_URLS": f"http://127.0.0.1:{free_port()}",
        }
        self.platform = Platform(self.logs, env=self.env)

    def setup(self) -> None:
        require_loopback({**os.environ, **self.env})  # what every process here is given
        self.rabbit.start()
        subprocess.run(
            [str(ROOT / ".venv/bin/alembic"), "-c", "alembic.ini", "upgrade", "head"],
            cwd=ROOT / "services/billing",
            env={**os.environ, **self.env},
            check=True,
            capture_output=True,
        )

    def close(self) -> None:
        self.platform.stop_all()
        self.rabbit.close()
        self.postgres.close()
        for path in (self.rabbit.root, self.postgres.root, self.logs):
            shutil.rmtree(path, ignore_errors=True)

    async def reset(self, url: str | None = None) -> None:
        connection = await aio_pika.connect(url or self.rabbit.url)
        async with connection, connection.channel() as channel:
            for name in (QUEUE, f"{QUEUE}.dlq"):
                await channel.queue_delete(name)
        db = await asyncpg.connect(self.postgres.dsn)
        await db.execute("TRUNCATE orders RESTART IDENTITY")
        await db.close()
        self.postgres.psql("CHECKPOINT")  # both drains start with the same clean WAL state

    async def fill(self, url: str | None = None, arguments: dict | None = None) -> None:
        orders = []
        for n in range(self.backlog):
            order_id = str(uuid.uuid4())
            body = {
                "order_id": order_id,
                "user_id": 1 + n % 1000,
                "number_of_items": 1 + n % 5,
                "total_amount": f"{n % 1000}.{n % 100:02d}",
            }
            orders.append((order_id, orjson.dumps(body)))
        async with BulkPublisher(url or self.rabbit.url) as publisher:
            await publisher.declare(QUEUE, arguments)
            await publisher.publish(QUEUE, orders)

    async def drain(self, start, stop, url: str | None = None, classic: bool = False) -> dict:
        """Fill the queue, start a consumer, time from its subscription to the last row."""
        await self.reset(url)
        await self.fill(url, {} if classic else None)
        connection = await aio_pika.connect(url or self.rabbit.url)
        db = await asyncpg.connect(self.postgres.dsn)
        try:
            channel = await connection.channel()
            pid = start()
            deadline = time.monotonic() + 60
            while True:  # subscribed?
                queue = await channel.declare_queue(QUEUE, passive=True)
                if queue.declaration_result.consumer_count:
                    began = time.monotonic()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no consumer on {QUEUE} within 60 s (logs: {self.logs})")
                await asyncio.sleep(0.005)
            peak = 0
            deadline = began + 600
            while await db.fetchval("SELECT count(*) FROM orders") < self.backlog:
                peak = max(peak, rss_kib(pid))
                if time.monotonic() > deadline:
                    raise RuntimeError("drain did not finish within 600 s")
                await asyncio.sleep(0.02)
            elapsed = time.monotonic() - began
        finally:
            stop()
            await db.close()
            await connection.close()
        return {"per_s": self.backlog / elapsed, "seconds": elapsed, "rss_mib": peak / 1024}

    def drain_real(self, platform: Platform | None = None) -> dict:
        platform = platform or self.platform

        def start() -> int:
            return platform.start("billing", wait=False).pid

        return asyncio.run(self.drain(start, lambda: platform.stop("billing")))

    def drain_naive(self) -> dict:
        process: list[subprocess.Popen] = []

        def start() -> int:
            process.append(self_subprocess("naive-consumer", self.rabbit.url, self.postgres.dsn))
            return process[0].pid

        def stop() -> None:
            process[0].terminate()
            process[0].wait(timeout=15)

        return asyncio.run(self.drain(start, stop))

    def wrk(self, url: str) -> dict:
        # warm-up (connections, JIT-free but caches and the channel), then the measured run
        wrk_cmd = ["wrk", "-t1", "-c32", "-s", str(WRK_SCRIPT), f"{url}/api/billing"]
        subprocess.run([*wrk_cmd[:1], "-d2s", *wrk_cmd[1:]], capture_output=True, check=True)
        out = subprocess.run(
            [*wrk_cmd[:1], f"-d{self.duration}s", *wrk_cmd[1:]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
        seconds = result["duration_us"] / 1e6
        accepted = result["requests"] - result["non_2xx"]
        return {
            "per_s": accepted / seconds,
            "non_2xx": result["non_2xx"],
            "socket_errors": result["socket_errors"],
            "p50_ms": result["p50_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000,
        }

    def post_gateway(
        self,
        workers: int,
        env: dict | None = None,
        url: str | None = None,
        platform: Platform | None = None,
    ) -> dict:
        platform = platform or self.platform
        asyncio.run(self.reset(url))
        env = {**(env or {}), "GATEWAY_WORKERS": str(workers)}
        platform.start("gateway", env=env, wait=False)
        try:
            platform.wait_healthy("gateway", ready=_broker_ok)
            return self.wrk(platform.url("gateway"))
        finally:
            platform.stop("gateway")

    def versus(self, tree: Path, rounds: int) -> dict[str, dict[str, list[dict]]]:
        """(d): billing's drain and the gateway's POST rate (1 worker), the working tree's and
        those of another checkout `tree`, alternated round by round."""
        logs = self.logs / "base"
        logs.mkdir(exist_ok=True)
        base = Platform(logs, env={**self.env, "PYTHONPATH": python_path(tree)}, root=tree)
        platforms = {"working tree": self.platform, "base": base}
        runs = {name: {"drain": [], "post": []} for name in platforms}
        for round_number in range(rounds):
            order = list(platforms) if round_number % 2 == 0 else list(platforms)[::-1]
            for name in order:
                print(f"versus base, round {round_number + 1}: {name} ...", file=sys.stderr)
                runs[name]["drain"].append(self.drain_real(platforms[name]))
                runs[name]["post"].append(self.post_gateway(1, platform=platforms[name]))
        return runs

    def post_naive(self) -> dict:
        asyncio.run(self.reset())
        port = free_port()
        process = self_subprocess("naive-endpoint", self.rabbit.url, str(port))
        try:
            _wait_http(f"http://127.0.0.1:{port}/health", process)
            return self.wrk(f"http://127.0.0.1:{port}")
        finally:
            process.terminate()
            process.wait(timeout=15)

    def queue_layouts(self) -> dict[str, dict]:
        """(c): drain and POST rates with the queue classic on one node, quorum on one node,
        quorum on three clustered nodes, in this one run."""
        patch = self.logs / "classic"
        patch.mkdir(exist_ok=True)
        (patch / "sitecustomize.py").write_text(CLASSIC_PATCH)
        classic_env = {"PYTHONPATH": str(patch)}
        cluster = RabbitCluster(private_root("bench-cluster"))
        results = {}
        try:
            print("queue layouts: starting a three-node cluster ...", file=sys.stderr)
            cluster.start()
            for node in cluster.nodes:  # (require_loopback reads one host)
                require_loopback({**os.environ, **self.env, **node.settings_env()})
            layouts = [
                ("classic queue, 1 node", self.rabbit.url, classic_env, True),
                ("quorum queue, 1 node", self.rabbit.url, {}, False),
                ("quorum queue, 3 nodes", cluster.nodes[0].url, cluster.settings_env(), False),
            ]
            for name, url, env, classic in layouts:
                print(f"queue layouts: {name}: drain, then POST ...", file=sys.stderr)

                def start(env=env) -> int:
                    return self.platform.start("billing", env=env, wait=False).pid

                drain = asyncio.run(
                    self.drain(start, lambda: self.platform.stop("billing"), url, classic)
                )
                results[name] = {"drain": drain, "post": self.post_gateway(1, env, url)}
        finally:
            cluster.close()
            shutil.rmtree(cluster.root, ignore_errors=True)
        return results


def self_subprocess(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], start_new_session=True)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _broker_ok(response) -> bool:
    try:
        return response.json().get("broker") == "ok"
    except ValueError:
        return False


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({process.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout}s")
        time.sleep(0.1)


def table(rows: list[tuple[str, str, str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(widths[i]) for i, cell in enumerate(row) if i > 0]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def versus_table(runs: dict[str, dict[str, list[dict]]], revision: str) -> str:
    def median(name: str, part: str) -> float:
        return statistics.median(run["per_s"] for run in runs[name][part])

    rows = [("measure (per second)", "working tree", revision, "ratio", "")]
    for part, label in (("drain", "orders drained by billing"), ("post", "POST /api/billing 200s")):
        ours, base = median("working tree", part), median("base", part)
        rows.append((label, f"{ours:,.0f}", f"{base:,.0f}", f"{ours / base:.2f}x", ""))
    return table(rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/billing", description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=50_000, help="queued orders to drain")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--base", help="(d): also billing and the gateway of this git revision")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (d), alternated (3)")
    parser.add_argument(
        "--parts",
        default="drain,post,queues",
        help="what to measure, comma-separated: drain, post, queues (default: all three)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2

    bench = Bench(args.backlog, args.duration)
    results: dict[str, dict] = {}
    try:
        bench.setup()
        if "drain" in parts:
            print(f"draining {args.backlog} orders: naive baseline ...", file=sys.stderr)
            results["drain_naive"] = bench.drain_naive()
            print("draining: billing ...", file=sys.stderr)
            results["drain_real"] = bench.drain_real()
        if "post" in parts:
            print(f"POST /api/billing, wrk -c32 -d{args.duration}s: baseline ...", file=sys.stderr)
            results["post_naive"] = bench.post_naive()
            for workers in (1, 2):
                print(f"POST: gateway, {workers} worker(s) ...", file=sys.stderr)
                results[f"post_gateway_{workers}"] = bench.post_gateway(workers)
        if "queues" in parts:
            results["queues"] = bench.queue_layouts()
        if args.base:
            with checkout(args.base) as tree:
                results["versus"] = bench.versus(tree, args.rounds)
    finally:
        bench.close()

    rows = [("measure (per second)", "real", "baseline", "ratio", "goal")]
    if "drain" in parts:
        drain, naive = results["drain_real"], results["drain_naive"]
        rows.append(
            (
                f"orders drained from a {args.backlog} backlog",
                f"{drain['per_s']:,.0f}",
                f"{naive['per_s']:,.0f}",
                f"{drain['per_s'] / naive['per_s']:.2f}x",
                ">= 10,000",
            )
        )
    for workers in (1, 2) if "post" in parts else ():
        post = results[f"post_gateway_{workers}"]
        base = results["post_naive"]["per_s"]
        rows.append(
            (
                f"POST /api/billing 200s, gateway {workers} worker(s)",
                f"{post['per_s']:,.0f}",
                f"{base:,.0f}",
                f"{post['per_s'] / base:.2f}x",
                ">= 3,000",
            )
        )
    if len(rows) > 1:
        print(table(rows))
    if "queues" in parts:
        layouts = [("where billing_queue lives", "drained/s", "POST 200s/s", "POST p99", "503s")]
        for name, result in results["queues"].items():
            drain, post = result["drain"], result["post"]
            layouts.append(
                (
                    name,
                    f"{drain['per_s']:,.0f}",
                    f"{post['per_s']:,.0f}",
                    f"{post['p99_ms']:.1f} ms",
                    str(post["non_2xx"]),
                )
            )
        print(f"\n{table(layouts)}")
        print(
            f"drained/s: a {args.backlog} backlog stored by billing; POST: wrk -c32 "
            f"-d{args.duration}s through the gateway (1 worker), billing not running"
        )
    if "drain" in parts:
        print(
            f"\ndrain: billing {drain['seconds']:.1f} s"
            f" (consumer RSS peak {drain['rss_mib']:.0f} MiB),"
            f" naive {naive['seconds']:.1f} s (RSS peak {naive['rss_mib']:.0f} MiB)"
        )
    for name in ("post_naive", "post_gateway_1", "post_gateway_2") if "post" in parts else ():
        post = results[name]
        print(
            f"{name}: p50 {post['p50_ms']:.1f} ms, p99 {post['p99_ms']:.1f} ms, "
            f"non-2xx {post['non_2xx']}, socket errors {post['socket_errors']}"
        )
    if args.base:
        print(f"\n{versus_table(results['versus'], args.base)}")
        print(f"median of {args.rounds} alternated rounds; POST: the gateway with 1 worker")
    if parts & {"drain", "post"}:
        print(
            "baselines: drain = one INSERT (autocommit) + one ack per message, "
            f"same prefetch ({PREFETCH}); "
            "POST = bare aiohttp endpoint, one aio-pika confirming channel, 1 process. "
            f"{os.cpu_count()} CPUs; private RabbitMQ and PostgreSQL (fsync on); loopback only."
        )
    out = ROOT / "bench/results"
    out.mkdir(exist_ok=True)
    (out / f"billing-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(results, indent=2)
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "naive-consumer":
        asyncio.run(naive_consumer(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "naive-endpoint":
        naive_endpoint(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
