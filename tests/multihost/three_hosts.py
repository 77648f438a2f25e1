"""The three-VM deployment on this machine (`make test-multihost`, not part of `make test`): the
hosts of conftest.py for gateway-vm, inventory-vm and billing-vm, each provisioned by
`scripts/vagrant.sh ROLE KEY=VALUE…` with the Vagrantfile's topology keys (these addresses), and
a fourth host, "another machine on the network", provisioned with nothing. Every request goes
through the gateway's address, as a user's would. Measured times are printed (pytest -rP).
"""

import json
import re
import shlex
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from polling import wait_until

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
GATEWAY, INVENTORY, BILLING, OUTSIDER = (f"10.231.0.{n}" for n in (10, 11, 12, 13))
TOPOLOGY = [
    f"INVENTORY_URLS=http://{INVENTORY}:8080",
    f"BILLING_URL=http://{BILLING}:8081",
    f"RABBITMQ_HOST={BILLING}",
    f"INVENTORY_HOST={INVENTORY}",
    f"BILLING_HOST={BILLING}",
    f"RABBITMQ_LISTEN_ADDRESSES={BILLING}",
    f"FIREWALL_GATEWAY_ADDRESS={GATEWAY}",
    "INVENTORY_WORKERS=1",
]
APPS = {"gateway": ["api_gateway"], "inventory": ["inventory_app"], "billing": ["billing_app"]}
PUBLISH_TIMEOUT = 5.0  # GATEWAY_PUBLISH_TIMEOUT of .env.example


def test_the_topology_is_the_vagrantfiles():
    """Same keys as the Vagrantfile passes, so the test provisions what `vagrant up` does."""
    vagrantfile = (ROOT / "Vagrantfile").read_text()
    block = vagrantfile.split("TOPOLOGY = [", 1)[1].split("].freeze", 1)[0]
    assert re.findall(r'^\s*"(\w+)=', block, re.M) == [pair.split("=", 1)[0] for pair in TOPOLOGY]


