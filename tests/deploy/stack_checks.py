"""End-to-end checks of the Compose stack, through its published gateway port only.

Run by `make test-docker` (tests/deploy/docker-stack.sh), which builds the images, starts the
stack and sets STACK_GATEWAY_URL, STACK_API_KEY, STACK_ENV_FILE and STACK_COMPOSE (the
`docker compose …` command of the stack). Not collected by `make test`: its file name does
not start with test_.
"""

import io
import json
import os
import re
import shlex
import signal
import subprocess
import tarfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("gateway", "inventory", "billing")


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [*shlex.split(os.environ["STACK_COMPOSE"]), *args]
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout


def containers() -> dict[str, dict]:
    """Service name -> `docker compose ps` entry, stopped one-shot containers included."""
    out = compose("ps", "--all", "--format", "json").stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {entry["Service"]: entry for entry in entries}


def container_state(service: str) -> dict:
    return json.loads(docker("inspect", containers()[service]["ID"]))[0]


def psql(service: str, database: str, sql: str) -> str:
    return compose("exec", "-T", service, "psql", "-qtA", "-d", database, "-c", sql).stdout.strip()


@pytest.fixture(scope="module")
def gateway():
    headers = {"Authorization": f"Bearer {os.environ['STACK_API_KEY']}"}
    with httpx.Client(base_url=os.environ["STACK_GATEWAY_URL"], headers=headers, timeout=10) as c:
        yield c


def test_only_the_gateway_is_published_and_migrations_ran_once():
    services = containers()
    published = {
        name: [p for p in entry.get("Publishers") or [] if p.get("PublishedPort")]
        for name, entry in services.items()
    }
    assert [name for name, ports in published.items() if ports] == ["gateway"]
    assert {p["TargetPort"] for p in published["gateway"]} == {8082}
    for migration in ("inventory-migrate", "billing-migrate"):
        state = services[migration]
        assert (state["State"], state["ExitCode"]) == ("exited", 0), state
    for name in (*APP_SERVICES, "inventory-db", "billing-db", "rabbitmq-0"):
        assert services[name]["Health"] == "healthy", services[name]


def test_application_containers_run_as_a_user_on_a_read_only_root():
    for service in APP_SERVICES:
        state = container_state(service)
        assert state["Config"]["User"] == "10001:10001"
        assert state["HostConfig"]["ReadonlyRootfs"] is True
        top = compose("top", service).stdout
        assert " root " not in top, top


ENV_FILE = re.compile(r"(^|/)\.env(\.[^/]*)?$")


def layer_files(saved: bytes) -> list[str]:
    """Every path in every layer of a `docker save` archive."""
    names = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as image:
        for member in image.getmembers():
            if member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=image.extractfile(member)) as layer:
                    names += layer.getnames()
    return names


def test_no_secret_of_this_machine_is_in_any_image_layer():
    """No env file is in any layer, and no secret of the repository's env files (those of
    `make up` / `make test`, when present) is anywhere in an image."""
    secrets = set()
    for name in (".env", ".env.test"):
        path = ROOT / name
        if path.exists():
            for line in path.read_text().splitlines():
                key, _, value = line.partition("=")
                if ("PASSWORD" in key or "KEYS" in key or "COOKIE" in key) and len(value) >= 16:
                    secrets.add(value.encode())
    for service in APP_SERVICES:
        image = container_state(service)["Config"]["Image"]
        saved = subprocess.run(["docker", "save", image], check=True, capture_output=True).stdout
        env_files = [name for name in layer_files(saved) if ENV_FILE.search(name)]
        assert not env_files, f"{image}: {env_files}"
        found = [secret for secret in secrets if secret in saved]
        assert not found, f"{image} holds a secret of this machine's env files"


def rabbitmqctl_json(*args: str):
    """rabbitmqctl's JSON output, after the notice it prints first about the cookie variable."""
    out = compose("exec", "-T", "rabbitmq-0", "rabbitmqctl", *args, "--formatter", "json").stdout
    start = re.search(r"^[\[{]", out, re.MULTILINE)
    assert start, out
    return json.loads(out[start.start() :])


def stack_setting(key: str) -> str:
    """A value of the stack's env file (STACK_ENV_FILE, the file `--env-file` gives Compose)."""
    for line in Path(os.environ["STACK_ENV_FILE"]).read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.partition("=")[2]
    raise KeyError(key)


def test_orders_queue_is_a_quorum_queue_replicated_on_the_three_nodes():
    vhost, queue = stack_setting("RABBITMQ_VHOST"), stack_setting("BILLING_QUEUE")
    listed = rabbitmqctl_json("list_queues", "-p", vhost, "name", "type", "members")
    queues = {q["name"]: q for q in listed}
    assert queues[queue]["type"] == "quorum"
    assert len(queues[queue]["members"]) == 3


def test_rabbitmq_runs_as_a_three_node_cluster():
    status = rabbitmqctl_json("cluster_status")
    expected = {f"rabbit@rabbitmq-{i}" for i in range(3)}
    assert set(status["running_nodes"]) == expected
    assert set(status["disk_nodes"]) == expected


