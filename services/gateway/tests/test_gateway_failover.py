"""Several INVENTORY_URLS: requests spread over them, and an instance killed under traffic
costs no GET."""

import asyncio
import signal
import sys
from collections import Counter

import httpx
import pytest

# A stand-in inventory as a process of its own, so that it can be SIGKILLed mid-traffic.
STANDIN = """
import sys
from aiohttp import web

async def movie(request):
    return web.json_response({"id": 1, "title": "t", "description": sys.argv[1]})

app = web.Application()
app.router.add_get("/{tail:.*}", movie)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


@pytest.fixture
async def two_inventories(tmp_path, unused_port, poll):
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)
    ports = [unused_port(), unused_port()]
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, str(script), str(port))
        for port in ports
    ]

    async def answering(port: int) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
        except httpx.TransportError:
            return False

    for port in ports:
        await poll(lambda port=port: answering(port), 15, f"stand-in inventory on {port}")
    yield [(str(port), process) for port, process in zip(ports, processes, strict=True)]
    for process in processes:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_killing_one_inventory_under_load_fails_no_get(gateway_factory, two_inventories):
    (victim_port, victim), (survivor_port, _) = two_inventories
    urls = ",".join(f"http://127.0.0.1:{port}" for port, _ in two_inventories)
    answered: list[tuple[int, str]] = []
    killed_at = 0

    async with gateway_factory(inventory_urls=urls) as gw:

        async def client(worker: int) -> None:
            nonlocal killed_at
            for n in range(50):  # 10 clients x 50 GETs, ~2 s in all
                response = await gw.client.get(f"/api/movies/{worker * 50 + n}")
                served_by = response.json()["description"] if response.status_code == 200 else ""
                answered.append((response.status_code, served_by))
                if len(answered) == 150 and not killed_at:
                    victim.send_signal(signal.SIGKILL)  # no goodbye: in-flight requests break
                    killed_at = len(answered)
                await asyncio.sleep(0.03)

        await asyncio.gather(*(client(w) for w in range(10)))
        await victim.wait()

    assert victim.returncode == -signal.SIGKILL
    assert len(answered) == 500
    assert Counter(status for status, _ in answered) == {200: 500}
    before = Counter(served_by for _, served_by in answered[:killed_at])
    after = Counter(served_by for _, served_by in answered[killed_at + 20 :])
    assert before[victim_port] > 30 and before[survivor_port] > 30  # both were in use
    assert set(after) == {survivor_port}  # then the survivor took everything
