"""Proto <-> JSON as the native API speaks it, derived from the message descriptors.

Proto3 JSON with the original snake_case field names and every field without presence printed
even at its default, except that enum values are the lower-case value name without the enum's
prefix (`RUN_STATUS_TIMED_OUT` -> `"timed_out"`). Parsing accepts those words, the full value
names and numbers.

Printing is compiled once per message type into one converter per field (the answer of every
REST call passes here): the output is json_format.MessageToDict's with those options, enum words
put in the same pass; well-known types (Timestamp, Struct, wrappers...) are printed by json_format.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

from services.common.errors import InvalidArgument

M = TypeVar("M", bound=Message)
EnumMapper = Callable[[EnumDescriptor, Any], Any]


PRINT_OPTIONS: dict[str, Any] = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True,
                                     use_integers_for_enums=True)
Convert = Callable[[Any], Any]


def to_json(message: Message) -> dict[str, Any]:
    return _printer(message.DESCRIPTOR)(message)


@cache
def _printer(descriptor: Descriptor) -> Convert:
    """The JSON object of a `descriptor` message: its set fields in field-number order (ListFields'), then
    each field without presence that is unset, at its default."""
    if is_well_known(descriptor):
        return _well_known(descriptor)
    converters: dict[str, Convert] = {}
    defaults: list[tuple[str, Callable[[], Any]]] = []

    def to_dict(message: Message) -> dict[str, Any]:
        if not converters and descriptor.fields:
            _compile(descriptor, converters, defaults)
        data: dict[str, Any] = {}
        for field, value in message.ListFields():
            if field.is_extension:
                return _fallback(message)
            data[field.name] = converters[field.name](value)
        for name, default in defaults:
            if name not in data:
                data[name] = default()
        return data

    return to_dict


def _compile(descriptor: Descriptor, converters: dict[str, Convert],
             defaults: list[tuple[str, Callable[[], Any]]]) -> None:
    """Fills the converters lazily (on first use), so that recursive message types compile."""
    for field in descriptor.fields:
        converters[field.name] = _field_converter(field)
        if field.has_presence:
            continue
        if is_map(field):
            defaults.append((field.name, dict))
        elif field.is_repeated:
            defaults.append((field.name, list))
        else:
            constant = _value_converter(field)(field.default_value)
            defaults.append((field.name, lambda constant=constant: constant))


def _field_converter(field: FieldDescriptor) -> Convert:
    if is_map(field):
        entry = field.message_type
        key = _map_key(entry.fields_by_name["key"])
        value = _value_converter(entry.fields_by_name["value"])
        return lambda mapping: {key(k): value(mapping[k]) for k in mapping}
    one = _value_converter(field)
    if field.is_repeated:
        return lambda values: [one(v) for v in values]
    return one


def _map_key(field: FieldDescriptor) -> Convert:
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return lambda key: "true" if key else "false"
    return str


_INT64 = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)


def _value_converter(field: FieldDescriptor) -> Convert:
    """One value of `field` (an element, for a repeated one), as json_format prints it."""
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_MESSAGE:
        return _printer(field.message_type)
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        if field.enum_type.file.name.startswith("google/protobuf/"):
            return _same
        words = {number: enum_word(field.enum_type, number) for number in field.enum_type.values_by_number}
        return lambda number: words.get(number, number)
    if kind == FieldDescriptor.CPPTYPE_STRING:
        return _base64 if field.type == FieldDescriptor.TYPE_BYTES else str
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return bool
    if kind in _INT64:
        return str
    if kind == FieldDescriptor.CPPTYPE_DOUBLE:
        return _double
    if kind == FieldDescriptor.CPPTYPE_FLOAT:
        return _float
    return _same


def _same(value: Any) -> Any:
    return value


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("utf-8")


def _double(value: float) -> Any:
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    return "NaN" if math.isnan(value) else value


def _float(value: float) -> Any:
    special = _double(value)
    return special if isinstance(special, str) else type_checkers.ToShortestFloat(value)


def _well_known(descriptor: Descriptor) -> Convert:
    if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return lambda message: message.ToJsonString()
    return lambda message: json_format.MessageToDict(message, **PRINT_OPTIONS)


def _fallback(message: Message) -> dict[str, Any]:
    """A message with extensions set: json_format's printing, enum words mapped after."""
    data = json_format.MessageToDict(message, **PRINT_OPTIONS)
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
