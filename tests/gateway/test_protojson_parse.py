"""from_json reads plain JSON with compiled readers: it must answer exactly what json_format.ParseDict
answers (the same message, or the same refusal), for every request message of the API."""

from __future__ import annotations

import copy
import json
import random

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from gateway import protojson
from gateway.native import SERVICES
from jobline.runs.v1 import runs_pb2
from services.common.errors import InvalidArgument

REQUESTS = sorted({method.input_type.full_name: method.input_type for service, _ in SERVICES
                   for method in service.methods}.items())


def reference(data, message_class):
    """What from_json answered before its readers: _map_enums, then ParseDict."""
    data = copy.deepcopy(data)
    try:
        if not isinstance(data, dict):
            raise InvalidArgument(f"expected a JSON object for {message_class.DESCRIPTOR.name}")
        protojson._map_enums(data, message_class.DESCRIPTOR, protojson.enum_number)
        return json_format.ParseDict(data, message_class())
    except json_format.ParseError as error:
        return InvalidArgument(str(error).split("\n")[0].removesuffix("."))
    except (TypeError, ValueError, AttributeError, RecursionError):
        return InvalidArgument(f"invalid JSON for {message_class.DESCRIPTOR.name}")
    except InvalidArgument as error:
        return error
    except Exception as error:  # noqa: BLE001 - what escaped before escapes the same way
        return error


def parsed(data, message_class):
    try:
        return protojson.from_json(copy.deepcopy(data), message_class)
    except Exception as error:  # noqa: BLE001
        return error


def same(data, message_class) -> None:
    want, got = reference(data, message_class), parsed(data, message_class)
    if isinstance(want, Exception):
        assert type(got) is type(want) and str(got) == str(want), (data, got)
    else:
        assert not isinstance(got, Exception), (data, got)
        assert got == want and got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
        assert [f.name for f, _ in got.ListFields()] == [f.name for f, _ in want.ListFields()]


def json_value(rng: random.Random, depth: int = 0):
    kind = rng.choice("snbfldN" if depth < 3 else "snbfN")
    if kind == "s":
        return rng.choice(["", "x", "ünï ✓", "a\"b", "\U0001f600"])
    if kind == "n":
        return rng.choice([0, -1, 7, 2**31, 2**53 + 1])
    if kind == "f":
        return rng.choice([0.5, -1e300, 3.0])
    if kind == "b":
        return rng.choice([True, False])
    if kind == "N":
        return None
    if kind == "l":
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {f"k{i}": json_value(rng, depth + 1) for i in range(rng.randrange(3))}


def fill(message, rng: random.Random, depth: int = 0) -> None:
    """Sets a random selection of a message's fields to random values."""
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.4 or (field.containing_oneof and message.WhichOneof(field.containing_oneof.name)):
            continue
        if protojson.is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            if value_field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
                getattr(message, field.name).update({f"k{i}": f"v{i}" for i in range(rng.randrange(3))})
            continue
        if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            full = field.message_type.full_name
            if depth > 2 and full != "google.protobuf.Timestamp":
                continue
            targets = [getattr(message, field.name).add() for _ in range(rng.randrange(1, 3))] if field.is_repeated \
                else [getattr(message, field.name)]
            for target in targets:
                if full == "google.protobuf.Timestamp":
                    target.FromSeconds(rng.randrange(0, 4_000_000_000))
                    target.nanos = rng.choice([0, 5000, 123456789])
                elif full == "google.protobuf.Struct":
                    target.update({"n": 1, "nested": {"l": [1, "two", None, True]}, "s": json_value(rng)})
                elif full == "google.protobuf.Value":
                    target.string_value = "v"
                elif protojson.is_well_known(field.message_type):
                    target.SetInParent()
                else:
                    target.SetInParent()
                    fill(target, rng, depth + 1)
            continue
        values = {FieldDescriptor.CPPTYPE_STRING: lambda: rng.choice(["", "x", "ünï"]) if field.type != 12
                  else b"\x00\xff",
                  FieldDescriptor.CPPTYPE_BOOL: lambda: rng.choice([True, False]),
                  FieldDescriptor.CPPTYPE_INT32: lambda: rng.choice([0, 1, -5, 2**31 - 1]),
                  FieldDescriptor.CPPTYPE_INT64: lambda: rng.choice([0, 9, -2**40]),
                  FieldDescriptor.CPPTYPE_UINT32: lambda: rng.choice([0, 3]),
                  FieldDescriptor.CPPTYPE_UINT64: lambda: rng.choice([0, 2**40]),
                  FieldDescriptor.CPPTYPE_DOUBLE: lambda: rng.choice([0.0, 1.5]),
                  FieldDescriptor.CPPTYPE_FLOAT: lambda: rng.choice([0.0, 0.25]),
                  FieldDescriptor.CPPTYPE_ENUM: lambda: rng.choice(field.enum_type.values).number}[field.cpp_type]
        if field.is_repeated:
            getattr(message, field.name).extend([values() for _ in range(rng.randrange(3))])
        else:
            setattr(message, field.name, values())


