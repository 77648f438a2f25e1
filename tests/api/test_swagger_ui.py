"""Swagger UI at /docs renders the gateway's document in a real browser (headless Chromium),
offline: its assets come from the gateway, never from a CDN."""

import re
import shutil
import subprocess

import pytest

OPERATIONS = [
    ("GET", "/api/movies"),
    ("POST", "/api/movies"),
    ("DELETE", "/api/movies"),
    ("GET", "/api/movies/{id}"),
    ("PUT", "/api/movies/{id}"),
    ("DELETE", "/api/movies/{id}"),
    ("POST", "/api/billing"),
    ("GET", "/api/billing/{order_id}"),
    ("GET", "/health"),
]


def render(url: str, profile) -> str:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: `bash scripts/api-tools.sh` installs it"
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "--virtual-time-budget=8000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, f"chromium exited with {result.returncode}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def docs_dom(gateway_url, tmp_path_factory) -> str:
    return render(f"{gateway_url}/docs", tmp_path_factory.mktemp("chromium-profile"))


def test_swagger_ui_renders_the_document(docs_dom):
    assert 'class="swagger-ui' in docs_dom, docs_dom[:2000]
    assert "crud-master gateway" in docs_dom, docs_dom[:2000]
    for failure in ("Unable to render", "Failed to load", "Fetch error", "Could not render"):
        assert failure not in docs_dom, f"Swagger UI says {failure!r}"


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_is_listed(docs_dom, method, path):
    # Each operation is an `opblock` whose summary holds the method, then the path.
    summary = re.compile(
        rf'opblock-summary-method">{method}</span>.{{0,600}}?data-path="{re.escape(path)}"',
        re.DOTALL,
    )
    assert summary.search(docs_dom), f"{method} {path} is not rendered by Swagger UI"
