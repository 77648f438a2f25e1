"""JSON responses serialised by orjson (FastAPI's ORJSONResponse is deprecated upstream).

Subclassing Starlette's JSONResponse keeps FastAPI describing response models in OpenAPI.
"""

from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse


class JSONResponse(StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
