"""Strings a client may send: no control characters, no lone surrogates.

Postgres cannot store NUL (U+0000) in text and asyncpg cannot encode a lone surrogate; either one
used to reach the database and come back as a 500. Every string field and path/query parameter a
request carries is one of these types, so such input is a 422 with the field named.
"""

import unicodedata
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, SecretStr, StringConstraints

# Categories refused: Cc (C0, DEL, C1 controls), Cs (lone surrogates).
_REFUSED = frozenset({"Cc", "Cs"})


def _refusing(allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        for index, char in enumerate(value):
            if char not in allowed and unicodedata.category(char) in _REFUSED:
                raise ValueError(f"contains the control character U+{ord(char):04X} at position {index}")
        return value

    return check


_multiline = _refusing("\t\n\r")
_single_line = _refusing("")


def _secret(value: SecretStr) -> SecretStr:
    _multiline(value.get_secret_value())  # the message names the position, never the secret
    return value


# Markers to put *after* a type's own constraints: `Annotated[str, StringConstraints(...), SingleLine]`;
# constraints placed after a validator still apply but vanish from the JSON schema.
Multiline = AfterValidator(_multiline)
SingleLine = AfterValidator(_single_line)

# Free text (descriptions, environment values, arguments): tab and line breaks allowed.
Text = Annotated[str, Multiline]
# One line: names, URLs, identifiers — no control character at all.
Line = Annotated[str, SingleLine]
Email = Annotated[
    str, StringConstraints(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$"), SingleLine
]
Secret = Annotated[SecretStr, AfterValidator(_secret)]
