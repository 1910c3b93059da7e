"""`GET /v1/openapi.json`: an OpenAPI 3.0 document generated from what the gateway really serves.

Nothing here is written by hand per route: the operations come from the app's own route table
(`request.app.routes`), each transcoded route described by its `transcoding.Binding` (read from the
`google.api.http` annotations of `native.SERVICES`, exactly as `native.routes` builds them), and
`components.schemas` from the message descriptors, following `protojson`'s rules: snake_case names,
enums as lower-case words without their prefix, 64-bit integers as strings, Timestamp as RFC 3339,
Struct as a free object, maps as objects. Routes that are not transcoded (the SSE stream) are
described from their RPC's descriptor; an unknown `/v1` route fails the generation (and the tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import errors, native, protojson, transcoding
from .transcoding import Binding

PATH = "/v1/openapi.json"
OPENAPI_VERSION = "3.0.3"
Schema = dict[str, Any]

# Routes served by their own adapters rather than by transcoding: route path -> (service, server-streaming RPC).
STREAMS = {"/v1/runs/{run_id}/stream": ("jobline.runs.v1.RunService", "WatchRun")}

_F = FieldDescriptor
_SCALARS: dict[int, Schema] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1},
    _F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1},
    # proto3 JSON prints 64-bit integers as strings (it parses numbers too).
    _F.TYPE_INT64: {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"},
    _F.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"},
    _F.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"},
    _F.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": r"^[0-9]+$"},
    _F.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": r"^[0-9]+$"},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "format": "byte"},
}

# Well-known types with their own JSON form (google/protobuf/*.proto).
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}},
                            "required": ["@type"], "additionalProperties": True},
}
# Wrapper types may be set from a query parameter (a scalar JSON form); Struct, Value, ListValue,
# Any and Empty may not.
_QUERYABLE_WELL_KNOWN = {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}


def route() -> BaseRoute:
    """The document's route (no authentication); the document is built once, from the app serving it."""
    built: dict[str, Any] = {}

    async def endpoint(request: Request) -> Response:
        if "document" not in built:
            built["document"] = document(request.app.routes)
        return JSONResponse(built["document"])

    return Route(PATH, endpoint, methods=["GET"])


