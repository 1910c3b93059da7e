"""Proto <-> JSON as the native API speaks it, derived from the message descriptors.

Proto3 JSON with the original snake_case field names and every field without presence printed
even at its default, except that enum values are the lower-case value name without the enum's
prefix (`RUN_STATUS_TIMED_OUT` -> `"timed_out"`). Parsing accepts those words, the full value
names and numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from services.common.errors import InvalidArgument

M = TypeVar("M", bound=Message)
EnumMapper = Callable[[EnumDescriptor, Any], Any]


def to_json(message: Message) -> dict[str, Any]:
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        use_integers_for_enums=True,
    )
    _map_enums(data, message.DESCRIPTOR, enum_word)
    return data


def from_json(data: Any, message_class: type[M]) -> M:
    """Parses JSON (already decoded) into a new message; refuses unknown fields and bad values."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"expected a JSON object for {message_class.DESCRIPTOR.name}")
    try:
        _map_enums(data, message_class.DESCRIPTOR, enum_number)
        return json_format.ParseDict(data, message_class())
    except json_format.ParseError as error:
        raise InvalidArgument(str(error).split("\n")[0].removesuffix(".")) from None
    except (TypeError, ValueError, AttributeError, RecursionError):  # shapes json_format does not anticipate
        raise InvalidArgument(f"invalid JSON for {message_class.DESCRIPTOR.name}") from None


def enum_word(enum: EnumDescriptor, number: Any) -> Any:
    """`RUN_STATUS_TIMED_OUT` (by number) -> `"timed_out"`; unknown numbers stay numbers."""
    value = enum.values_by_number.get(number) if isinstance(number, int) else None
    if value is None:
        return number
    return value.name.removeprefix(enum_prefix(enum)).lower()


def enum_number(enum: EnumDescriptor, word: Any) -> Any:
    """`"timed_out"`, `"TIMED_OUT"` or `"RUN_STATUS_TIMED_OUT"` -> its number; anything else unchanged."""
    if not isinstance(word, str):
        return word
    name = word.upper()
    value = enum.values_by_name.get(name) or enum.values_by_name.get(enum_prefix(enum) + name)
    return word if value is None else value.number


@cache
def enum_prefix(enum: EnumDescriptor) -> str:
    """Buf-style value prefix: `RunStatus` -> `RUN_STATUS_`."""
    snake = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", enum.name)
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", snake)
    return snake.upper() + "_"


def is_well_known(descriptor: Descriptor) -> bool:
    """Messages with their own JSON form (Struct, Timestamp, FieldMask, wrappers...)."""
    return descriptor.file.name.startswith("google/protobuf/")


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@cache
def fields_by_key(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """A message's fields by proto name and by JSON (lowerCamel) name."""
    fields = {field.json_name: field for field in descriptor.fields}
    fields.update({field.name: field for field in descriptor.fields})
    return fields


def _map_enums(data: Any, descriptor: Descriptor, mapper: EnumMapper) -> None:
    """Rewrites, in place, every enum value found in `data` (JSON of a `descriptor` message)."""
    if not isinstance(data, dict) or is_well_known(descriptor):
        return
    fields = fields_by_key(descriptor)
    for key, value in data.items():
        field = fields.get(key)
        if field is not None:
            data[key] = _map_field(field, value, mapper)


def _map_field(field: FieldDescriptor, value: Any, mapper: EnumMapper) -> Any:
    if is_map(field):
        entry = field.message_type.fields_by_name["value"]
        return {k: _map_single(entry, v, mapper) for k, v in value.items()} if isinstance(value, dict) else value
    if field.is_repeated:
        return [_map_single(field, item, mapper) for item in value] if isinstance(value, list) else value
    return _map_single(field, value, mapper)


def _map_single(field: FieldDescriptor, value: Any, mapper: EnumMapper) -> Any:
    if field.enum_type is not None:
        return value if field.enum_type.file.name.startswith("google/protobuf/") else mapper(field.enum_type, value)
    if field.message_type is not None:
        _map_enums(value, field.message_type, mapper)
    return value
