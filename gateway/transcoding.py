"""HTTP <-> gRPC transcoding driven by the `google.api.http` options on the proto methods.

`bindings(service)` reads the annotations (and their `additional_bindings`) into `Binding`s;
`read_request` turns an HTTP request into the method's request message (path variables, then the
body as the rule says, then query parameters for the remaining fields); `render` turns the reply
into the HTTP response (`response_body`, success status from `jobline.api.v1.http_success_status`).
The rules follow google/api/http.proto and grpc-gateway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import grpc
from google.api import annotations_pb2 as google_annotations
from google.api import http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobline.api.v1 import annotations_pb2 as jobline_annotations
from services.common.errors import InvalidArgument

from . import protojson

Fields = tuple[FieldDescriptor, ...]

_SEGMENT_VARIABLE = re.compile(r"\{(?P<field>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:=(?P<pattern>\*\*?))?\}")
_VERB = re.compile(r":[^/{}:]+$")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class PathTemplate:
    """A google.api.http path template as a Starlette route path.

    Supports literal segments, `{field}`, `{a.b}` (nested), `{field=*}`, `{field=**}` and a
    trailing custom verb (`/v1/runs/{run_id}:cancel`)."""

    template: str
    route_path: str
    variables: tuple[tuple[str, str], ...]  # (route parameter, field path)
    sort_key: tuple[Any, ...]

    @classmethod
    def parse(cls, template: str) -> PathTemplate:
        if not template.startswith("/"):
            raise ValueError(f"path template {template!r} must start with '/'")
        verb = _VERB.search(template)
        path = template[: verb.start()] if verb else template
        segments, variables, kinds = [], [], []
        for segment in path[1:].split("/"):
            variable = _SEGMENT_VARIABLE.fullmatch(segment)
            if variable:
                name = variable["field"].replace(".", "__")
                wide = variable["pattern"] == "**"
                segments.append(f"{{{name}:path}}" if wide else f"{{{name}}}")
                variables.append((name, variable["field"]))
                kinds.append(2 if wide else 1)
            elif any(char in segment for char in "{}*"):
                raise ValueError(f"unsupported segment {segment!r} in path template {template!r}")
            else:
                segments.append(segment)
                kinds.append(0)
        route_path = "/" + "/".join(segments) + (verb.group() if verb else "")
        # Custom verbs first, then literal segments before variables: the most specific route wins.
        return cls(template, route_path, tuple(variables), (0 if verb else 1, tuple(kinds)))


@dataclass(frozen=True, eq=False)
class Binding:
    """One HTTP route of one RPC."""

    method: MethodDescriptor
    http_method: str
    path: PathTemplate
    body: str = ""
    response_body: str = ""
    success_status: int = 200
    path_fields: Mapping[str, Fields] = field(default_factory=dict)  # route parameter -> fields
    body_field: FieldDescriptor | None = None  # the field `body` names, unless "*" or ""

    @property
    def rpc_path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @cached_property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @cached_property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    def multicallable(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
        """The RPC on `channel`, called generically (no generated stub needed)."""
        return channel.unary_unary(
            self.rpc_path,
            request_serializer=self.request_class.SerializeToString,
            response_deserializer=self.response_class.FromString,
        )


def bindings(service: ServiceDescriptor) -> Iterator[Binding]:
    """Every HTTP binding of a service's unary methods, additional bindings included."""
    for method in service.methods:
        options = method.GetOptions()
        if method.client_streaming or method.server_streaming or not options.HasExtension(google_annotations.http):
            continue  # streams are served by their own adapters, not by transcoding
        rule = options.Extensions[google_annotations.http]
        status = options.Extensions[jobline_annotations.http_success_status] or 200
        for one in (rule, *rule.additional_bindings):
            yield _binding(method, one, status)


def _binding(method: MethodDescriptor, rule: http_pb2.HttpRule, status: int) -> Binding:
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        http_method, template = rule.custom.kind.upper(), rule.custom.path
    elif pattern in _HTTP_METHODS:
        http_method, template = pattern.upper(), getattr(rule, pattern)
    else:
        raise ValueError(f"{method.full_name}: google.api.http without a path")
    path = PathTemplate.parse(template)
    where = f"{method.full_name} ({http_method} {template})"
    path_fields = {name: _resolve(method.input_type, field_path, where) for name, field_path in path.variables}
    for fields in path_fields.values():
        if fields[-1].is_repeated or fields[-1].message_type is not None:
            raise ValueError(f"{where}: path variable {fields[-1].full_name} must be a singular scalar")
    body_field = None if rule.body in ("", "*") else _top_level(method.input_type, rule.body, where)
    if rule.response_body:
        _top_level(method.output_type, rule.response_body, where)
    return Binding(method, http_method, path, rule.body, rule.response_body, status, path_fields, body_field)


def _top_level(descriptor: Descriptor, name: str, where: str) -> FieldDescriptor:
    found = descriptor.fields_by_name.get(name)
    if found is None:
        raise ValueError(f"{where}: no top-level field {name!r} in {descriptor.full_name}")
    return found


def _resolve(descriptor: Descriptor, field_path: str, where: str) -> Fields:
    fields: list[FieldDescriptor] = []
    for name in field_path.split("."):
        found = descriptor.fields_by_name.get(name) if descriptor is not None else None
        if found is None:
            raise ValueError(f"{where}: no field {field_path!r} in {descriptor.full_name if descriptor else '?'}")
        fields.append(found)
        descriptor = None if found.is_repeated else found.message_type
    return tuple(fields)