def document(routes: Sequence[BaseRoute], services: Iterable[Any] = native.SERVICES) -> dict[str, Any]:
    """The OpenAPI document for the `/v1` routes among `routes`."""
    by_route = {(b.http_method, b.path.route_path): b for service, _ in services for b in transcoding.bindings(service)}
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for one in routes:
        if not isinstance(one, Route) or not one.path.startswith("/v1/"):
            continue
        for method in sorted(one.methods or ()):
            if method == "HEAD":  # Starlette's implicit HEAD of every GET
                continue
            binding = by_route.get((method, one.path))
            if one.path == PATH:
                operation = _document_operation()
            elif binding is not None:
                operation = _operation(binding, components)
            elif method == "GET" and one.path in STREAMS:
                operation = _stream_operation(one.path, services, components)
            else:
                raise ValueError(f"{method} {one.path}: no google.api.http binding or stream describes this route")
            paths.setdefault(openapi_path(one.path), {})[method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Jobline API", "version": "v1",
                 "description": "Generated from the google.api.http annotations of the Jobline protos."},
        "paths": paths,
        "components": {
            "schemas": {"Error": _error_schema(), **components.schemas},
            "responses": {"Error": {"description": "An error.",
                                    "content": {"application/json": {"schema": _ref("Error")}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API key (`jl_...`) or an issued token."}},
        },
        "security": [{"bearer": []}],
    }


def openapi_path(route_path: str) -> str:
    """A Starlette route path as an OpenAPI path: `{name:path}` -> `{name}`."""
    return route_path.replace(":path}", "}")


# -- operations ---------------------------------------------------------------------------------


def _operation(binding: Binding, components: _Components) -> dict[str, Any]:
    method = binding.method
    operation: dict[str, Any] = {
        "operationId": method.full_name,
        "tags": [method.containing_service.full_name],
        "parameters": [*_path_parameters(binding, components), *_query_parameters(binding, components)],
        "responses": {str(binding.success_status): _success(binding, components), **_error_responses()},
    }
    if binding.body == "*":
        schema = components.message(method.input_type)
    elif binding.body_field is not None:
        schema = components.field(binding.body_field)
    else:
        schema = None
    if schema is not None:
        operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
    if not operation["parameters"]:
        del operation["parameters"]
    return operation


def _success(binding: Binding, components: _Components) -> dict[str, Any]:
    if binding.success_status == 204:
        return {"description": "No content."}
    output = binding.method.output_type
    if binding.response_body:
        schema = components.field(output.fields_by_name[binding.response_body])
    else:
        schema = components.message(output)
    return {"description": f"{output.name}" + (f".{binding.response_body}" if binding.response_body else ""),
            "content": {"application/json": {"schema": schema}}}


def _path_parameters(binding: Binding, components: _Components) -> Iterator[dict[str, Any]]:
    for name, fields in binding.path_fields.items():
        yield {"name": name, "in": "path", "required": True, "schema": components.field(fields[-1]),
               "description": ".".join(f.name for f in fields)}


def _query_parameters(binding: Binding, components: _Components) -> Iterator[dict[str, Any]]:
    """The fields `transcoding._query_fields` accepts: those neither in the path nor in the body."""
    if binding.body == "*":
        return
    bound = [tuple(f.name for f in fields) for fields in binding.path_fields.values()]
    for names, field in _queryable(binding.method.input_type, ()):
        if names[0] == binding.body or any(names[: len(b)] == b or b[: len(names)] == names for b in bound):
            continue
        schema = components.field(field)
        yield {"name": ".".join(names), "in": "query", "required": False, "schema": schema,
               **({"style": "form", "explode": True} if field.is_repeated else {})}


def _queryable(descriptor: Descriptor, prefix: tuple[str, ...],
               seen: frozenset[str] = frozenset()) -> Iterator[tuple[tuple[str, ...], FieldDescriptor]]:
    for field in descriptor.fields:
        names = (*prefix, field.name)
        nested = field.message_type
        if protojson.is_map(field):
            continue
        if nested is None:
            yield names, field
        elif protojson.is_well_known(nested):
            if nested.full_name in _QUERYABLE_WELL_KNOWN or nested.full_name.endswith("Value") and \
                    nested.full_name not in ("google.protobuf.Value", "google.protobuf.ListValue"):
                yield names, field
        elif not field.is_repeated and nested.full_name not in seen:
            yield from _queryable(nested, names, seen | {descriptor.full_name})


def _stream_operation(path: str, services: Iterable[Any], components: _Components) -> dict[str, Any]:
    service_name, rpc = STREAMS[path]
    service = next(s for s, _ in services if s.full_name == service_name)
    method = service.methods_by_name[rpc]
    events = method.output_type
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": components.field(method.input_type.fields_by_name[name])}
                  for name in _route_parameters(path)]
    parameters.append({"name": "access_token", "in": "query", "required": False, "schema": {"type": "string"},
                       "description": "The API key, for clients that cannot set Authorization (EventSource)."})
    kinds = ", ".join(f"`event: {f.name}` ({f.message_type.name})" for f in events.fields if f.message_type)
    return {
        "operationId": method.full_name,
        "tags": [service_name],
        "description": f"Server-Sent Events: {kinds}, each with the message as JSON in `data:`.",
        "parameters": parameters,
        "responses": {"200": {"description": "A text/event-stream of " + events.name + " bodies.",
                              "content": {"text/event-stream": {"schema": components.message(events)}}},
                      **_error_responses()},
    }


def _document_operation() -> dict[str, Any]:
    return {"operationId": "jobline.gateway.OpenApi", "security": [],
            "responses": {"200": {"description": "This document.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}


def _route_parameters(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _error_responses() -> dict[str, Any]:
    return {"4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}


def _error_schema() -> Schema:
    codes = sorted({name for _, name in errors.BY_STATUS.values()} | set(errors.BY_HTTP_STATUS.values())
                   | {errors.INTERNAL[1], "bad_request"})
    return {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message", "details"],
        "properties": {"code": {"type": "string", "enum": codes}, "message": {"type": "string"},
                       "details": {"type": "array", "items": {"type": "string"}}}}}}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# -- schemas ------------------------------------------------------------------------------------


class _Components:
    """`components.schemas`: every message and enum reached, named by its short name unless two share it."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}
        self._names: dict[str, str] = {}  # full name -> component name

    def _name(self, full_name: str, short: str) -> str:
        if full_name not in self._names:
            taken = set(self._names.values()) | {"Error"}
            self._names[full_name] = full_name if short in taken else short
        return self._names[full_name]

    def message(self, descriptor: Descriptor) -> Schema:
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        if protojson.is_well_known(descriptor):  # wrappers: the JSON of their value, or null
            return {**self.field(descriptor.fields_by_name["value"]), "nullable": True}
        name = self._name(descriptor.full_name, descriptor.name)
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive messages refer to themselves
            self.schemas[name] = self._message_schema(descriptor)
        return _ref(name)

    def enum(self, enum: EnumDescriptor) -> Schema:
        if enum.full_name == "google.protobuf.NullValue":
            return {"nullable": True, "enum": [None]}
        name = self._name(enum.full_name, enum.name)
        if name not in self.schemas:
            words = [protojson.enum_word(enum, value.number) for value in enum.values]
            self.schemas[name] = {"type": "string", "enum": list(dict.fromkeys(words)), "description": enum.full_name}
        return _ref(name)

    def field(self, field: FieldDescriptor) -> Schema:
        if protojson.is_map(field):
            return {"type": "object", "additionalProperties": self._single(field.message_type.fields_by_name["value"])}
        single = self._single(field)
        return {"type": "array", "items": single} if field.is_repeated else single

    def _single(self, field: FieldDescriptor) -> Schema:
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        if field.message_type is not None:
            return self.message(field.message_type)
        return dict(_SCALARS[field.type])

    def _message_schema(self, descriptor: Descriptor) -> Schema:
        properties: dict[str, Schema] = {}
        for field in descriptor.fields:
            schema = self.field(field)
            notes = []
            if field.has_presence and field.message_type is None:
                notes.append("Optional: omitted when unset.")
            if field.containing_oneof is not None and not field.containing_oneof.name.startswith("_"):
                notes.append(f"One of `{field.containing_oneof.name}`.")
            if notes:
                schema = {"allOf": [schema], "description": " ".join(notes)} if "$ref" in schema else \
                    {**schema, "description": " ".join(notes)}
            properties[field.name] = schema
        return {"type": "object", "description": descriptor.full_name, "properties": properties,
                "additionalProperties": False}
