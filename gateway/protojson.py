"""Proto <-> JSON as the native API speaks it, derived from the message descriptors.

Proto3 JSON with the original snake_case field names and every field without presence printed
even at its default, except that enum values are the lower-case value name without the enum's
prefix (`RUN_STATUS_TIMED_OUT` -> `"timed_out"`). Parsing accepts those words, the full value
names and numbers.

Printing is compiled once per message type into one converter per field (the answer of every
REST call passes here): the output is json_format.MessageToDict's with those options, enum words
put in the same pass; well-known types (Timestamp, Struct, wrappers...) are printed by json_format
(a Struct's whole numbers as integers).
"""

from __future__ import annotations

import base64
import functools
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

from services.common.errors import InvalidArgument
from services.common.structs import struct_json

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
    if descriptor.full_name in _STRUCT_TYPES:
        return struct_json
    return lambda message: json_format.MessageToDict(message, **PRINT_OPTIONS)


_STRUCT_TYPES = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})


def _fallback(message: Message) -> dict[str, Any]:
    """A message with extensions set: json_format's printing, enum words mapped after."""
    data = json_format.MessageToDict(message, **PRINT_OPTIONS)
    _map_enums(data, message.DESCRIPTOR, enum_word)
    return data


def from_json(data: Any, message_class: type[M]) -> M:
    """Parses JSON (already decoded) into a new message; refuses unknown fields and bad values.

    Plain JSON (see `_reader`) is read by compiled per-type readers; anything else, errors included, by
    json_format.ParseDict, the reference both give the same message as."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"expected a JSON object for {message_class.DESCRIPTOR.name}")
    try:
        _map_enums(data, message_class.DESCRIPTOR, enum_number)
        message = message_class()
        try:
            if _reader(message_class.DESCRIPTOR)(data, message, 1):
                return message
        except Exception:  # noqa: BLE001 - whatever it is, ParseDict says how it goes
            pass
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


# -- JSON -> message, the common case fast ----------------------------------------------------------
#
# A reader sets a message's fields from JSON and answers True, or answers False (the message half set,
# to be thrown away) as soon as the JSON holds anything it leaves to ParseDict: an unknown or repeated
# key, a null, a value not of the field's plain JSON type (a number as a string, a float for an
# integer...), bytes, floats, enums, oneofs, wrappers and the other well-known types but Timestamp and
# Struct, unpaired surrogates, nesting deeper than MAX_FAST_DEPTH (ParseDict has its own limit). What it
# accepts it sets exactly as ParseDict does.

Reader = Callable[[Any, Message, int], bool]
MAX_FAST_DEPTH = 32  # messages and Struct/list levels; ParseDict refuses 100
_SURROGATE = re.compile("[\ud800-\udfff]")
_SCALAR_TYPES = {FieldDescriptor.CPPTYPE_INT32: int, FieldDescriptor.CPPTYPE_INT64: int,
                 FieldDescriptor.CPPTYPE_UINT32: int, FieldDescriptor.CPPTYPE_UINT64: int,
                 FieldDescriptor.CPPTYPE_BOOL: bool, FieldDescriptor.CPPTYPE_STRING: str}


def _never(data: Any, message: Message, depth: int) -> bool:
    return False


@cache
def _reader(descriptor: Descriptor) -> Reader:
    """The reader of a (non well-known) message type's JSON object."""
    if is_well_known(descriptor) or any(len(oneof.fields) > 1 for oneof in descriptor.oneofs):
        return _never
    setters: dict[str, Callable[[Message, Any, int], bool]] = {}
    aliased: dict[str, str] = {}  # JSON key -> field name, for fields with two spellings

    def compile_fields() -> None:
        for field in descriptor.fields:
            setter = _setter(field)
            setters[field.name] = setters[field.json_name] = setter
            if field.json_name != field.name:
                aliased[field.name] = aliased[field.json_name] = field.name

    def read(data: Any, message: Message, depth: int) -> bool:
        if type(data) is not dict or depth > MAX_FAST_DEPTH:
            return False
        if not setters and descriptor.fields:
            compile_fields()  # on first use, so that recursive types compile
        seen = None
        for key, value in data.items():
            setter = setters.get(key)
            if setter is None or value is None:
                return False
            if key in aliased:  # both spellings of one field: ParseDict's to decide
                seen = seen or set()
                if aliased[key] in seen:
                    return False
                seen.add(aliased[key])
            if not setter(message, value, depth):
                return False
        return True

    return read


