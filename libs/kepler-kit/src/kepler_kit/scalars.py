"""Booleans and integers a request body must send as JSON booleans and integers.

FastAPI validates the decoded body in pydantic's python mode, whose lax mode reads `"yes"`, `"1"` and `1` as
`true` and `"3"`, `3.0` and `true` as `3`: a client's mistake (or an attacker's `"is_admin": "yes"`) would be
acted on instead of refused. Strict per type, not per model: a strict model would also refuse the strings that
are the only way JSON can send a UUID, an enum member or a date. Path and query parameters arrive as text and
keep plain `int`/`bool`; response models are not validated from client input and keep them too.
"""

from typing import Annotated

from pydantic import Strict

# Only `true` and `false`.
JsonBool = Annotated[bool, Strict()]
# Only a JSON integer: not a string of digits, not `3.0`, not `true` (a Python bool is an int).
JsonInt = Annotated[int, Strict()]
