"""`make up` on a fresh machine (a host of conftest.py: its own PostgreSQL cluster, RabbitMQ node,
PM2 home and network address, no PM2 daemon yet): it prints one short line per step and no
traceback, ends with the apps' status and the URLs, and only the gateway listens beyond loopback
(issues 17 and 19). Then `make down`."""

import re
import socket

import httpx
import pytest

ANSI = re.compile(r"\x1b\[[0-9;]*m")
pytestmark = pytest.mark.timeout(600)  # a fresh machine: PostgreSQL, RabbitMQ, three apps


@pytest.fixture(scope="module")
def machine(network):
    machine = network.host("machine", 20)
    up = machine.run("bash scripts/up.sh", timeout=600)
    return machine, ANSI.sub("", up.stdout + up.stderr).splitlines()


def listening(host) -> set[str]:
    """Local address:port of every listening TCP socket of the host, from `ss -ltn`."""
    lines = host.run("ss -Hltn").stdout.splitlines()
    return {line.split()[3] for line in lines}


def test_make_up_says_each_step_in_one_short_line_and_ends_with_status_and_urls(machine):
    _, lines = machine
    assert lines, "make up printed nothing"
    for line in lines:
        assert line.startswith("==> "), f"not a step line: {line!r}"
        assert len(line) <= 110, f"step line too long: {line!r}"
        assert "error" not in line.lower() and "traceback" not in line.lower(), line
    assert lines[-2] == "==> inventory_app online, billing_app online, api_gateway online"
    assert lines[-1] == (
        "==> crud-master is up: http://localhost:8082  (API docs: http://localhost:8082/docs)"
    )
    assert "==> writes are open to anyone: set GATEWAY_API_KEYS in .env to require a key" in lines


def test_only_the_gateway_listens_beyond_loopback(machine):
    host, _ = machine
    sockets = listening(host)
    exposed = {s for s in sockets if not s.startswith(("127.", "[::1]:"))}
    assert exposed == {"0.0.0.0:8082"}, sockets
    for port in (8080, 8081, 5672, 5432):
        assert f"127.0.0.1:{port}" in sockets, (port, sockets)


def test_from_the_network_the_gateway_answers_and_the_back_ends_refuse(machine):
    host, _ = machine
    assert httpx.get(f"http://{host.address}:8082/api/movies", timeout=5).status_code == 200
    for port in (8080, 8081, 5672, 5432, 4369, 25672):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host.address, port), timeout=5).close()


def test_make_down_stops_the_three_apps_in_short_lines(machine):
    host, _ = machine
    down = host.run("bash scripts/down.sh")
    lines = ANSI.sub("", down.stdout + down.stderr).splitlines()
    assert lines == [
        "==> inventory_app stopped, billing_app stopped, api_gateway stopped",
        "==> crud-master stopped (data kept; make up starts it again)",
    ]
