"""No drift between the gateway and its OpenAPI document.

schemathesis (CLI, v4) reads the running test gateway's /openapi.json and generates requests for
every documented operation, valid and invalid (`--mode all`), through all four phases: the
document's examples, boundary coverage, random fuzzing and stateful chains built from the
document's links (create a movie then read/replace/delete it; post an order then look it up).
Each response must pass:
  not_a_server_error            no 5xx for any generated input
  status_code_conformance       no undocumented status code
  content_type_conformance      the documented media type
  response_schema_conformance   the body matches the documented schema
  response_headers_conformance  documented headers (X-Total-Count, Link, Location) match

Bounded and reproducible: 25 examples per operation, a fixed seed, one worker (~10-20 s here).
Nothing is excluded: every operation of the document is exercised, `DELETE /api/movies`
included (the movies table is reset before the run anyway).

The generated run reaches the success paths that need existing data (a stored order, a page
with a `Link`) only by chance, so `test_success_paths_conform_to_the_document` walks them on
purpose with schemathesis' Python API and the same checks.

The generated run uses the CLI rather than `@schema.parametrize()`: with pytest 9.2 (locked),
`schemathesis.pytest.from_fixture` fails with `AttributeError: 'Function' object has no
attribute '_nodeid'` (schemathesis 4.32.5), and `schemathesis.openapi.from_url` at import time
cannot work because the gateway only starts in a fixture.
"""

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from polling import wait_until

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.usefixtures("orders_settle")
def test_gateway_conforms_to_its_openapi_document(gateway_url, tmp_path):
    # Movies data reset: the run starts from an empty table.
    assert httpx.delete(f"{gateway_url}/api/movies", timeout=10).status_code == 204
    st = Path(sys.executable).parent / "st"
    # No --max-time: it is a budget that fuzzing and stateful runs *use up*, not a cap.
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{gateway_url}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--mode",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "15",
            "--report",
            "junit",
            "--report-junit-path",
            str(tmp_path / "schemathesis.xml"),
        ],
        cwd=tmp_path,  # keeps schemathesis' own files out of the work tree
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, f"schemathesis exited with {result.returncode}:\n{output}"
    assert "9 selected / 9 total" in output, output


CHECK_FUNCTIONS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.mark.usefixtures("orders_settle")
def test_success_paths_conform_to_the_document(gateway_url):
    assert httpx.delete(f"{gateway_url}/api/movies", timeout=10).status_code == 204
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    movies, movie = schema["/api/movies"], schema["/api/movies/{id}"]
    orders, order = schema["/api/billing"], schema["/api/billing/{order_id}"]

    def call(operation, **parts):
        return operation.Case(**parts).call_and_validate(
            base_url=gateway_url, checks=CHECK_FUNCTIONS
        )

    created = [
        call(movies["POST"], body={"title": f"Movie {n}", "description": "d"}).json()
        for n in range(3)
    ]
    page = call(movies["GET"], query={"limit": 2})
    assert page.headers["x-total-count"] == ["3"] and "link" in page.headers
    call(movies["GET"], query={"title": "movie 1"})
    movie_id = {"id": created[0]["id"]}
    call(movie["GET"], path_parameters=movie_id)
    call(movie["PUT"], path_parameters=movie_id, body={"title": "Renamed", "description": ""})
    call(movie["DELETE"], path_parameters=movie_id)
    assert call(movie["GET"], path_parameters=movie_id).status_code == 404
    call(movies["DELETE"])

    body = {"user_id": 7, "number_of_items": 2, "total_amount": "20.50"}
    order_id = call(orders["POST"], body=body).json()["order_id"]
    lookup = order["GET"].Case(path_parameters={"order_id": order_id})

    def stored():
        response = lookup.call(base_url=gateway_url)
        return response if response.status_code == 200 else None

    response = wait_until(stored, 15, interval=0.2, message="order stored by billing")
    lookup.validate_response(response, checks=CHECK_FUNCTIONS)
