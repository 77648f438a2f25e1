"""Instructions the gateway's Python spends on one proxied GET, counted by callgrind: a figure
that does not move with the machine's load (req/s and CPU time do, on two shared cores).

One process drives the gateway's real code (http1.Connection, Gateway.handle, the proxy and the
upstream client) with in-memory transports: a client sends `GET /api/movies/1` on a keep-alive
connection, the upstream answers a fixed 200 with five fields and a JSON body, the next request
follows the answer. No sockets, so no system calls: what is counted is the gateway's own work,
plus the event loop's. callgrind counts only between the first and the last request.

    bench/gateway-cost [--base REV] [--requests N]

prints instructions per request for the working tree and, with --base, for REV (checked out in a
temporary worktree) and their ratio. ~1 min per side.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from revisions import checkout, python_path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv/bin/python")
REQUEST = b"GET /api/movies/1 HTTP/1.1\r\nHost: 127.0.0.1:8082\r\n\r\n"
BODY = b'{"id":1,"title":"Movie 1","description":"A movie","created_at":"2026-01-01T00:00:00Z"}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 12:00:00 GMT\r\nserver: uvicorn\r\n"
    b"content-length: %d\r\ncontent-type: application/json\r\nx-request-id: abc\r\n\r\n%s"
    % (len(BODY), BODY)
)
# Settings of .env.example shape; nothing is connected to (the publisher is not started).
SETTINGS = {
    "APP_ENV": "production",
    "LOG_LEVEL": "WARNING",
    "GATEWAY_HOST": "127.0.0.1",
    "GATEWAY_PORT": "8082",
    "INVENTORY_URLS": "http://127.0.0.1:8080",
    "BILLING_URL": "http://127.0.0.1:8081",
    "RABBITMQ_HOST": "127.0.0.1",
    "RABBITMQ_USER": "bench",
    "RABBITMQ_PASSWORD": "bench",
    "RABBITMQ_VHOST": "/",
    "GATEWAY_API_KEYS": "",
    "GATEWAY_ALLOW_ANONYMOUS_WRITES": "true",
    "PYTHONHASHSEED": "0",
}


class _Transport:
    """What the gateway's protocols call on a transport, in memory."""

    def __init__(self, on_write) -> None:
        self.on_write = on_write

    def write(self, data: bytes) -> None:
        self.on_write(data)

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 50000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    abort = pause_reading = resume_reading = close


def _handshake(state: str) -> None:
    """Tells the parent `state` and waits (blocking: nothing else runs) for its go-ahead."""
    print(state, flush=True)
    sys.stdin.readline()


async def drive(requests: int) -> None:
    """Runs `requests` proxied GETs through the gateway (in the process callgrind watches)."""
    from gateway import upstream
    from gateway.app import create_app
    from gateway.config import get_settings
    from gateway.front import limits_of
    from gateway.http1 import Server

    loop = asyncio.get_running_loop()
    settings = get_settings()
    gateway = create_app(settings)
    gateway.publisher.start = lambda: None
    await gateway.start()
    client = gateway.proxy.client

    async def acquire(target):  # one in-memory upstream connection per exchange in flight
        if target.idle:
            return target.idle.pop()
        conn = upstream._Connection(client.deadlines)
        conn.connection_made(_Transport(lambda _: loop.call_soon(conn.data_received, ANSWER)))
        return conn

    client._acquire = acquire
    done = loop.create_future()
    answered = 0

    def answer_written(_: bytes) -> None:
        nonlocal answered
        answered += 1
        if answered == requests:
            done.set_result(None)
        else:
            loop.call_soon(connection.data_received, REQUEST)

    connection = Server(gateway.handle, limits_of(settings))()
    connection.connection_made(_Transport(answer_written))
    _handshake("ready")  # the parent turns callgrind's counting on, then the requests go
    started = time.process_time()
    connection.data_received(REQUEST)
    await done
    spent = time.process_time() - started
    _handshake("done")
    print(f"{spent * 1e6 / requests:.1f} µs/req of CPU", file=sys.stderr)  # under callgrind: ~50x
    await gateway.close()


def instructions(tree: Path, requests: int) -> float:
    """Instructions per request of the gateway (and crud_common) of `tree`, a checkout."""
    with tempfile.TemporaryDirectory(prefix="gateway-cost-") as tmp:
        out = Path(tmp) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        command += [f"--callgrind-out-file={out}", PYTHON, __file__, "--drive", str(requests)]
        env = os.environ | SETTINGS | {"PYTHONPATH": python_path(tree)}
        with subprocess.Popen(
            command,
            env=env,
            cwd=tmp,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as process:
            for state, switch in (("ready", "on"), ("done", "off")):
                if process.stdout.readline().strip() != state:
                    raise SystemExit(f"the driven gateway stopped before '{state}'")
                control = ["callgrind_control", "-i", switch, str(process.pid)]
                subprocess.run(control, check=True, capture_output=True)
                process.stdin.write("go\n")
                process.stdin.flush()
        if process.returncode:
            raise SystemExit(f"the driven gateway exited with {process.returncode}")
        totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
        return int(totals[-1].split()[1]) / requests


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", help="a git revision to compare with (e.g. HEAD~3)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--drive", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        import uvloop

        uvloop.run(drive(args.drive))
        return
    work = instructions(ROOT, args.requests)
    print(f"working tree: {work:,.0f} instructions per proxied GET")
    if args.base:
        with checkout(args.base) as tree:
            base = instructions(tree, args.requests)
        print(f"{args.base}: {base:,.0f} instructions per proxied GET")
        print(f"working tree / {args.base}: {work / base:.3f}")


if __name__ == "__main__":
    main()
