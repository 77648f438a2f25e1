from pathlib import Path

from gateway.openapi import document

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_the_committed_openapi_document_matches_the_code():
    assert COMMITTED.read_text() == document(), "docs/openapi.json is stale: run `make openapi`"
