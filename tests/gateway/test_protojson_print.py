"""The compiled printer prints exactly what json_format.MessageToDict (with the native API's options) and the
enum words made of it print: for every message of the API, at its defaults and filled at random."""

from __future__ import annotations

import json
import random

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from gateway import protojson
from jobline.auth.v1 import auth_pb2
from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import agent_pb2, runs_pb2
from services.common.structs import plain_numbers


def _messages() -> list[Descriptor]:
    found: dict[str, Descriptor] = {}

    def walk(descriptor: Descriptor) -> None:
        if descriptor.full_name in found or descriptor.GetOptions().map_entry:
            return
        found[descriptor.full_name] = descriptor
        for nested in descriptor.nested_types:
            walk(nested)
        for field in descriptor.fields:
            if field.message_type is not None and not protojson.is_well_known(field.message_type):
                walk(field.message_type)

    for module in (auth_pb2, devices_pb2, jobs_pb2, runs_pb2, agent_pb2):
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            walk(descriptor)
    return sorted(found.values(), key=lambda d: d.full_name)


MESSAGES = _messages()


def reference(message: Message) -> dict:
    data = json_format.MessageToDict(message, **protojson.PRINT_OPTIONS)
    protojson._map_enums(data, message.DESCRIPTOR, protojson.enum_word)
    _plain_structs(data, message.DESCRIPTOR)
    return data


STRUCTS = ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue")


def _plain_structs(data: dict, descriptor: Descriptor) -> None:
    """The one intended difference: a Struct's whole numbers print as integers (plain_numbers)."""
    for field in descriptor.fields:
        if field.name not in data or field.message_type is None:
            continue
        value = data[field.name]
        if protojson.is_map(field):
            value_type = field.message_type.fields_by_name["value"].message_type
            items = list(value.items()) if value_type is not None else []
            for key, item in items:
                if value_type.full_name in STRUCTS:
                    value[key] = plain_numbers(item)
                elif not protojson.is_well_known(value_type):
                    _plain_structs(item, value_type)
        elif field.message_type.full_name in STRUCTS:
            data[field.name] = plain_numbers(value)
        elif not protojson.is_well_known(field.message_type):
            for item in value if field.is_repeated else [value]:
                _plain_structs(item, field.message_type)


def fill(message: Message, rng: random.Random, depth: int = 0) -> Message:
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.35 or (field.message_type is not None and depth > 3):
            continue
        if protojson.is_map(field):
            entry = field.message_type
            for _ in range(rng.randint(0, 3)):
                key = _scalar(entry.fields_by_name["key"], rng)
                value_field = entry.fields_by_name["value"]
                if value_field.message_type is not None:
                    fill(getattr(message, field.name)[key], rng, depth + 1)
                else:
                    getattr(message, field.name)[key] = _scalar(value_field, rng)
        elif field.is_repeated:
            for _ in range(rng.randint(0, 3)):
                if field.message_type is not None:
                    _fill_message(getattr(message, field.name).add(), rng, depth)
                else:
                    getattr(message, field.name).append(_scalar(field, rng))
        elif field.message_type is not None:
            _fill_message(getattr(message, field.name), rng, depth)
        else:
            setattr(message, field.name, _scalar(field, rng))
    return message


def _fill_message(message: Message, rng: random.Random, depth: int) -> None:
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        message.FromSeconds(rng.randint(0, 4_000_000_000))
        message.nanos = rng.choice([0, 5_000_000, 123_456_789])
    elif name == "google.protobuf.Duration":
        message.FromMilliseconds(rng.randint(0, 10**7))
    elif name == "google.protobuf.Struct":
        message.update({"a": 1, "b": [True, None, "x"], "c": {"d": 1.5}})
    elif name == "google.protobuf.FieldMask":
        message.paths.extend(["a_b", "c"])
    elif name.startswith("google.protobuf.") and "value" in message.DESCRIPTOR.fields_by_name:
        setattr(message, "value", _scalar(message.DESCRIPTOR.fields_by_name["value"], rng))
    elif not name.startswith("google.protobuf."):
        fill(message, rng, depth + 1)
        message.SetInParent()


def _scalar(field: FieldDescriptor, rng: random.Random):
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        numbers = list(field.enum_type.values_by_number)
        return rng.choice(numbers + ([max(numbers) + 7] if not field.enum_type.is_closed else []))
    if kind == FieldDescriptor.CPPTYPE_STRING:
        return rng.choice([b"\x00\xffbytes", b""]) if field.type == FieldDescriptor.TYPE_BYTES else \
            rng.choice(["", "plain", "ünïcode ✓", "12"])
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return rng.random() < 0.5
    if kind in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return rng.choice([0.0, 1.5, -2.25, 0.1, float("inf"), float("-inf"), float("nan"), 3e38])
    if kind in (FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64):
        return rng.choice([0, 1, 2**31, 2**32 - 1])
    return rng.choice([0, -1, 7, 2**31 - 1, -(2**31)])


def _text(data) -> str:  # key order included
    return json.dumps(data, ensure_ascii=False)


@pytest.mark.parametrize("descriptor", MESSAGES, ids=lambda d: d.full_name)
def test_the_printer_prints_what_json_format_prints(descriptor: Descriptor) -> None:
    message_class = GetMessageClass(descriptor)
    rng = random.Random(descriptor.full_name)
    for message in [message_class(), *(fill(message_class(), rng) for _ in range(12))]:
        assert _text(protojson.to_json(message)) == _text(reference(message))


def test_a_structs_whole_numbers_print_as_integers() -> None:
    event = runs_pb2.RunEvent(id="e")
    event.data.update({"attempt": 1, "ratio": 1.5, "nested": {"n": [2, 2.5]}, "huge": 2.0**60, "zero": 0})
    printed = json.dumps(protojson.to_json(event)["data"], sort_keys=True)
    assert printed == ('{"attempt": 1, "huge": 1.152921504606847e+18, "nested": {"n": [2, 2.5]}, '
                       '"ratio": 1.5, "zero": 0}')
