"""The three services as real processes, started the way PM2 starts them (`python server.py`)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("inventory", "billing", "gateway")
PORT_VARIABLES = {
    "inventory": "INVENTORY_PORT",
    "billing": "BILLING_PORT",
    "gateway": "GATEWAY_PORT",
}


def database_dsn(prefix: str) -> str:
    env = os.environ
    return (
        f"postgresql://{env[prefix + '_DB_USER']}:{env[prefix + '_DB_PASSWORD']}"
        f"@{env[prefix + '_DB_HOST']}:{env[prefix + '_DB_PORT']}/{env[prefix + '_DB_NAME']}"
    )


def broker_url() -> str:
    env = os.environ
    return (
        f"amqp://{env['RABBITMQ_USER']}:{env['RABBITMQ_PASSWORD']}"
        f"@{env['RABBITMQ_HOST']}:{env['RABBITMQ_PORT']}/{env['RABBITMQ_VHOST']}"
    )


def base_url(service: str) -> str:
    return f"http://127.0.0.1:{os.environ[PORT_VARIABLES[service]]}"


def migrate(service: str) -> None:
    subprocess.run(
        [str(ROOT / ".venv/bin/alembic"), "-c", "alembic.ini", "upgrade", "head"],
        cwd=ROOT / "services" / service,
        check=True,
        capture_output=True,
    )


class Platform:
    """Services as processes. `env` overrides os.environ for every process this platform starts
    (e.g. private broker and database); `start(..., name=, env=)` runs more instances of a service
    under their own names with their own overrides (port, ...)."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None, root: Path = ROOT) -> None:
        self.log_dir = log_dir
        self.root = root  # the checkout whose services run (bench/billing --base: another one)
        self.env = dict(env or {})
        self.processes: dict[str, subprocess.Popen] = {}
        self.services: dict[str, str] = {}  # instance name -> service
        self.envs: dict[str, dict[str, str]] = {}  # instance name -> its environment

    def start(
        self,
        service: str,
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> subprocess.Popen:
        name = name or service
        self.services[name] = service
        self.envs[name] = {**os.environ, **self.env, **(env or {})}
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "server.py"],
                cwd=self.root / "services" / service,
                env=self.envs[name],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches uvicorn's workers too
            )
        if wait:
            self.wait_healthy(name)
        return self.processes[name]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.envs[name][PORT_VARIABLES[self.services[name]]]}"

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def wait_healthy(self, name: str, timeout: float = 30, ready=None) -> None:
        """Until GET /health satisfies `ready(response)` (default: status 200)."""
        ready = ready or (lambda response: response.status_code == 200)

        def healthy() -> bool:
            process = self.processes[name]
            if process.poll() is not None:
                log = self.log(name)[-3000:]
                raise AssertionError(f"{name} exited with {process.returncode}:\n{log}")
            try:
                return ready(httpx.get(f"{self.url(name)}/health", timeout=1))
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, message=f"{name} healthy")

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # never leave it running
            process.wait(timeout=15)
            raise

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)