def test_movie_lifecycle_through_the_gateway(gateway):
    title = f"Stack {uuid.uuid4().hex[:8]}"
    anonymous = httpx.post(
        f"{os.environ['STACK_GATEWAY_URL']}/api/movies",
        json={"title": title, "description": "x"},
        timeout=10,
    )
    assert anonymous.status_code == 401  # production: writes need a key

    created = gateway.post("/api/movies", json={"title": title, "description": "in a container"})
    assert created.status_code == 201, created.text
    movie = created.json()
    assert gateway.get(f"/api/movies/{movie['id']}").json() == movie
    found = gateway.get("/api/movies", params={"title": title})
    assert [m["id"] for m in found.json()] == [movie["id"]]

    updated = gateway.put(
        f"/api/movies/{movie['id']}", json={"title": title, "description": "updated"}
    )
    assert updated.status_code == 200
    assert updated.json()["description"] == "updated"
    assert gateway.post("/api/movies", json={"title": ""}).status_code == 422
    assert gateway.delete(f"/api/movies/{movie['id']}").status_code == 204
    missing = gateway.get(f"/api/movies/{movie['id']}")
    assert missing.status_code == 404
    assert "error" in missing.json()


def test_an_order_is_stored_and_looked_up(gateway):
    response = gateway.post(
        "/api/billing", json={"user_id": 7, "number_of_items": 2, "total_amount": "12.50"}
    )
    assert response.status_code == 200, response.text
    order_id = response.json()["order_id"]
    order = wait_until(
        lambda: (r := gateway.get(f"/api/billing/{order_id}")).status_code == 200 and r.json(),
        within=20,
        message="order stored",
    )
    assert (order["user_id"], order["number_of_items"], order["total_amount"]) == (7, 2, "12.50")
    assert gateway.post("/api/billing", json={"user_id": -1}).status_code == 422


def test_killed_billing_is_restarted_and_every_queued_order_is_stored_once(gateway):
    """Billing's process killed (SIGKILL) while orders keep coming: `restart: on-failure` brings
    it back, the orders queued meanwhile are consumed, and each accepted order is stored once."""
    url, key = os.environ["STACK_GATEWAY_URL"], os.environ["STACK_API_KEY"]
    accepted: list[tuple[float, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    def send(user_id: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            while not stop.is_set():
                order = {"user_id": user_id, "number_of_items": 1, "total_amount": "1.00"}
                response = client.post("/api/billing", json=order, timeout=10)
                if response.status_code == 200:
                    accepted.append((time.time(), response.json()["order_id"]))
                else:
                    failures.append(f"{response.status_code} {response.text}")

    before = container_state("billing")
    senders = [threading.Thread(target=send, args=(n + 1,)) for n in range(4)]
    for sender in senders:
        sender.start()
    try:
        wait_until(lambda: len(accepted) >= 200, 30, message="orders flowing before the kill")
        # SIGKILL to the container's process from the host: a crash (as the OOM killer would).
        # `docker kill` would not do: Docker takes it for a manual stop and does not restart.
        os.kill(before["State"]["Pid"], signal.SIGKILL)
        killed_at = time.time()
        restarted = wait_until(
            lambda: (
                (s := container_state("billing"))["RestartCount"] > before["RestartCount"]
                and s["State"]["Running"]
                and s
            ),
            within=60,
            message="billing restarted by its restart policy",
        )
        wait_until(lambda: gateway.get("/health").status_code == 200, 60, message="gateway healthy")
        flowing = len(accepted) + 100
        wait_until(lambda: len(accepted) >= flowing, 30, message="orders flowing after the restart")
    finally:
        stop.set()
        for sender in senders:
            sender.join(timeout=30)

    assert not failures, failures[:5]
    assert restarted["RestartCount"] == before["RestartCount"] + 1
    # Orders accepted between the kill and the new container's start waited in the queue.
    started_at = datetime.fromisoformat(restarted["State"]["StartedAt"][:26] + "+00:00")
    queued = [oid for at, oid in accepted if killed_at < at < started_at.timestamp()]
    print(
        f"\n{len(accepted)} orders accepted, {len(queued)} of them while billing was down;"
        f" restart count {restarted['RestartCount']}"
    )
    assert queued, "no order was accepted while billing was down"

    ids = [order_id for _, order_id in accepted]
    id_list = ",".join(f"'{uuid.UUID(order_id)}'" for order_id in ids)
    database = stack_setting("BILLING_DB_NAME")

    def all_stored() -> bool:
        count = psql(
            "billing-db", database, f"SELECT count(*) FROM orders WHERE order_id IN ({id_list})"
        )
        return int(count) == len(ids)

    wait_until(all_stored, 60, interval=1, message=f"all {len(ids)} accepted orders stored")
    duplicates = psql(
        "billing-db",
        database,
        f"SELECT count(*) - count(DISTINCT order_id) FROM orders WHERE order_id IN ({id_list})",
    )
    assert duplicates == "0"
    for order_id in (ids[0], *queued[:3], ids[-1]):
        assert gateway.get(f"/api/billing/{order_id}").status_code == 200