# -- HTTP request -> request message ----------------------------------------------------------


async def read_request(binding: Binding, request: Request) -> Message:
    return build_request(
        binding,
        path_params=request.path_params,
        query=request.query_params.multi_items(),
        body=await request.body(),
        idempotency_key=request.headers.get("idempotency-key"),
    )


def build_request(
    binding: Binding,
    *,
    path_params: Mapping[str, str],
    query: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    idempotency_key: str | None = None,
) -> Message:
    body_json = _decode(body) if binding.body else None
    data: dict[str, Any] = {}
    if binding.body == "*":
        if body_json is not None and not isinstance(body_json, dict):
            raise InvalidArgument("the request body must be a JSON object")
        data = body_json or {}
    elif binding.body and body_json is not None:
        data[binding.body] = body_json
    for key, value in query:
        fields = _query_fields(binding, key)
        _assign(data, fields, _from_text(fields[-1], value))
    for name, fields in binding.path_fields.items():
        _assign(data, fields, _from_text(fields[-1], path_params[name]))
    message = protojson.from_json(data, binding.request_class)
    _fill_idempotency_key(message, idempotency_key)
    if binding.http_method == "PATCH":
        _fill_update_mask(binding, message, body_json)
    return message


def _decode(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, absurd nesting
        raise InvalidArgument("the request body is not valid JSON") from None


def _query_fields(binding: Binding, key: str) -> Fields:
    """The field a query parameter names (`a.b` for nested), if the rule leaves it to the query."""
    unknown = InvalidArgument(f"unknown query parameter {key!r}")
    if binding.body == "*":
        raise unknown
    descriptor: Descriptor | None = binding.method.input_type
    fields: list[FieldDescriptor] = []
    for name in key.split("."):
        found = protojson.fields_by_key(descriptor).get(name) if descriptor is not None else None
        if found is None or protojson.is_map(found):
            raise unknown
        fields.append(found)
        descriptor = _nested(found)
    if descriptor is not None:  # names a message, not a value
        raise unknown
    names = tuple(f.name for f in fields)
    bound = [tuple(f.name for f in path) for path in binding.path_fields.values()]
    if names[0] == binding.body or any(_overlap(names, path) for path in bound):
        raise unknown
    return tuple(fields)


def _nested(field_: FieldDescriptor) -> Descriptor | None:
    """The message whose fields a query parameter may name after `field_.`, if any."""
    nested = field_.message_type
    if nested is None or field_.is_repeated or protojson.is_well_known(nested):
        return None
    return nested


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return a[: len(b)] == b or b[: len(a)] == a


def _from_text(field: FieldDescriptor, text: str) -> Any:
    """A path or query value as the JSON value json_format expects for the field."""
    is_bool = field.type == FieldDescriptor.TYPE_BOOL or (
        field.message_type is not None and field.message_type.full_name == "google.protobuf.BoolValue"
    )
    if not is_bool:
        return text  # json_format parses numbers, enums, timestamps, masks... from strings
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise InvalidArgument(f"{field.name}: expected true or false, got {text!r}")


def _assign(data: dict[str, Any], fields: Fields, value: Any) -> None:
    """Sets data[a][b]... = value (appends for repeated fields), replacing a camelCase spelling."""
    target = data
    for i, one in enumerate(fields):
        if one.json_name != one.name and one.json_name in target:
            target[one.name] = target.pop(one.json_name)
        if i < len(fields) - 1:
            target = target.setdefault(one.name, {})
            if not isinstance(target, dict):
                raise InvalidArgument(f"{one.name} must be a JSON object")
        elif one.is_repeated:
            values = target.setdefault(one.name, [])
            if not isinstance(values, list):
                raise InvalidArgument(f"{one.name} must be a JSON array")
            values.append(value)
        else:
            target[one.name] = value


def _fill_idempotency_key(message: Message, header: str | None) -> None:
    field_ = message.DESCRIPTOR.fields_by_name.get("idempotency_key")
    if header and field_ is not None and field_.type == FieldDescriptor.TYPE_STRING and not field_.is_repeated:
        if not getattr(message, "idempotency_key"):
            setattr(message, "idempotency_key", header)


def _fill_update_mask(binding: Binding, message: Message, body_json: Any) -> None:
    """Like grpc-gateway: a PATCH without an update_mask changes the fields its body names."""
    mask_field = message.DESCRIPTOR.fields_by_name.get("update_mask")
    if mask_field is None or mask_field.message_type is None:
        return
    if mask_field.message_type.full_name != "google.protobuf.FieldMask" or message.update_mask.paths:
        return
    if not isinstance(body_json, dict):
        return
    if binding.body_field is not None:
        descriptor, skip = binding.body_field.message_type, set()
    else:
        descriptor = binding.method.input_type
        skip = {"update_mask", *(fields[0].name for fields in binding.path_fields.values())}
    if descriptor is None or binding.body_field is not None and binding.body_field.is_repeated:
        return
    by_key = protojson.fields_by_key(descriptor)
    paths = [by_key[key].name for key in body_json if key in by_key and by_key[key].name not in skip]
    message.update_mask.paths.extend(paths)


# -- reply -> HTTP response --------------------------------------------------------------------


def render(binding: Binding, reply: Message) -> Response:
    if binding.success_status == 204:
        return Response(status_code=204)
    data: Any = protojson.to_json(reply)
    if binding.response_body:
        data = data.get(binding.response_body)
    return JSONResponse(data, status_code=binding.success_status)
