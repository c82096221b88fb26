"""JSON responses rendered with orjson (numpy-free: callers pass plain Python values)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """A JSON response serialised by orjson (several times faster than the stdlib)."""

    def render(self, content: Any) -> bytes:
        """Serialise ``content``; NaN and infinity become ``null`` as orjson does."""
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
