"""Input a careless client or an attacker sends, shared by every service's hostile-input tests."""

import base64
import json
from typing import Any


def cursor(value: Any) -> str:
    """A pagination cursor as this API encodes one, around any JSON value."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# Each decodes to something no list issued: wrong types, wrong arity, not a list, not base64.
CRAFTED_CURSORS = [
    cursor([{}]),
    cursor([]),
    cursor([1, 2, 3]),
    cursor(["a\u0000"]),
    cursor({"a": 1}),
    "!!!not-base64",
]
