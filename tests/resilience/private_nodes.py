"""A private RabbitMQ node and a private PostgreSQL instance, for tests that stop or restart them.

Each runs on its own loopback ports with its data, logs and Erlang cookie under a directory of
its own, so stopping one never disturbs the system's RabbitMQ or PostgreSQL (nor a platform that
`make up` runs on the same machine). Only processes started here are ever stopped, by their pid
(or through their own control tool: `rabbitmqctl -n <node> stop`, `pg_ctl -D <dir> stop`).

Used by tests/resilience (fixtures in its conftest.py) and by bench/billing.
"""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from polling import wait_until

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")  # the real scripts (/usr/sbin ones `su rabbitmq`)
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _postgres_bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config:
        return Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
    return sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]


class RabbitNode:
    """`rabbitmq-server` as a child process: own node name, ports, epmd, cookie, data."""

    def __init__(
        self,
        root: Path,
        vhost: str = "crud_master_private",
        user: str = "crud_master",
        *,
        password: str | None = None,
        epmd_port: int | None = None,
        cookie: str | None = None,
        config: str = "",
    ):
        """`epmd_port` (then not started here), `cookie`, `password` and `config` (extra
        rabbitmq.conf lines) shared by the nodes of a cluster (see RabbitCluster)."""
        self.root = root
        self.vhost, self.user = vhost, user
        self.password = password or secrets.token_hex(12)
        self.port, self.dist_port = free_port(), free_port()
        self.epmd_port = epmd_port or free_port()
        self._own_epmd = epmd_port is None
        self.nodename = f"private-{secrets.token_hex(4)}@localhost"
        self.log = root / "rabbitmq.out"
        self._server: subprocess.Popen | None = None
        self._epmd: subprocess.Popen | None = None
        for sub in ("home", "mnesia", "log", "conf.d"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if cookie is not None:
            cookie_file = root / "home" / ".erlang.cookie"
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o400)
        (root / "rabbitmq.conf").write_text(
            config + f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"default_vhost = {self.vhost}\n"
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            "default_permissions.configure = .*\n"
            "default_permissions.read = .*\n"
            "default_permissions.write = .*\n"
            "loopback_users = none\n"
        )
        (root / "enabled_plugins").write_text("[].\n")
        (root / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq/rabbitmq-env.conf

    # --- what clients need -----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.vhost}"

    def settings_env(self) -> dict[str, str]:
        """The RABBITMQ_* variables of the services, pointing at this node."""
        return {
            "RABBITMQ_HOST": "127.0.0.1",
            "RABBITMQ_PORT": str(self.port),
            "RABBITMQ_VHOST": self.vhost,
            "RABBITMQ_USER": self.user,
            "RABBITMQ_PASSWORD": self.password,
        }

    # --- lifecycle -------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root / "home"),  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            # Not /etc/rabbitmq/conf.d: the system node's listeners there are not this node's.
            "RABBITMQ_CONFIG_FILES": str(self.root / "conf.d"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
        }

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def start(self, timeout: float = 90) -> None:
        if self.running:
            return
        if self._own_epmd and (self._epmd is None or self._epmd.poll() is not None):
            self._epmd = start_epmd(self.epmd_port)
        with open(self.log, "ab") as log:
            self._server = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                env=self._env(),
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own group: kill() reaches beam and its helpers
            )

        def answers() -> bool:
            if self._server is None or self._server.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited:\n{_tail(self.log)}")
            return self.answers_amqp()

        wait_until(
            answers, timeout, interval=0.2, message=f"RabbitMQ {self.nodename} on :{self.port}"
        )

    def answers_amqp(self) -> bool:
        """True once the broker answers the AMQP protocol header with connection.start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(AMQP_HEADER)
                return sock.recv(1) == b"\x01"  # a method frame (connection.start)
        except OSError:
            return False

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (`rabbitmqctl stop`), as a service manager would do it."""
        if not self.running:
            return
        assert self._server is not None
        result = self.ctl("stop", check=False, timeout=timeout)
        try:
            self._server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"rabbitmqctl stop did not stop the node: {result}") from None
        self._server = None

    def kill(self) -> None:
        """SIGKILL the node (a crash): its process group only."""
        if self._server is not None:
            if self._server.poll() is None:
                os.killpg(self._server.pid, signal.SIGKILL)
            self._server.wait(timeout=30)
            self._server = None

    def close(self) -> None:
        try:
            self.stop()
        except Exception:
            self.kill()
        if self._epmd is not None:
            if self._epmd.poll() is None:
                self._epmd.terminate()
            self._epmd.wait(timeout=10)
            self._epmd = None

    # --- inspection ------------------------------------------------------------------------
    def ctl(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, "-q", *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr or result.stdout}")
        return result.stdout

    def queue_counts(self, queue: str) -> dict[str, int]:
        """messages (ready + unacknowledged), messages_ready, messages_unacknowledged, consumers.

        Unlike a passive declare (ready only), this sees what a consumer holds unacked. For a
        quorum queue the broker refreshes these figures every few seconds: poll them."""
        columns = ("messages", "messages_ready", "messages_unacknowledged", "consumers")
        output = self.ctl("list_queues", "-p", self.vhost, "--no-table-headers", "name", *columns)
        for line in output.splitlines():
            fields = line.split()
            if fields and fields[0] == queue:
                return dict(zip(columns, map(int, fields[1:]), strict=True))
        return dict.fromkeys(columns, 0)


