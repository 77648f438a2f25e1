"""`make vagrant-smoke`, once the machine is ready (scripts/vagrant-smoke.sh): the three VMs of the
Vagrantfile brought up for real, the audit flow through the gateway port forwarded to 127.0.0.1,
billing-vm rebooted with `vagrant reload` (PM2 brings its app back through systemd), then
`vagrant destroy -f`, whatever happened. Run in a clone of the repository:
    python deploy/vagrant/smoke.py CLONE
Prints each step with its duration; exits non-zero on the first failure.
"""

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx

from polling import wait_until  # tests/e2e/polling.py (scripts/vagrant-smoke.sh)

GATEWAY = "http://127.0.0.1:8082"
ORDER = {"user_id": 1, "number_of_items": 2, "total_amount": "9.99"}
BOOT = 900  # seconds for a rebooted VM, emulated, to settle


class Vagrant:
    def __init__(self, clone: Path) -> None:
        self.clone = clone
        self.ssh_config = clone / ".vagrant" / "ssh-config"

    def run(self, *args: str, timeout: float = 3600) -> None:
        """A vagrant command, its output shown as it goes."""
        subprocess.run(["vagrant", *args], cwd=self.clone, check=True, timeout=timeout)

    def refresh_ssh(self) -> None:
        """One `vagrant ssh-config` for plain ssh afterwards (a `vagrant ssh` costs seconds)."""
        config = subprocess.run(
            ["vagrant", "ssh-config"], cwd=self.clone, check=True, capture_output=True, text=True
        ).stdout
        self.ssh_config.write_text(config)

    def on(self, vm: str, command: str, timeout: float = 120) -> str:
        """A command as root on a VM; its standard output."""
        done = subprocess.run(
            ["ssh", "-F", str(self.ssh_config), vm, f"sudo bash -c {shlex.quote(command)}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(f"{vm}: {command} exited {done.returncode}: {done.stderr}")
        return done.stdout


def step(title: str, started: float) -> None:
    print(f"\n=== {title}: ok ({time.monotonic() - started:.0f}s)", flush=True)


def stored(vms: Vagrant, order_id: str) -> int:
    query = shlex.quote(f"SELECT count(*) FROM orders WHERE order_id = '{order_id}'")
    return int(vms.on("billing-vm", f"sudo -i -u postgres psql -d orders -tAc {query}"))


def pm2_statuses(vms: Vagrant, vm: str, timeout: float = 120) -> dict[str, str]:
    listing = json.loads(vms.on(vm, "pm2 jlist", timeout).splitlines()[-1])
    return {app["name"]: app["pm2_env"]["status"] for app in listing}


def audit_flow(vms: Vagrant, gateway: httpx.Client) -> list[str]:
    created = gateway.post("/api/movies", json={"title": "Alien", "description": "In space"})
    assert created.status_code == 201, created.text
    movie = created.json()["id"]
    assert gateway.get(f"/api/movies/{movie}").json()["title"] == "Alien"
    changed = gateway.put(f"/api/movies/{movie}", json={"title": "Aliens", "description": ""})
    assert changed.status_code == 200, changed.text
    assert gateway.get("/api/movies", params={"title": "Aliens"}).json()[0]["id"] == movie
    assert gateway.delete(f"/api/movies/{movie}").status_code == 204
    assert gateway.get(f"/api/movies/{movie}").status_code == 404
    print("movies CRUD through 127.0.0.1:8082: 201, 200, 200, 204, 404")

    first = gateway.post("/api/billing", json=ORDER)
    assert first.status_code == 200, first.text
    first_id = first.json()["order_id"]
    wait_until(
        lambda: gateway.get(f"/api/billing/{first_id}").status_code == 200,
        60,
        interval=1,
        message="not stored",
    )
    assert stored(vms, first_id) == 1
    print(f"order {first_id}: 200, stored on billing-vm")

    vms.on("billing-vm", "pm2 stop billing_app")
    waiting = gateway.post("/api/billing", json=ORDER)
    assert waiting.status_code == 200, waiting.text
    waiting_id = waiting.json()["order_id"]

    def queued() -> bool:  # a quorum queue publishes its count every few seconds: poll
        listing = vms.on("billing-vm", "rabbitmqctl -q list_queues -p crud_master name messages")
        return re.search(r"^billing_queue\s+1$", listing, re.M) is not None

    wait_until(queued, 60, interval=1, message="the order is not waiting in billing_queue")
    assert stored(vms, waiting_id) == 0
    print(f"billing_app stopped: order {waiting_id} 200, waiting in billing_queue, not stored")
    vms.on("billing-vm", "pm2 start billing_app")
    wait_until(
        lambda: stored(vms, waiting_id) == 1, 120, interval=1, message="not stored after pm2 start"
    )
    print("billing_app started: the order is stored")

    psql_list = "sudo -i -u postgres psql -tAc 'SELECT datname FROM pg_database'"
    on_inventory = vms.on("inventory-vm", psql_list).split()
    on_billing = vms.on("billing-vm", psql_list).split()
    assert "movies" in on_inventory and "orders" not in on_inventory, on_inventory
    assert "orders" in on_billing and "movies" not in on_billing, on_billing
    print(f"psql: inventory-vm {sorted(on_inventory)}, billing-vm {sorted(on_billing)}")
    return [first_id, waiting_id]


def after_reload(vms: Vagrant, gateway: httpx.Client, orders: list[str]) -> None:
    assert vms.on("billing-vm", "systemctl is-enabled pm2-root", BOOT).strip() == "enabled"
    # Booting, the one emulated vCPU starts RabbitMQ, PostgreSQL, PM2 and billing_app at once: a
    # pm2 command then took over two minutes. Wait for the boot to finish (pm2-root.service, which
    # runs `pm2 resurrect`, included), then ask PM2.
    state = vms.on("billing-vm", "systemctl is-system-running --wait; true", BOOT).strip()
    print(f"billing-vm booted: systemd {state}")
    wait_until(
        lambda: pm2_statuses(vms, "billing-vm", BOOT).get("billing_app") == "online",
        BOOT,
        interval=1,
        message="billing_app not online after the reboot",
    )
    uptime = vms.on("billing-vm", "cat /proc/uptime").split()[0]
    print(f"billing-vm up {uptime}s: pm2-root.service enabled, billing_app online")
    for order_id in orders:
        assert stored(vms, order_id) == 1, order_id
    # The gateway finds the broker again by itself; billing stores the new order.
    again = wait_until(
        lambda: (r := gateway.post("/api/billing", json=ORDER)).status_code == 200 and r,
        BOOT,
        interval=1,
        message="orders refused after the reboot",
    )
    order_id = again.json()["order_id"]
    wait_until(
        lambda: gateway.get(f"/api/billing/{order_id}").status_code == 200,
        BOOT,
        interval=1,
        message="lost",
    )
    print(f"order {order_id} after the reboot: 200, stored; the earlier orders kept")


def main(clone: Path) -> None:
    vms = Vagrant(clone)
    total = time.monotonic()
    try:
        started = time.monotonic()
        # One VM after the other, in the Vagrantfile's order: inventory-vm and billing-vm first
        # (the gateway's /health needs them). Side by side, `vagrant up` hung here defining the
        # second domain (vagrant-libvirt 0.11.2).
        vms.run("up", "--no-parallel")
        vms.refresh_ssh()
        step("vagrant up (three VMs provisioned by scripts/vagrant.sh)", started)

        with httpx.Client(base_url=GATEWAY, timeout=30) as gateway:
            started = time.monotonic()
            assert gateway.get("/health").status_code == 200
            for vm, app in (
                ("gateway-vm", "api_gateway"),
                ("inventory-vm", "inventory_app"),
                ("billing-vm", "billing_app"),
            ):
                assert pm2_statuses(vms, vm) == {app: "online"}, vm
            orders = audit_flow(vms, gateway)
            step("audit flow through the forwarded gateway port", started)

            started = time.monotonic()
            vms.run("reload", "billing-vm")
            vms.refresh_ssh()
            after_reload(vms, gateway, orders)
            step("vagrant reload billing-vm: PM2 back through systemd", started)
    finally:
        started = time.monotonic()
        vms.run("destroy", "-f")
        step("vagrant destroy -f", started)
    print(f"\nvagrant smoke passed in {time.monotonic() - total:.0f}s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