@pytest.fixture(scope="module")
def hosts(network, tmp_path_factory):
    env = tmp_path_factory.mktemp("env") / ".env"
    # As the first `vagrant up`: one .env with random secrets, copied to the three VMs.
    subprocess.run(["bash", "scripts/env.sh", str(env)], cwd=ROOT, check=True, capture_output=True)
    machines = {}
    for name, index in (("gateway", 10), ("inventory", 11), ("billing", 12), ("outsider", 13)):
        machines[name] = network.host(name, index)
        if name != "outsider":
            (machines[name].dir / "repo" / ".env").write_bytes(env.read_bytes())
    started = time.monotonic()
    # inventory-vm and billing-vm first (the gateway's /health needs them), side by side.
    outputs, errors = {}, []

    def provision(role: str) -> None:
        try:
            outputs[role] = machines[role].provision(role, TOPOLOGY)
        except Exception as error:
            errors.append(error)

    workers = [threading.Thread(target=provision, args=(r,)) for r in ("inventory", "billing")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    provision("gateway")
    assert not errors, errors
    print(f"provisioning the three hosts: {time.monotonic() - started:.1f}s")
    machines["secrets"] = dict(
        line.split("=", 1) for line in env.read_text().splitlines() if "=" in line
    )
    return machines


@pytest.fixture(scope="module")
def gateway(hosts):
    with httpx.Client(base_url=f"http://{GATEWAY}:8082", timeout=30) as client:
        yield client


def healthy(gateway) -> bool:
    try:
        return gateway.get("/health").status_code == 200
    except httpx.TransportError:  # the gateway's port not open yet
        return False


def sql(host, database: str, query: str) -> str:
    """psql as the postgres user on that host, as `sudo -i -u postgres psql` on the VM."""
    return host.run(f"runuser -u postgres -- psql -d {database} -tAc {shlex.quote(query)}").stdout


def stored(hosts, order_id: str) -> int:
    return int(
        sql(
            hosts["billing"], "orders", f"SELECT count(*) FROM orders WHERE order_id = '{order_id}'"
        )
    )


def order(gateway) -> httpx.Response:
    return gateway.post(
        "/api/billing", json={"user_id": 1, "number_of_items": 2, "total_amount": "9.99"}
    )


def pm2_statuses(host) -> dict[str, str]:
    listing = json.loads(host.run("pm2 jlist").stdout.splitlines()[-1])
    return {app["name"]: app["pm2_env"]["status"] for app in listing}


def test_audit_flow(hosts, gateway):
    created = gateway.post("/api/movies", json={"title": "Alien", "description": "In space"})
    assert created.status_code == 201, created.text
    movie = created.json()
    assert gateway.get(f"/api/movies/{movie['id']}").json()["title"] == "Alien"
    changed = gateway.put(f"/api/movies/{movie['id']}", json={"title": "Aliens", "description": ""})
    assert changed.status_code == 200
    assert gateway.delete(f"/api/movies/{movie['id']}").status_code == 204
    assert gateway.get(f"/api/movies/{movie['id']}").status_code == 404

    first = order(gateway)
    assert first.status_code == 200, first.text
    wait_until(lambda: stored(hosts, first.json()["order_id"]) == 1, 30, message="order not stored")

    hosts["billing"].run("pm2 stop billing_app")
    waiting = order(gateway)
    assert waiting.status_code == 200, waiting.text

    def queued() -> bool:  # a quorum queue's count is published every few seconds: poll
        listing = hosts["billing"].run("rabbitmqctl -q list_queues -p crud_master name messages")
        return re.search(r"^billing_queue\s+1$", listing.stdout, re.M) is not None

    wait_until(queued, 30, message="the order is not waiting in billing_queue")
    assert stored(hosts, waiting.json()["order_id"]) == 0
    hosts["billing"].run("pm2 start billing_app")
    wait_until(
        lambda: stored(hosts, waiting.json()["order_id"]) == 1, 30, message="not stored after start"
    )

    assert "movies" in sql(hosts["inventory"], "movies", r"SELECT tablename FROM pg_tables")
    assert "orders" in sql(hosts["billing"], "orders", r"SELECT tablename FROM pg_tables")


def test_billing_host_cut_off_then_back(hosts, gateway):
    accepted = [order(gateway) for _ in range(5)]
    assert [r.status_code for r in accepted] == [200] * 5
    hosts["billing"].link(up=False)
    try:
        started = time.monotonic()
        refused = order(gateway)
        took = time.monotonic() - started
        movies = gateway.get("/api/movies")
    finally:
        hosts["billing"].link(up=True)
    print(
        f"billing cut: POST /api/billing {refused.status_code} in {took:.1f}s, "
        f"GET /api/movies {movies.status_code}"
    )
    assert refused.status_code == 503, refused.text
    assert took <= PUBLISH_TIMEOUT + 1.5
    assert movies.status_code == 200
    restored = time.monotonic()
    back = wait_until(
        lambda: (r := order(gateway)).status_code == 200 and r, 60, message="orders refused"
    )
    print(f"billing restored: POST /api/billing 200 after {time.monotonic() - restored:.1f}s")
    for response in [*accepted, back]:
        order_id = response.json()["order_id"]
        wait_until(
            lambda order_id=order_id: stored(hosts, order_id) == 1, 60, message=f"{order_id} lost"
        )


def test_inventory_host_cut_off_then_back(hosts, gateway):
    created = gateway.post("/api/movies", json={"title": "Kept", "description": ""})
    assert created.status_code == 201
    hosts["inventory"].link(up=False)
    try:
        started = time.monotonic()
        failed = gateway.get("/api/movies")
        took = time.monotonic() - started
    finally:
        hosts["inventory"].link(up=True)
    print(f"inventory cut: GET /api/movies {failed.status_code} in {took:.1f}s")
    assert failed.status_code == 502, failed.text
    assert "error" in failed.json()
    restored = time.monotonic()
    wait_until(
        lambda: gateway.get("/api/movies").status_code == 200, 60, message="inventory not back"
    )
    print(f"inventory restored: GET /api/movies 200 after {time.monotonic() - restored:.1f}s")
    assert gateway.get(f"/api/movies/{created.json()['id']}").status_code == 200


@pytest.mark.parametrize("role", ["inventory", "billing", "gateway"])
def test_a_reboot_as_pm2_sees_it_brings_every_app_back(hosts, gateway, role):
    movies = gateway.get("/api/movies").headers["X-Total-Count"]
    orders = int(sql(hosts["billing"], "orders", "SELECT count(*) FROM orders"))
    host = hosts[role]
    host.run("pm2 kill")
    host.run("pm2 resurrect")  # what PM2's boot unit runs (pm2 startup systemd)
    online = dict.fromkeys(APPS[role], "online")
    wait_until(lambda: pm2_statuses(host) == online, 30, message=f"{role}: apps not back online")
    wait_until(lambda: healthy(gateway), 60, message="platform not healthy")
    assert gateway.get("/api/movies").headers["X-Total-Count"] == movies
    assert int(sql(hosts["billing"], "orders", "SELECT count(*) FROM orders")) == orders
    new = order(gateway)
    assert new.status_code == 200
    wait_until(lambda: stored(hosts, new.json()["order_id"]) == 1, 30, message="order not stored")


def connects(host, address: str, port: int) -> str:
    """'open' or 'refused' from that host (bash's /dev/tcp), 'timeout' after 3 s."""
    done = host.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/{port}'", check=False)
    if done.returncode == 0:
        return "open"
    return "timeout" if done.returncode == 124 else "refused"


def amqp_login(host, user: str, password: str) -> str:
    script = (
        "import asyncio, sys, aiormq\n"
        "async def main():\n"
        "    c = await aiormq.connect(sys.argv[1])\n"
        "    await c.close()\n"
        "try:\n    asyncio.run(main()); print('accepted')\n"
        "except Exception as e:\n    print('refused', type(e).__name__)\n"
    )
    url = f"amqp://{user}:{password}@{BILLING}:5672/crud_master"
    done = host.run(f".venv/bin/python -c {shlex.quote(script)} {shlex.quote(url)}")
    return done.stdout.strip()


def listening_ports(host) -> set[int]:
    return {
        int(line.split()[3].rsplit(":", 1)[1]) for line in host.run("ss -Hltn").stdout.splitlines()
    }


def test_exposure(hosts):
    gateway_host, outsider = hosts["gateway"], hosts["outsider"]
    assert connects(gateway_host, INVENTORY, 8080) == "open"
    assert connects(gateway_host, BILLING, 8081) == "open"
    assert (
        gateway_host.run(f"curl -fsS http://{INVENTORY}:8080/health", check=False).returncode == 0
    )
    assert gateway_host.run(f"curl -fsS http://{BILLING}:8081/health", check=False).returncode == 0
    password = hosts["secrets"]["RABBITMQ_PASSWORD"]
    assert amqp_login(gateway_host, "crud_master", password) == "accepted"
    assert amqp_login(gateway_host, "guest", "guest").startswith("refused")
    for client in (gateway_host, hosts["billing"], outsider):
        assert connects(client, INVENTORY, 5432) == "refused"
    for client in (gateway_host, hosts["inventory"], outsider):
        assert connects(client, BILLING, 5432) == "refused"
    # The other machine: refused on every port any host listens on, but the gateway's.
    for name, address in (("gateway", GATEWAY), ("inventory", INVENTORY), ("billing", BILLING)):
        for port in sorted(listening_ports(hosts[name]) | {8080, 8081, 5672, 5432}):
            expected = "open" if (name, port) == ("gateway", 8082) else "refused"
            assert (name, port, connects(outsider, address, port)) == (name, port, expected)
    # This machine, on the bridge, is not the gateway host either.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((INVENTORY, 8080), timeout=3).close()