def start_epmd(port: int) -> subprocess.Popen:
    epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
    return subprocess.Popen(
        [epmd, "-port", str(port), "-address", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


class RabbitCluster:
    """Three private nodes clustered: one epmd, one cookie, one user; `pause_minority`, so a
    node cut off from the majority stops serving clients (they get no confirm there anyway)."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.epmd_port = free_port()
        cookie, password = secrets.token_hex(16), secrets.token_hex(12)
        config = "cluster_partition_handling = pause_minority\n"
        self.nodes = [
            RabbitNode(
                root / f"node{n}",
                password=password,
                epmd_port=self.epmd_port,
                cookie=cookie,
                config=config,
            )
            for n in range(1, size + 1)
        ]
        self._epmd: subprocess.Popen | None = None

    def start(self) -> None:
        self._epmd = start_epmd(self.epmd_port)
        first, *others = self.nodes
        first.start()
        for node in others:
            node.start()
            node.ctl("stop_app")
            node.ctl("join_cluster", first.nodename)
            node.ctl("start_app")
        first.ctl("await_online_nodes", str(len(self.nodes)))

    @property
    def hosts(self) -> str:
        """RABBITMQ_HOST for the services: every node, host:port, comma-separated."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def settings_env(self) -> dict[str, str]:
        return {**self.nodes[0].settings_env(), "RABBITMQ_HOST": self.hosts}

    def running_node(self) -> RabbitNode:
        return next(node for node in self.nodes if node.running)

    def leader(self, queue: str, vhost: str) -> RabbitNode:
        """The node leading a quorum queue now."""
        output = self.running_node().ctl(
            "list_queues", "-p", vhost, "--no-table-headers", "name", "leader"
        )
        for line in output.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] == queue:
                return next(node for node in self.nodes if node.nodename == fields[1])
        raise LookupError(f"no leader for {queue}: {output!r}")

    def by_port(self, port: int) -> RabbitNode:
        return next(node for node in self.nodes if node.port == port)

    def close(self) -> None:
        for node in self.nodes:
            node.kill()  # a cluster's clean stop waits for its peers: no need, all go
        if self._epmd is not None:
            if self._epmd.poll() is None:
                self._epmd.terminate()
            self._epmd.wait(timeout=10)


class PostgresNode:
    """A PostgreSQL cluster of its own (initdb), one database and its owner."""

    def __init__(self, root: Path, database: str = "orders_private", user: str = "orders_private"):
        self.root = root
        self.database, self.user, self.password = database, user, secrets.token_hex(12)
        self.port = free_port()
        self.data = root / "data"
        self.socket_dir = root
        self.log = root / "postgres.log"
        self.bindir = _postgres_bindir()
        self._as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        if self._as_postgres:
            shutil.chown(root, "postgres", "postgres")
        root.chmod(0o700)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        self.start()
        try:
            self.psql(f"CREATE ROLE {user} LOGIN PASSWORD '{self.password}'")
            self.psql(f"CREATE DATABASE {database} OWNER {user}")
        except BaseException:
            self.close()  # never leave a server behind
            raise

    def _run(self, tool: str, *args: str, timeout: float = 120) -> str:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stderr}\n{_tail(self.log)}")
        return result.stdout

    def settings_env(self, prefix: str = "BILLING") -> dict[str, str]:
        return {
            f"{prefix}_DB_HOST": "127.0.0.1",
            f"{prefix}_DB_PORT": str(self.port),
            f"{prefix}_DB_NAME": self.database,
            f"{prefix}_DB_USER": self.user,
            f"{prefix}_DB_PASSWORD": self.password,
        }

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.socket_dir} -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` cuts every open connection, like a database server going down."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def psql(self, sql: str) -> str:
        return self._run(
            "psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql,
        )  # fmt: skip

    def close(self) -> None:
        self.stop("immediate")


def private_root(prefix: str) -> Path:
    """A fresh directory under /tmp that the postgres user can reach (pytest's are 0700 root)."""
    return Path(tempfile.mkdtemp(prefix=f"crud-master-{prefix}-"))


@contextlib.contextmanager
def owned(node):
    """`node` (a RabbitNode, RabbitCluster or PostgresNode) closed and its directory removed when
    the block ends, however it ends."""
    try:
        yield node
    finally:
        node.close()
        shutil.rmtree(node.root, ignore_errors=True)
