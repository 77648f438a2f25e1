"""The Postman collection of docs/postman, run by newman against the test platform."""

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from platform_processes import ROOT
from polling import wait_until

POSTMAN = ROOT / "docs" / "postman"
COLLECTION = POSTMAN / "crud-master.postman_collection.json"
ENVIRONMENT = POSTMAN / "crud-master.postman_environment.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def newman(gateway_url: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("newman")
    assert executable, "newman is not installed: `bash scripts/api-tools.sh` installs it"
    return subprocess.run(
        [
            executable,
            "run",
            COLLECTION,
            "-e",
            ENVIRONMENT,
            "--env-var",
            f"baseUrl={gateway_url}",
            "--color",
            "off",
            "--disable-unicode",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"newman exited with {result.returncode}:\n{ANSI.sub('', result.stdout + result.stderr)}"


def walk(items):
    for item in items:
        if "item" in item:
            yield from walk(item["item"])
        else:
            yield item


def test_collection_shape():
    collection = json.loads(COLLECTION.read_text())
    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")
    folders = {item["name"] for item in collection["item"]}
    assert {"Movies", "Search and pagination", "Movie errors", "Billing", "Resilience"} <= folders
    requests = list(walk(collection["item"]))
    assert len(requests) >= 40
    for request in requests:
        tests = [e for e in request.get("event", []) if e["listen"] == "test"]
        assert tests, f"{request['name']} has no test script"
        assert "pm.test(" in "\n".join(tests[0]["script"]["exec"]), request["name"]
        assert request["request"]["url"]["raw"].startswith("{{baseUrl}}"), request["name"]
    methods = {(r["request"]["method"], r["request"]["url"]["raw"].split("?")[0]) for r in requests}
    for method, path in [
        ("GET", "/api/movies"),
        ("POST", "/api/movies"),
        ("DELETE", "/api/movies"),
        ("GET", "/api/movies/{{movieId}}"),
        ("PUT", "/api/movies/{{movieId}}"),
        ("DELETE", "/api/movies/{{movieId}}"),
        ("POST", "/api/billing"),
        ("GET", "/api/billing/{{orderId}}"),
        ("GET", "/health"),
    ]:
        assert (method, "{{baseUrl}}" + path) in methods, f"no {method} {path} in the collection"
    environment = json.loads(ENVIRONMENT.read_text())
    assert {v["key"]: v["value"] for v in environment["values"]} == {
        "baseUrl": "http://localhost:8082"
    }


@pytest.mark.usefixtures("orders_settle")
def test_collection_passes_twice_in_a_row(gateway_url, tmp_path):
    """Every folder, run twice: the collection cleans up after itself and can be re-run."""
    for run in (1, 2):
        junit = tmp_path / f"newman-{run}.xml"
        result = newman(gateway_url, "-r", "cli,junit", "--reporter-junit-export", junit)
        assert result.returncode == 0, explain(result)
        assert "AssertionError" not in result.stdout, explain(result)


@pytest.mark.usefixtures("orders_settle")
def test_resilience_folder_with_billing_stopped(platform, gateway_url):
    """The folder's documented flow: billing stopped, the order is still accepted (200) and its
    lookup is 503; once billing is back it drains the queue and the order is there."""
    platform.stop("billing")
    try:
        result = newman(gateway_url, "--folder", "Resilience")
        assert result.returncode == 0, explain(result)
        lookup = re.search(
            r"GET \S+/api/billing/([0-9a-f-]{36}) \[503 Service Unavailable", result.stdout
        )
        assert lookup, "the lookup was not 503 while billing was stopped\n" + explain(result)
    finally:
        platform.start("billing")
    order_id = str(uuid.UUID(lookup.group(1)))

    def stored() -> dict | None:
        response = httpx.get(f"{gateway_url}/api/billing/{order_id}", timeout=5)
        return response.json() if response.status_code == 200 else None

    order = wait_until(
        stored, 15, interval=0.2, message="order queued while billing was down stored"
    )
    assert (order["user_id"], order["number_of_items"], order["total_amount"]) == (42, 1, "9.99")
