"""netguard: a pytest plugin that fails any test reaching beyond this machine.

Loaded for every test by the root conftest.py. Tests may reach loopback (127.0.0.0/8, ::1),
Unix sockets and networks they created themselves and allowed (below); anything else fails the
test with a `netguard: …` message, whether or not the code under test swallows the error:

- the connection is refused before any packet is sent (the audit events `socket.connect`,
  `socket.sendto` and `socket.sendmsg`: plain sockets and the default asyncio loop, so asyncpg,
  aio-pika, httpx and aiohttp on pytest-asyncio's loop);
- a name lookup that /etc/hosts cannot answer (`socket.getaddrinfo`, `socket.gethostbyname`) is
  refused too: it would ask the DNS server;
- a child process (`subprocess`, asyncio's subprocesses) is not started when its environment names
  a non-loopback host in a setting of ours (`*_HOST`, `*_URL`, `*_URLS` of INVENTORY_, BILLING_,
  GATEWAY_ and RABBITMQ_).

Not covered: sockets that do not go through Python's `socket` module (uvloop, C extensions) and
whatever a child process connects to on its own beyond the settings it is given.

A fixture that creates network namespaces behind a bridge or veth with a host address allows their
addresses while it holds them:

    @pytest.fixture
    def hosts(netguard):
        ...create the bridge 10.77.0.1/24 and the namespaces...
        with netguard.allowed("10.77.0.0/24"):
            yield ...

Before the first use of each allowed address, `ip route get` must show that it leaves through an
interface that carries no default route and without a gateway; otherwise it is refused like any
other address: nothing that goes out by the default route is ever allowed.
"""

import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
RULE = (
    "tests may reach only loopback and the networks they create and allow with the `netguard` "
    "fixture (tests/netguard/netguard.py)"
)
SETTING = re.compile(r"(INVENTORY|BILLING|GATEWAY|RABBITMQ)_(\w+_)?(HOST|URLS?)")
EVENTS = frozenset(
    {
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "subprocess.Popen",
    }
)


class NetworkGuardError(Exception):
    """Raised where a test would reach beyond this machine; the test fails even if it is caught."""


class Guard:
    def __init__(self) -> None:
        self.violations: list[str] = []  # not yet reported to pytest
        self._allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._routes: dict[Address, str | None] = {}  # allowed address -> why refused, if it is
        self._hosts = _etc_hosts()

    @contextmanager
    def allowed(self, *networks: str) -> Iterator[None]:
        """Allow addresses in `networks` (e.g. "10.77.0.0/24") while inside the block."""
        added = [ipaddress.ip_network(network) for network in networks]
        self._allowed += added
        try:
            yield
        finally:
            for network in added:
                self._allowed.remove(network)
            self._routes.clear()

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        """The audit hook (sys.addaudithook): raises before the call it audits is made."""
        if event not in EVENTS:
            return
        if event == "subprocess.Popen":
            env = os.environ if args[3] is None else args[3]
            for name, value in env.items():
                name, value = (_text(s) for s in (name, value))
                if SETTING.fullmatch(name):
                    for host in _hosts_in(value):
                        self._check_host(host, f"a process started with {host} in {name}")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
            host = _text(args[0] or "")
            if host and _literal(host) is None and _name(host) not in self._hosts:
                self._refuse(f"looking up {host!r} (not in /etc/hosts) would ask the DNS server")
        else:  # socket.connect, socket.sendto, socket.sendmsg: (socket, address or None)
            sock, address = args
            if sock.family in (socket.AF_INET, socket.AF_INET6) and address is not None:
                host = _text(address[0])
                self._check_host(host, f"connection to {host or '0.0.0.0'} port {address[1]}")

    def _check_host(self, host: str, what: str) -> None:
        if not host:  # "": INADDR_ANY, this host
            return
        address = _literal(host)
        addresses = [address] if address is not None else self._hosts.get(_name(host))
        if addresses is None:
            self._refuse(f"{what}: {host!r} is not in /etc/hosts, its DNS lookup would leave")
        for address in addresses:
            if why := self._refusal(address):
                self._refuse(f"{what}: {address} is {why}")

    def _refusal(self, address: Address) -> str | None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_loopback or address.is_unspecified:  # 0.0.0.0 is this host on Linux
            return None
        if not any(address in network for network in self._allowed):
            return "outside this machine"
        if address not in self._routes:
            self._routes[address] = _route_out(address)
        return self._routes[address]

    def _refuse(self, what: str) -> NoReturn:
        message = f"netguard: {what}; {RULE}"
        self.violations.append(message)
        raise NetworkGuardError(message)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _name(host: str) -> str:
    return host.lower().rstrip(".")


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])  # fe80::1%eth0
    except ValueError:
        return None


def _hosts_in(value: str) -> list[str]:
    """Hosts named by a setting: comma-separated hosts, host:port pairs or URLs."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    return [h for p in parts if (h := urlsplit(p if "://" in p else f"//{p}").hostname)]


def _etc_hosts() -> dict[str, list[Address]]:
    hosts: dict[str, list[Address]] = {"localhost": [ipaddress.ip_address("127.0.0.1")]}
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#")[0].split()
        if len(fields) > 1 and (address := _literal(fields[0])) is not None:
            for name in fields[1:]:
                hosts.setdefault(_name(name), []).append(address)
    return hosts


def _route_out(address: Address) -> str | None:
    """Why packets to an allowed address would leave this machine, or None if they stay."""
    family = f"-{address.version}"

    def ip(*args: str) -> list[dict[str, Any]]:
        result = subprocess.run(["ip", "-j", family, *args], capture_output=True, text=True)
        return json.loads(result.stdout or "[]") if result.returncode == 0 else []

    outside = {route.get("dev") for route in ip("route", "show", "default")}
    for route in ip("route", "get", str(address)):  # no route: the kernel refuses it itself
        if "gateway" in route or route.get("dev") in outside:
            way = route.get("gateway") or route.get("dev")
            return f"allowed, but routed via {way}, the way out of this machine"
    return None


GUARD = Guard()
_installed = False


def pytest_configure(config: pytest.Config) -> None:
    global _installed
    if not _installed:  # once per process: an audit hook cannot be removed
        sys.addaudithook(GUARD.audit)
        _installed = True


def _report() -> Iterator[None]:
    """Around each test phase: fail it with the violations that happened meanwhile."""
    try:
        return (yield)
    finally:
        if GUARD.violations:
            messages = "\n".join(dict.fromkeys(GUARD.violations))
            GUARD.violations.clear()
            pytest.fail(messages, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _report())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _report())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    return (yield from _report())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Violations outside any test (e.g. in a plugin or at collection) fail the session."""
    if GUARD.violations:
        sys.stderr.write("\n".join(dict.fromkeys(GUARD.violations)) + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def netguard() -> Guard:
    """The guard; `with netguard.allowed("10.77.0.0/24"):` allows networks a fixture created."""
    return GUARD
