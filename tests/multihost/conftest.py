"""Machines on this machine, for the provisioning tests: each host is a network namespace on a
bridge created here (with an address on this side, so the tests reach the hosts directly; no
default route inside, so nothing leaves), with its own hostname and its own view of what a role
keeps on disk and in /run: PostgreSQL's data, socket and log directories, the RabbitMQ node and its
configuration, root's PM2 home, the firewall rules, /etc/hosts, and a copy of the repository at
the same path (as Vagrant's synced folder; .venv is shared). Private bind mounts in a mount
namespace give that view; a fresh PostgreSQL cluster is initialised in it, as the Debian package
does on a new machine. The role scripts run unchanged inside.
"""

import os
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = "cmbr0"
SUBNET = "10.231.0"
BRIDGE_ADDRESS = f"{SUBNET}.1"
PG_VERSION = "15"
# Directory of this machine -> name of its private copy in the host's directory.
PRIVATE_DIRS = {
    "/var/lib/postgresql": "pg-lib",
    "/run/postgresql": "pg-run",
    "/var/log/postgresql": "pg-log",
    "/var/lib/rabbitmq": "mq-lib",
    "/var/log/rabbitmq": "mq-log",
    "/etc/rabbitmq": "mq-etc",
    "/root/.pm2": "pm2",
    "/etc/nftables.d": "nft",
}
EXCLUDED = {".git", ".venv", ".env", ".env.test", "__pycache__", ".pytest_cache", ".ruff_cache"}

# Runs inside the new mount and UTS namespaces, then holds them (and the network namespace).
HOLDER = r"""
set -euo pipefail
name=$1 dir=$2 root=$3
hostname "$name"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" >"$dir/hosts"  # as Debian writes it
mount --bind "$dir/hosts" /etc/hosts
shift 3
while [ $# -gt 0 ]; do mount --bind "$dir/$2" "$1"; shift 2; done
mount --bind "$root/.venv" "$dir/repo/.venv"
mount --rbind "$dir/repo" "$root"
echo ready
exec sleep infinity
"""


# A host starts from a clean environment, as a VM's provisioner does: not the tests' settings.
# UV_OFFLINE: the hosts have no route to PyPI (.venv is already synced).
CLEAN_ENV = {"PATH": os.environ["PATH"], "HOME": "/root", "LANG": "C.UTF-8", "UV_OFFLINE": "1"}


def sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=CLEAN_ENV)
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def copy_repository(target: Path) -> None:
    """The working tree without .git, .venv and local env files (as the Vagrantfile's rsync)."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if EXCLUDED & set(Path(info.name).parts) else info

    archive = target.with_suffix(".tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(ROOT, arcname="repo", filter=keep)
    with tarfile.open(archive) as tar:
        tar.extractall(target.parent, filter="tar")
    archive.unlink()
    (target / ".venv").mkdir()


class Host:
    def __init__(self, name: str, index: int, workdir: Path) -> None:
        self.name = name
        self.address = f"{SUBNET}.{index}"
        self.netns = f"cm-{name}"
        self.veth = f"cmv{index}"
        self.dir = workdir / name
        self.holder: subprocess.Popen | None = None

    def start(self) -> None:
        self.dir.mkdir()
        for private in PRIVATE_DIRS.values():
            (self.dir / private).mkdir()
        for path in PRIVATE_DIRS:
            os.makedirs(path, exist_ok=True)  # mount points on this machine (empty if new)
        shutil.copytree("/etc/rabbitmq", self.dir / "mq-etc", dirs_exist_ok=True)
        shutil.chown(self.dir, "root", "root")
        for private, owner in (("pg-", "postgres"), ("mq-", "rabbitmq")):
            for path in self.dir.glob(f"{private}*"):
                sh("chown", "-R", f"{owner}:{owner}", str(path))
        copy_repository(self.dir / "repo")
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "eth0", "netns", self.netns)
        sh("ip", "link", "set", self.veth, "master", BRIDGE, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        sh("ip", "-n", self.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        mounts = [part for item in PRIVATE_DIRS.items() for part in item]
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "bash", "-c", HOLDER, "holder", self.name, str(self.dir),
             str(ROOT), *mounts],
            stdout=subprocess.PIPE,
            text=True,
            env=CLEAN_ENV,
        )  # fmt: skip
        assert self.holder.stdout.readline() == "ready\n", f"{self.name}: namespaces not set up"
        # What the postgresql package does on a new machine: one cluster, main.
        self.run(
            f"install -d -o postgres -g postgres /var/lib/postgresql/{PG_VERSION}/main && "
            f"runuser -u postgres -- /usr/lib/postgresql/{PG_VERSION}/bin/initdb --no-sync "
            f"-D /var/lib/postgresql/{PG_VERSION}/main --auth-local=peer "
            "--auth-host=scram-sha-256 >/dev/null"
        )

    def run(
        self, command: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """A shell command on this host, as root."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.holder.pid), "-m", "-u", "-n", "--wd=" + str(ROOT),
             "bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=CLEAN_ENV,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"{self.name}: {command} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def provision(self, role: str, topology: list[str], timeout: float = 300) -> str:
        """What the Vagrantfile's provisioner runs on the VM of this role; returns its output."""
        pairs = " ".join(shlex.quote(pair) for pair in topology)
        done = self.run(f"bash scripts/vagrant.sh {role} {pairs}", timeout=timeout)
        return done.stdout + done.stderr

    def link(self, up: bool) -> None:
        """Plug or unplug this host's cable (the bridge side of its veth)."""
        sh("ip", "link", "set", self.veth, "up" if up else "down")

    def close(self) -> None:
        if self.holder is None:
            sh("ip", "netns", "del", self.netns, check=False)
            return
        self.run("pm2 kill", check=False, timeout=30)
        self.run(f"pg_ctlcluster {PG_VERSION} main stop -m immediate", check=False, timeout=30)
        self.run("rabbitmqctl -q stop", check=False, timeout=60)
        # Whatever is left in the namespace was started by this test.
        pids = sh("ip", "netns", "pids", self.netns, check=False).stdout.split()
        for pid in pids:
            sh("kill", "-9", pid, check=False)
        self.holder.kill()
        self.holder.wait()
        wait_until(
            lambda: not sh("ip", "netns", "pids", self.netns, check=False).stdout.strip(),
            10,
            message=f"{self.name}: every process gone after kill -9",
        )
        sh("ip", "netns", "del", self.netns, check=False)


class Network:
    """The bridge and the hosts on it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.hosts: list[Host] = []
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        route = sh("ip", "route", "get", f"{SUBNET}.10").stdout
        assert f"dev {BRIDGE}" in route and " via " not in route, route

    def host(self, name: str, index: int) -> Host:
        host = Host(name, index, self.workdir)
        self.hosts.append(host)
        host.start()
        return host

    def close(self) -> None:
        for host in self.hosts:
            host.close()
        sh("ip", "link", "del", BRIDGE, check=False)


@pytest.fixture(scope="module")
def network(tmp_path_factory, request) -> Iterator[Network]:
    network = Network(tmp_path_factory.mktemp("hosts"))
    try:
        try:
            guard = request.getfixturevalue("netguard")
        except pytest.FixtureLookupError:  # before the network guard of issue 21 is loaded
            yield network
        else:
            with guard.allowed(f"{SUBNET}.0/24"):
                yield network
    finally:
        network.close()
