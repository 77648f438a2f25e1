"""The network guard itself. Refused connections use UDP sockets: connect() on UDP sends no
packet, so even a broken guard would not let these tests reach beyond the machine."""

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from netguard import Guard, NetworkGuardError

OUTSIDE = "192.0.2.1"  # TEST-NET-1


@contextmanager
def refused(guard: Guard, match: str) -> Iterator[None]:
    """The block is refused with `match`, and the violation is taken so this test passes."""
    with pytest.raises(NetworkGuardError, match=match):
        yield
    assert re.search(match, guard.violations.pop())
    assert guard.violations == []


def udp_connect(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, 9))


def test_a_test_reaching_outside_fails_with_a_clear_message_even_if_it_swallows_the_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(f"""
            import socket

            def test_reaches_outside_and_swallows_the_error():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    try:
                        sock.connect(("{OUTSIDE}", 9))
                    except Exception:
                        pass

            def test_loopback():
                with socket.socket() as server:
                    server.bind(("127.0.0.1", 0))
                    server.listen()
                    socket.create_connection(server.getsockname()).close()
        """)
    )
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "netguard", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).parent),
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert inner.returncode == 1, inner.stdout + inner.stderr
    assert "1 failed, 1 passed" in inner.stdout
    assert (
        f"netguard: connection to {OUTSIDE} port 9: {OUTSIDE} is outside this machine; "
        "tests may reach only loopback and the networks they create and allow"
    ) in inner.stdout


async def test_loopback_and_unix_sockets_pass(tmp_path: Path) -> None:
    for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        with socket.socket(family) as server:
            server.bind((host, 0))
            server.listen()
            socket.create_connection(server.getsockname()[:2]).close()
    path = str(tmp_path / "socket")
    server = await asyncio.start_unix_server(lambda r, w: w.close(), path)
    _, writer = await asyncio.open_unix_connection(path)
    writer.close()
    server.close()


async def test_the_asyncio_loop_is_refused_before_any_packet(netguard: Guard) -> None:
    loop = asyncio.get_running_loop()
    with refused(netguard, f"connection to {OUTSIDE} port 9: .* outside this machine"):
        await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(OUTSIDE, 9))
    with refused(netguard, "connection to fd00::1 port 9"):
        udp_connect("fd00::1")


def test_lookups_that_etc_hosts_cannot_answer_are_refused(netguard: Guard) -> None:
    socket.getaddrinfo("localhost", 5432)
    with refused(netguard, "looking up 'db.example' .* would ask the DNS server"):
        sys.audit("socket.getaddrinfo", "db.example", 5432, 0, 0, 0)  # the hook, no lookup


def test_child_processes_get_only_loopback_settings(netguard: Guard) -> None:
    loopback = {"BILLING_DB_HOST": "localhost", "INVENTORY_URLS": "http://127.0.0.1:1"}
    assert subprocess.run(["true"], env=loopback).returncode == 0
    with refused(netguard, f"a process started with {OUTSIDE} in BILLING_DB_HOST: {OUTSIDE} is"):
        subprocess.run(["true"], env={"BILLING_DB_HOST": OUTSIDE})
    urls = f"http://127.0.0.1:1,http://{OUTSIDE}:2"
    with refused(netguard, f"{OUTSIDE} in INVENTORY_URLS: {OUTSIDE} is outside"):
        subprocess.run(["true"], env={"INVENTORY_URLS": urls})
    with refused(netguard, "'db.example' is not in /etc/hosts"):
        subprocess.run(["true"], env={"RABBITMQ_HOST": "db.example"})


def test_allowing_what_goes_out_by_the_default_route_still_refuses_it(netguard: Guard) -> None:
    with netguard.allowed(f"{OUTSIDE}/32"), refused(netguard, "allowed, but routed via"):
        udp_connect(OUTSIDE)


@pytest.fixture
def veth() -> Iterator[str]:
    """A veth pair of this test, its host end 198.18.21.1/30 (RFC 2544 lab range): the kind of
    interface a multi-host fixture puts between this machine and its namespaces."""
    name = f"ngtest{os.getpid() % 10000}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"])
    try:
        subprocess.run(["ip", "addr", "add", "198.18.21.1/30", "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)


def test_a_network_behind_our_own_interface_can_be_allowed(netguard: Guard, veth: str) -> None:
    route = subprocess.run(["ip", "-j", "route", "get", "198.18.21.2"], capture_output=True)
    assert json.loads(route.stdout)[0]["dev"] == veth
    with refused(netguard, "198.18.21.2 is outside this machine"):
        udp_connect("198.18.21.2")
    with netguard.allowed("198.18.21.0/30"):
        udp_connect("198.18.21.2")
        with refused(netguard, f"{OUTSIDE} is outside this machine"):
            udp_connect(OUTSIDE)
    with refused(netguard, "198.18.21.2 is outside this machine"):
        udp_connect("198.18.21.2")
