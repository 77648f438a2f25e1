"""Running the gateway: its HTTP server (http1.py) on uvloop, in one process or several.

With GATEWAY_WORKERS > 1 the parent binds the socket, starts that many worker processes that all
accept on it, and stops them on SIGTERM/SIGINT; a worker that dies takes the parent down with it
(PM2, Compose or Kubernetes then restarts the whole gateway).
"""

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import socket
from collections.abc import AsyncIterator

import uvloop

from .app import create_app
from .config import Settings
from .front import Gateway, limits_of
from .http1 import Server

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0  # seconds for answers in progress when the gateway is stopped


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serving(gateway: Gateway, sock: socket.socket) -> AsyncIterator[Server]:
    """The gateway's resources and its HTTP server on `sock`, until the block ends."""
    await gateway.start()
    server = Server(gateway.handle, limits_of(gateway.settings))
    listener = await asyncio.get_running_loop().create_server(server, sock=sock, backlog=2048)
    try:
        yield server
    finally:
        listener.close()
        await server.shutdown(SHUTDOWN_GRACE)
        await gateway.close()


async def _serve_until_stopped(settings: Settings, sock: socket.socket) -> None:
    gateway = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serving(gateway, sock):
        await stop.wait()


def _worker(settings: Settings, sock: socket.socket, log_config: dict) -> None:
    import logging.config

    logging.config.dictConfig(log_config)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve_until_stopped(settings, sock))


def run(settings: Settings, log_config: dict) -> None:
    """Serves until SIGTERM/SIGINT (server.py)."""
    sock = bind(settings.gateway_host, settings.gateway_port)
    workers = settings.gateway_workers
    log.info(
        "gateway listening on http://%s:%d (%d worker%s)",
        settings.gateway_host,
        sock.getsockname()[1],
        workers,
        "s" if workers > 1 else "",
    )
    if workers == 1:
        _worker(settings, sock, log_config)
        return
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(settings, sock, log_config), daemon=False)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    stopping = False

    def stop(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: each worker shuts down gracefully

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    multiprocessing.connection.wait([p.sentinel for p in processes], timeout=None)
    if not stopping:
        log.error("a gateway worker died; stopping the others")
        stop(signal.SIGTERM, None)
    for process in processes:
        process.join()
    if not stopping:
        raise SystemExit(1)