def _setter(field: FieldDescriptor) -> Callable[[Message, Any, int], bool]:
    name = field.name
    if is_map(field):
        key_type = _SCALAR_TYPES.get(field.message_type.fields_by_name["key"].cpp_type)
        value_type = _SCALAR_TYPES.get(field.message_type.fields_by_name["value"].cpp_type)
        if key_type is not str or value_type is not str:
            return lambda message, value, depth: False

        def set_map(message: Message, value: Any, depth: int) -> bool:
            if type(value) is not dict:
                return False
            for k, v in value.items():
                if type(v) is not str or _SURROGATE.search(k) or _SURROGATE.search(v):
                    return False
            getattr(message, name).update(value)
            return True

        return set_map
    if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        kind = field.message_type.full_name
        if kind == "google.protobuf.Timestamp":
            one = _set_timestamp
        elif kind == "google.protobuf.Struct":
            one = _set_struct
        elif is_well_known(field.message_type):
            return lambda message, value, depth: False
        else:
            read = _reader(field.message_type)

            def one(sub: Message, value: Any, depth: int) -> bool:
                return read(value, sub, depth + 1)

        if field.is_repeated:
            def set_messages(message: Message, value: Any, depth: int) -> bool:
                if type(value) is not list:
                    return False
                repeated = getattr(message, name)
                for item in value:
                    if not one(repeated.add(), item, depth):
                        return False
                return True

            return set_messages

        def set_message(message: Message, value: Any, depth: int) -> bool:
            sub = getattr(message, name)
            sub.SetInParent()
            return one(sub, value, depth)

        return set_message
    plain = _SCALAR_TYPES.get(field.cpp_type)
    if plain is None or field.type == FieldDescriptor.TYPE_BYTES:
        return lambda message, value, depth: False
    check = (lambda value: not _SURROGATE.search(value)) if plain is str else (lambda value: True)
    if field.is_repeated:
        def set_scalars(message: Message, value: Any, depth: int) -> bool:
            if type(value) is not list or any(type(v) is not plain or not check(v) for v in value):
                return False
            getattr(message, name).extend(value)
            return True

        return set_scalars

    def set_scalar(message: Message, value: Any, depth: int) -> bool:
        if type(value) is not plain or not check(value):
            return False
        setattr(message, name, value)  # out of range: ValueError, and ParseDict tells
        return True

    return set_scalar


def _set_timestamp(message: Message, value: Any, depth: int) -> bool:
    if type(value) is not str:
        return False
    message.seconds, message.nanos = _timestamp(value)
    return True


@functools.lru_cache(maxsize=1024)
def _timestamp(text: str) -> tuple[int, int]:
    """An RFC 3339 time as Timestamp.FromJsonString reads it (a bulk call's items often share one)."""
    parsed = timestamp_pb2.Timestamp()
    parsed.FromJsonString(text)
    return parsed.seconds, parsed.nanos


def _set_struct(message: Message, value: Any, depth: int) -> bool:
    if type(value) is not dict:
        return False
    message.Clear()
    fields = message.fields
    for key, item in value.items():
        if _SURROGATE.search(key) or not _set_value(fields[key], item, depth + 2):
            return False
    return True


def _set_value(message: Message, value: Any, depth: int) -> bool:
    """A google.protobuf.Value, as ParseDict's _ConvertValueMessage sets it."""
    kind = type(value)
    if kind is str:
        if _SURROGATE.search(value):
            return False
        message.string_value = value
    elif kind is bool:
        message.bool_value = value
    elif kind is int or kind is float:
        message.number_value = value
    elif value is None:
        message.null_value = 0
    elif depth > MAX_FAST_DEPTH:
        return False
    elif kind is dict:
        return _set_struct(message.struct_value, value, depth)
    elif kind is list:
        values = message.list_value
        values.ClearField("values")
        for item in value:
            if not _set_value(values.values.add(), item, depth + 2):
                return False
    else:
        return False
    return True