def ints_as_numbers(data):
    """json_format prints 64-bit integers as strings; JSON clients mostly send numbers."""
    if isinstance(data, dict):
        return {k: ints_as_numbers(v) for k, v in data.items()}
    if isinstance(data, list):
        return [ints_as_numbers(v) for v in data]
    if isinstance(data, str) and data.lstrip("-").isdigit() and len(data) < 19:
        return int(data)
    return data


@pytest.mark.parametrize("name,descriptor", REQUESTS, ids=[name for name, _ in REQUESTS])
def test_every_request_parses_as_parse_dict_parses_it(name, descriptor) -> None:
    message_class = protojson.json_format.message_factory.GetMessageClass(descriptor)
    rng = random.Random(name)
    for _ in range(25):
        message = message_class()
        fill(message, rng)
        for proto_names in (True, False):
            data = json_format.MessageToDict(message, preserving_proto_field_name=proto_names)
            same(data, message_class)
            same(ints_as_numbers(data), message_class)
            same(protojson.to_json(message), message_class)  # enum words, defaults printed


BULK = runs_pb2.BulkTriggerJobRequest


def test_bulk_items_are_read_without_parse_dict(monkeypatch) -> None:
    items = [{"payload": {"n": 1, "deep": {"l": [1, None, "x", {"y": False}]}}, "scheduled_at": "2026-12-02T10:00:00Z",
              "priority": 3, "idempotency_key": "k", "tags": {"a": "b"}, "metadata": {}, "concurrencyKey": "c"},
             {"payload": {}}, {}]
    want = reference({"job_id": "j", "items": items}, BULK)
    monkeypatch.setattr(json_format, "ParseDict", None)  # any fallback would fail
    assert protojson.from_json({"job_id": "j", "items": items}, BULK) == want
    assert want.items[1].HasField("payload") and not want.items[2].HasField("payload")


@pytest.mark.parametrize("data", [
    {"items": [{"payload": {"n": 1}, "scheduled_at": "not a time"}]},
    {"items": [{"scheduled_at": "2026-12-02T10:00:00+01:00"}, {"scheduled_at": "2026-12-02T10:00:00.5Z"}]},
    {"items": [{"scheduledAt": "2026-12-02T10:00:00Z", "scheduled_at": "2027-12-02T10:00:00Z"}]},
    {"items": [{"priority": "3"}, {"priority": 3.0}, {"priority": 2**40}, {"priority": True}]},
    {"items": [{"priority": 2.5}]}, {"items": [None]}, {"items": {}}, {"items": [{"nope": 1}]},
    {"items": [{"payload": {"deep": json.loads("[" * 60 + "]" * 60)}}]},
    {"items": [{"payload": json.loads('{"a": ' * 80 + "1" + "}" * 80)}]},
    {"items": [{"payload": {"big": 10**400}}]}, {"items": [{"payload": {"s": "\ud800"}}]},
    {"items": [{"idempotency_key": "\udc00"}]}, {"items": [{"tags": {"a": 1}}]}, {"items": [{"tags": None}]},
    {"items": [{"payload": None}]}, {"items": [{"payload": [1]}]}, {"items": [{"payload": "x"}]},
    {"job_id": 5}, {"job_id": None}, {"jobId": "a", "job_id": "b"}, {"items": [], "job_id": ""},
    {"items": [{"payload": {"n": float("nan")}}]}, {"items": [{"metadata": {"k": "v"}, "tags": {}}]},
])
def test_odd_bulk_json_parses_as_parse_dict_parses_it(data) -> None:
    same(data, BULK)
