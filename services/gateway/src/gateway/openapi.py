"""The gateway's OpenAPI document as committed in docs/openapi.json (`make openapi` rewrites it;
a test fails when the file and the code drift apart)."""

import json

from .app import create_app


def document() -> str:
    return json.dumps(create_app().app.openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(document(), end="")
