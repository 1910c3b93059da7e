"""google.protobuf.Struct values as JSON has them: a Struct keeps every number as a double, and a whole
one within a double's exact range comes back as an integer (`5`, not `5.0`), as a client sent it."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message


def struct_json(message: Message) -> Any:
    """A Struct, Value or ListValue as plain JSON (whole numbers as integers)."""
    return plain_numbers(json_format.MessageToDict(message))


def plain_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_numbers(item) for item in value]
    return value
