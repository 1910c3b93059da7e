"""Surface D (Foreman Remote Execution's job invocations API) at `/api`: HTTP <-> gRPC mapping only.

    GET    /api/job_invocations                          index (search, order, page, per_page incl. `all`)
    GET    /api/job_invocations/:id                      show (host_status, include_hosts)
    POST   /api/job_invocations                          create (template or feature, targeting, options)
    GET    /api/job_invocations/:id/hosts                the targeted hosts and their job status
    GET    /api/job_invocations/:id/hosts/:host_id       a host's output (since)
    GET    /api/job_invocations/:id/hosts/:host_id/raw   a host's output, joined
    GET    /api/job_invocations/:id/outputs              every host's output (search_query, since, raw)
    POST   /api/job_invocations/:id/cancel               cancel (force)
    POST   /api/job_invocations/:id/rerun                rerun (failed_only, succeeded_only)
    GET|POST /api/job_templates, GET|PUT|DELETE /api/job_templates/:id, POST /api/job_templates/:id/clone
    GET    /api/hosts, /api/hosts/:id                    the device registry, as Foreman hosts
    GET    /apidoc/v2.json                               the Apipie description of all of it (no credential)

Job templates are jobs with a template spec (jobs service); hosts are devices, whose `number` is the
host id (devices service); invocations are the runs service's. Authentication is HTTP Basic with a
user's login and one of its personal access tokens. JSON and errors follow Foreman's views: the
index envelope `{total, subtotal, page, per_page, search, sort, results}`, 404 `{"error": {"message":
"Resource job_invocation not found by id '228'"}}`, bad search syntax 400 `{"error": {"message",
"class"}}`, validation 422 `{"error": {"id", "errors", "full_messages"}}`, 401 `Unable to authenticate
user <login>`, 403 `Access denied` with the missing permission. Another tenant's invocation, template
or host is answered exactly like a missing one (the services are tenant-scoped).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf import field_mask_pb2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2
from services.common.channels import Channels
from services.common.config import Settings
from services.common.errors import DomainError, PermissionDenied, Unauthenticated
from services.common.principal import READ, TRIGGER, WRITE, require_scope, to_metadata

from . import surface_d_apidoc
from .auth import Authenticator, RateLimited, credential_request
from .surface import RPC_TIMEOUT_SECS, Surface, SurfaceError, unavailable

PREFIX = "/api"
DEFAULT_PER_PAGE = 20
RPC_PAGE = 1000  # the services' largest page
MAX_INT64 = 2**63 - 1
MAX_HOST_NAME = 256  # a device name's longest: a longer :id names no host
PER_PAGE = re.compile(r"^([1-9]\d*|all)$")
State = runs_pb2.JobInvocationState

# -- the surface's one mapping table ----------------------------------------------------------------
# An invocation's state -> (Foreman status integer, status_label, its task's state).
INVOCATION_STATES: Mapping[int, tuple[int, str, str]] = {
    State.JOB_INVOCATION_STATE_SUCCEEDED: (0, "succeeded", "stopped"),
    State.JOB_INVOCATION_STATE_FAILED: (1, "failed", "stopped"),
    State.JOB_INVOCATION_STATE_SCHEDULED: (2, "queued", "scheduled"),
    State.JOB_INVOCATION_STATE_RUNNING: (3, "running", "running"),
    State.JOB_INVOCATION_STATE_CANCELLED: (4, "cancelled", "stopped"),
}
# A run's status -> (the host's job_status, the progress count it adds to).
HOST_STATES: Mapping[str, tuple[str, str]] = {
    "delayed": ("planned", "pending"), "queued": ("planned", "pending"), "waiting": ("planned", "pending"),
    "dequeued": ("running", "pending"), "executing": ("running", "pending"),
    "completed": ("success", "succeeded"),
    "failed": ("error", "failed"), "timed_out": ("error", "failed"), "crashed": ("error", "failed"),
    "system_failed": ("error", "failed"), "dead_letter": ("error", "failed"),
    "canceled": ("cancelled", "cancelled"), "expired": ("cancelled", "cancelled"),
}
NO_TASK = "N/A"  # a host whose task does not exist (yet)
OUTPUT_TYPES = {runs_pb2.OUTPUT_STREAM_STDOUT: "stdout", runs_pb2.OUTPUT_STREAM_STDERR: "stderr",
                runs_pb2.OUTPUT_STREAM_DEBUG: "debug"}
# Foreman's permissions -> the scope that grants them.
PERMISSIONS: Mapping[str, str] = {
    "view_job_invocations": READ, "create_job_invocations": TRIGGER, "cancel_job_invocations": WRITE,
    "view_job_templates": READ, "create_job_templates": WRITE, "edit_job_templates": WRITE,
    "destroy_job_templates": WRITE, "view_hosts": READ,
}
TERMINAL_STATES = (State.JOB_INVOCATION_STATE_SUCCEEDED, State.JOB_INVOCATION_STATE_FAILED,
                   State.JOB_INVOCATION_STATE_CANCELLED)


class ApiError(SurfaceError):
    """An answer of this surface in one of Foreman's error shapes (the body as given)."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.status, self.body, self.headers = status, body, headers

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def not_found(resource: str, ident: str) -> ApiError:
    return ApiError(404, {"error": {"message": f"Resource {resource} not found by id '{ident}'"}})


def message_error(status: int, message: str) -> ApiError:
    return ApiError(status, {"error": {"message": message}})


def unprocessable(message: str, resource_id: int | None = None) -> ApiError:
    """A service's validation message ("<field>: <why>", or a sentence) as Rails' errors."""
    field, sep, why = message.partition(": ")
    if sep and re.fullmatch(r"[a-z_][a-z0-9_.]*", field) and why and not why[0].isupper():
        errors = {field: [why]}
        full = [f"{field.replace('_', ' ').capitalize()} {why}"]
    elif sep and re.fullmatch(r"[a-z_][a-z0-9_.]*", field) and why:
        errors, full = {field: [why]}, [why]
    else:
        errors, full = {"base": [message]}, [message]
    return ApiError(422, {"error": {"id": resource_id, "errors": errors, "full_messages": full}})


def search_error(message: str) -> ApiError:
    return ApiError(400, {"error": {"message": message, "class": "ScopedSearch::QueryNotSupported"}})


def param_error(name: str, value: Any, rule: str) -> ApiError:
    return ApiError(400, {"error": {"message": f"Invalid parameter '{name}' value {json.dumps(value)}: {rule}",
                                    "class": "Apipie::ParamInvalid", "parameter_name": name}})


def routes(settings: Settings, channels: Channels, authenticator: Authenticator) -> list[BaseRoute]:
    surface = SurfaceD(settings, channels, authenticator)
    g = surface.guarded
    invocations = f"{PREFIX}/job_invocations"
    templates = f"{PREFIX}/job_templates"
    collections = [
        Route(invocations, g(surface.list_invocations), methods=["GET"]),
        Route(invocations, g(surface.create_invocation), methods=["POST"]),
        Route(templates, g(surface.list_templates), methods=["GET"]),
        Route(templates, g(surface.create_template), methods=["POST"]),
        Route(f"{PREFIX}/hosts", g(surface.list_hosts), methods=["GET"]),
    ]
    # Apipie routes are written with a trailing slash (`/api/job_invocations/`): both answer.
    slashed = [Route(route.path + "/", route.endpoint, methods=list(route.methods or ())) for route in collections]
    return [
        *slashed,
        Route("/apidoc/v2.json", surface.apidoc, methods=["GET"]),
        Route(invocations, g(surface.list_invocations), methods=["GET"]),
        Route(invocations, g(surface.create_invocation), methods=["POST"]),
        Route(f"{invocations}/{{id}}", g(surface.show_invocation), methods=["GET"]),
        Route(f"{invocations}/{{id}}/hosts", g(surface.invocation_hosts), methods=["GET"]),
        Route(f"{invocations}/{{id}}/hosts/{{host_id}}", g(surface.host_output), methods=["GET"]),
        Route(f"{invocations}/{{id}}/hosts/{{host_id}}/raw", g(surface.host_raw_output), methods=["GET"]),
        Route(f"{invocations}/{{id}}/outputs", g(surface.outputs), methods=["GET"]),
        Route(f"{invocations}/{{id}}/cancel", g(surface.cancel), methods=["POST"]),
        Route(f"{invocations}/{{id}}/rerun", g(surface.rerun), methods=["POST"]),
        Route(templates, g(surface.list_templates), methods=["GET"]),
        Route(templates, g(surface.create_template), methods=["POST"]),
        Route(f"{templates}/{{id}}", g(surface.show_template), methods=["GET"]),
        Route(f"{templates}/{{id}}", g(surface.update_template), methods=["PUT", "PATCH"]),
        Route(f"{templates}/{{id}}", g(surface.delete_template), methods=["DELETE"]),
        Route(f"{templates}/{{id}}/clone", g(surface.clone_template), methods=["POST"]),
        Route(f"{PREFIX}/hosts", g(surface.list_hosts), methods=["GET"]),
        Route(f"{PREFIX}/hosts/{{id}}", g(surface.show_host), methods=["GET"]),
    ]


class SurfaceD(Surface):
    def failure(self, error: DomainError | HTTPException | grpc.aio.AioRpcError) -> ApiError:
        if isinstance(error, HTTPException):  # the body limit (413) and the like
            return message_error(error.status_code, str(error.detail))
        if isinstance(error, grpc.aio.AioRpcError) and unavailable(error):
            return message_error(503, "Service unavailable")
        return message_error(500, "Internal Server Error")

    def finish(self, response: Response) -> Response:
        response.headers["Apipie-Checksum"] = surface_d_apidoc.checksum()
        return response

    async def apidoc(self, request: Request) -> Response:
        return Response(surface_d_apidoc.document_bytes(), media_type="application/json",
                        headers={"Apipie-Checksum": surface_d_apidoc.checksum()})

    # -- auth and calls -------------------------------------------------------------------------

    async def _authorize(self, request: Request, permission: str) -> Principal:
        """The caller (HTTP Basic: login + personal access token) if it holds the permission's scope."""
        credential = credential_request(request.headers)
        login = credential.basic.login if credential is not None and credential.WhichOneof("credential") == "basic" \
            else ""
        unauthorized = message_error(401, f"Unable to authenticate user {login}")
        unauthorized.headers = {"WWW-Authenticate": 'Basic realm="Foreman"'}
        if not login:
            try:  # (a missing credential still counts against the failure limiter's refusals)
                await self.authenticator.authenticate_request(None)
            except RateLimited as error:
                raise self._bruteforce(error) from None
            except Unauthenticated:
                raise unauthorized from None
        try:
            principal = await self.authenticator.authenticate_request(credential)
        except RateLimited as error:
            raise self._bruteforce(error) from None
        except Unauthenticated:
            raise unauthorized from None
        try:
            require_scope(principal, PERMISSIONS[permission])
        except PermissionDenied:
            raise ApiError(403, {"error": {
                "message": "Access denied", "details": f"Missing one of the required permissions: {permission}",
                "missing_permissions": [permission]}}) from None
        return principal

    @staticmethod
    def _bruteforce(error: RateLimited) -> ApiError:
        return ApiError(401, {"error": {"message": "Too many tries, please try again in a few minutes."}},
                        headers={"Retry-After": str(error.retry_after)})

    async def _call(self, method, request, principal: Principal, *, missing: ApiError | None = None,
                    resource_id: int | None = None):
        """One RPC; the services' refusals in this surface's shape."""
        try:
            return await method(request, metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            raise self._refusal(error, missing, resource_id) from error

    @staticmethod
    def _refusal(error: grpc.aio.AioRpcError, missing: ApiError | None, resource_id: int | None) -> Exception:
        code, details = error.code(), error.details() or ""
        if code == grpc.StatusCode.NOT_FOUND:
            return missing or message_error(404, details)
        if code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("invalid query"):
            return search_error(details)
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE):
            return unprocessable(details, resource_id)
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return ApiError(403, {"error": {"message": "Access denied", "details": details,
                                            "missing_permissions": []}})
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return message_error(429, details or "Too many requests")
        return error

    # -- parameters -------------------------------------------------------------------------------

    async def _params(self, request: Request) -> dict[str, Any]:
        """Query parameters merged with the JSON body (as Rails does); POST and PUT need JSON."""
        params: dict[str, Any] = dict(parse_qsl(request.url.query, keep_blank_values=True))
        if request.method in ("POST", "PUT", "PATCH"):
            content_type = request.headers.get("content-type", "")
            raw = await request.body()
            if content_type.split(";")[0].strip().lower() != "application/json":
                if request.method in ("POST", "PUT") and (raw or content_type):
                    raise message_error(415, f"Media type in 'Content-Type: {content_type}' is unsupported in API v2 "
                                             "for POST and PUT requests. Please use 'Content-Type: application/json'.")
                return params
            if raw.strip():
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as error:
                    raise ApiError(400, {"status": 400, "error": "There was a problem in the JSON you submitted: "
                                                                 f"{error}"}) from None
                if not isinstance(body, dict):
                    raise ApiError(400, {"status": 400, "error": "There was a problem in the JSON you submitted: "
                                                                 "the body must be a JSON object"})
                params.update(body)
        return params

    @staticmethod
    def _paging(params: Mapping[str, Any]) -> tuple[int, int | None]:
        """(page from 1, per_page or None for 'all')."""
        page_text = str(params.get("page", "") or "1")
        if not _digits(page_text) or int(page_text) < 1:
            raise param_error("page", params.get("page"), "Must be a number.")
        per_page = params.get("per_page")
        if per_page in (None, ""):
            return int(page_text), DEFAULT_PER_PAGE
        if not PER_PAGE.match(str(per_page)) or (str(per_page) != "all" and not _digits(str(per_page))):
            raise param_error("per_page", per_page, "Must match regular expression /\\A([1-9]\\d*|all)\\Z$/.")
        return int(page_text), None if str(per_page) == "all" else int(per_page)

    @staticmethod
    def _envelope(results: list, total: int, subtotal: int, page: int, per_page: int | None,
                  params: Mapping[str, Any]) -> JSONResponse:
        order = str(params.get("order") or "").split()
        return JSONResponse({
            "total": total, "subtotal": subtotal, "page": page,
            "per_page": total if per_page is None else per_page,
            "search": params.get("search"),
            "sort": {"by": order[0] if order else None, "order": (order[1] if len(order) > 1 else "ASC") if order
                     else None},
            "results": results,
        })

    # -- job invocations --------------------------------------------------------------------------

    async def _invocation(self, principal: Principal, ident: str, include_hosts: bool = False,
                          resource: str = "job_invocation") -> runs_pb2.JobInvocation:
        number = _number(ident)
        if number is None:
            raise not_found(resource, ident)
        return await self._call(self.runs.GetJobInvocation,
                                runs_pb2.GetJobInvocationRequest(number=number, include_hosts=include_hosts),
                                principal, missing=not_found(resource, ident))

    async def _devices(self, principal: Principal, device_ids: Iterable[str]) -> dict[str, devices_pb2.Device]:
        """Device id -> device, in one ResolveTargets call (devices deleted since are absent)."""
        ids = sorted({i for i in device_ids if i})
        if not ids:
            return {}
        reply = await self._call(self.devices.ResolveTargets, devices_pb2.ResolveTargetsRequest(
            targets=devices_pb2.DeviceTargets(device_ids=ids)), principal)
        return {device.id: device for device in reply.devices}

    async def list_invocations(self, request: Request) -> Response:
        principal = await self._authorize(request, "view_job_invocations")
        params = await self._params(request)
        page, per_page = self._paging(params)
        results: list = []
        offset = (page - 1) * (per_page or 0)
        total = matched = 0
        while True:  # pages of the service's size until this page (or everything, for 'all') is read
            want = RPC_PAGE if per_page is None else min(RPC_PAGE, per_page - len(results))
            reply = await self._call(self.runs.ListJobInvocations, runs_pb2.ListJobInvocationsRequest(
                search=str(params.get("search") or ""), order_by=str(params.get("order") or ""),
                offset=min(offset, 2**31 - 1), limit=want), principal)
            total, matched = reply.total_count, reply.matched_count
            results.extend(_invocation_base(i) for i in reply.invocations)
            offset += len(reply.invocations)
            if len(reply.invocations) < want or (per_page is not None and len(results) >= per_page):
                break
        return self._envelope(results, total, matched, page, per_page, params)

    async def show_invocation(self, request: Request) -> Response:
        principal = await self._authorize(request, "view_job_invocations")
        params = await self._params(request)
        include_hosts = _bool(params.get("include_hosts"), default=True)
        invocation = await self._invocation(principal, request.path_params["id"], include_hosts)
        body = await self._invocation_show(principal, invocation, include_hosts,
                                           host_status=_bool(params.get("host_status")))
        return JSONResponse(body)

    async def _invocation_show(self, principal: Principal, invocation: runs_pb2.JobInvocation, include_hosts: bool,
                               host_status: bool = False, created: bool = False) -> dict[str, Any]:
        devices = await self._devices(principal, [h.device_id for h in invocation.hosts])
        body = _invocation_base(invocation, missing=sum(1 for h in invocation.hosts if h.device_id not in devices))
        recurrence = None
        if invocation.mode == "recurring" and invocation.spec.recurrence_id:
            try:
                recurrence = await self._call(self.jobs.GetJobSchedule, jobs_pb2.GetJobScheduleRequest(
                    schedule_id=invocation.spec.recurrence_id), principal)
            except ApiError:
                recurrence = None
        body.update(_mode(invocation, recurrence))
        targeting: dict[str, Any] = {
            "bookmark_id": None, "bookmark_name": None, "search_query": invocation.spec.search_query,
            "targeting_type": invocation.spec.targeting_type, "user_id": _user_id(invocation.spec.user_subject_id),
            "randomized_ordering": invocation.spec.randomized_ordering or None,
        }
        if include_hosts:
            hosts = []
            for host in invocation.hosts:
                device = devices.get(host.device_id)
                if device is None:
                    continue
                entry = _host_base(device)
                if host_status:
                    entry["job_status"] = _host_status(invocation, host)
                hosts.append(entry)
            targeting["hosts"] = hosts
        body["targeting"] = targeting
        state = invocation.state
        body["task"] = {"id": invocation.task_id, "state": INVOCATION_STATES[state][2],
                        "started_at": _time(invocation.started_at), "cancellable": state not in TERMINAL_STATES}
        pattern = {"template_id": invocation.job_number, "template_name": invocation.job_name, "host_id": None,
                   "input_values": await self._input_values(principal, invocation)}
        if include_hosts and not created:
            body["template_invocations"] = [
                {"template_id": invocation.job_number, "template_name": invocation.job_name,
                 "host_id": devices[h.device_id].number, "input_values": pattern["input_values"]}
                for h in invocation.hosts if h.device_id in devices and h.run_id]
        body["pattern_template_invocations"] = None if created else [pattern]
        body["job_organization"] = None
        body["job_location"] = None
        return body

    async def _input_values(self, principal: Principal, invocation: runs_pb2.JobInvocation) -> list[dict[str, Any]]:
        """The inputs given, as Foreman's input values (hidden ones masked), with the template's input ids."""
        try:
            job = await self._call(self.jobs.GetJob, jobs_pb2.GetJobRequest(job_id=invocation.job_id), principal)
            declared = {i.name: i for i in job.job_template.inputs}
        except ApiError:
            declared = {}
        values = []
        for name, value in sorted(invocation.spec.inputs.items()):
            template_input = declared.get(name)
            values.append({"template_input_name": name, "template_input_id": template_input.id if template_input
                           else None, "value": "*****" if template_input and template_input.hidden_value else value})
        return values

    async def create_invocation(self, request: Request) -> Response:
        principal = await self._authorize(request, "create_job_invocations")
        params = await self._params(request)
        body = params.get("job_invocation", params)
        if not isinstance(body, dict):
            raise unprocessable("job_invocation: must be a JSON object")
        job = await self._template_for(principal, body)
        spec = _spec(body)
        create = runs_pb2.CreateJobInvocationRequest(job_id=job.id, spec=spec)
        recurrence = body.get("recurrence")
        if isinstance(recurrence, dict) and any(v not in (None, "") for v in recurrence.values()):
            create.recurrence.CopyFrom(_recurrence(recurrence))
        invocation = await self._call(self.runs.CreateJobInvocation, create, principal)
        include_hosts = _bool(params.get("include_hosts"), default=True)
        return JSONResponse(await self._invocation_show(principal, invocation, include_hosts, created=True),
                            status_code=201)

    async def _template_for(self, principal: Principal, body: Mapping[str, Any]) -> jobs_pb2.Job:
        """The template an invocation names: job_template_id, or the one serving `feature`."""
        feature, template_id = body.get("feature"), body.get("job_template_id")
        if feature not in (None, "") and template_id not in (None, ""):
            raise unprocessable("Only one of feature or job_template_id can be specified")
        if feature not in (None, ""):
            reply = await self._call(self.jobs.ListJobs, jobs_pb2.ListJobsRequest(
                job_templates_only=True, job_template_feature=str(feature)), principal)
            if not reply.jobs:
                raise message_error(404, f"Unknown remote execution feature {feature}")
            return reply.jobs[0]
        missing = message_error(404, f"Template with id '{'' if template_id is None else template_id}' was not found")
        number = _number(str(template_id)) if template_id not in (None, "") else None
        if number is None:
            raise missing
        job = await self._call(self.jobs.GetJob, jobs_pb2.GetJobRequest(number=number), principal, missing=missing)
        if not job.HasField("job_template"):
            raise missing
        return job

    async def _invocation_host(self, principal: Principal, request: Request
                               ) -> tuple[runs_pb2.JobInvocation, runs_pb2.JobInvocationHost, devices_pb2.Device]:
        invocation = await self._invocation(principal, request.path_params["id"], include_hosts=True)
        ident = request.path_params["host_id"]
        devices = await self._devices(principal, [h.device_id for h in invocation.hosts])
        number = _number(ident)
        for host in invocation.hosts:
            device = devices.get(host.device_id)
            if device is not None and (device.number == number if number is not None
                                       else ident in (device.id, device.name)):
                return invocation, host, device
        raise message_error(404, f"Host with id '{ident}' was not found")

    async def _outputs(self, principal: Principal, number: int, device_ids: Sequence[str], since: float
                       ) -> runs_pb2.ListJobInvocationOutputsResponse:
        return await self._call(self.runs.ListJobInvocationOutputs, runs_pb2.ListJobInvocationOutputsRequest(
            number=number, device_ids=list(device_ids), since=since), principal)

    async def host_output(self, request: Request, raw: bool = False) -> Response:
        principal = await self._authorize(request, "view_job_invocations")
        params = await self._params(request)
        invocation, host, device = await self._invocation_host(principal, request)
        if invocation.state == State.JOB_INVOCATION_STATE_SCHEDULED:
            return JSONResponse(_delayed(invocation, None if raw else []))
        since = 0.0 if raw else _since(params.get("since"))
        reply = await self._outputs(principal, invocation.number, [host.device_id], since)
        output = reply.outputs[0] if reply.outputs else runs_pb2.JobInvocationOutput(device_id=host.device_id)
        return JSONResponse(_host_output(reply.invocation, output, raw, default=None if raw else []))

    async def host_raw_output(self, request: Request) -> Response:
        return await self.host_output(request, raw=True)

    async def outputs(self, request: Request) -> Response:
        principal = await self._authorize(request, "view_job_invocations")
        params = await self._params(request)
        invocation = await self._invocation(principal, request.path_params["id"], include_hosts=True)
        raw = _bool(params.get("raw"))
        device_ids = [h.device_id for h in invocation.hosts]
        if params.get("search_query"):
            matching = await self._matching_devices(principal, str(params["search_query"]))
            device_ids = [d for d in device_ids if d in matching]
        devices = await self._devices(principal, device_ids)
        device_ids = [d for d in device_ids if d in devices]
        if not device_ids:  # (no device ids would ask the runs service for every host's output)
            return JSONResponse({"outputs": []})
        reply = await self._outputs(principal, invocation.number, device_ids, _since(params.get("since")))
        outputs = []
        for output in reply.outputs:
            entry = _host_output(reply.invocation, output, raw, default="" if raw else [])
            entry["host_id"] = devices[output.device_id].number
            outputs.append(entry)
        return JSONResponse({"outputs": outputs})

    async def _matching_devices(self, principal: Principal, query: str) -> set[str]:
        found: set[str] = set()
        token = ""
        while True:
            reply = await self._call(self.devices.ListDevices, devices_pb2.ListDevicesRequest(
                query=query, query_dialect="foreman", page_size=RPC_PAGE, page_token=token), principal)
            found.update(device.id for device in reply.devices)
            token = reply.next_page_token
            if not token:
                return found

    async def invocation_hosts(self, request: Request) -> Response:
        """The invocation's targeted hosts with their job status (Foreman's `hosts` action)."""
        principal = await self._authorize(request, "view_job_invocations")
        params = await self._params(request)
        page, per_page = self._paging(params)
        invocation = await self._invocation(principal, request.path_params["id"], include_hosts=True)
        devices = await self._devices(principal, [h.device_id for h in invocation.hosts])
        hosts = [h for h in invocation.hosts if h.device_id in devices]
        total = len(hosts)
        if params.get("search"):
            matching = await self._matching_devices(principal, str(params["search"]))
            hosts = [h for h in hosts if h.device_id in matching]
        subtotal = len(hosts)
        if per_page is not None:
            hosts = hosts[(page - 1) * per_page:page * per_page]
        results = []
        for host in hosts:
            device = devices[host.device_id]
            results.append({"name": device.name, "operatingsystem_id": None,
                            "operatingsystem_name": device.facts.get("os") or None, "hostgroup_id": None,
                            "hostgroup_name": device.groups[0] if device.groups else None, "id": device.number,
                            "job_status": _host_status(invocation, host), "smart_proxy_id": None,
                            "smart_proxy_name": None})
        return self._envelope(results, total, subtotal, page, per_page, params)

    async def cancel(self, request: Request) -> Response:
        principal = await self._authorize(request, "cancel_job_invocations")
        params = await self._params(request)
        ident = request.path_params["id"]
        number = _number(ident)
        if number is None:
            raise not_found("job_invocation", ident)
        try:
            reply = await self.runs.CancelJobInvocation(
                runs_pb2.CancelJobInvocationRequest(number=number, force=_bool(params.get("force"))),
                metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise ApiError(422, {"message": "The job could not be cancelled."}) from error
            raise self._refusal(error, not_found("job_invocation", ident), None) from error
        return JSONResponse({"cancelled": reply.cancelled, "id": reply.invocation.number})

    async def rerun(self, request: Request) -> Response:
        principal = await self._authorize(request, "create_job_invocations")
        params = await self._params(request)
        ident = request.path_params["id"]
        number = _number(ident)
        if number is None:
            raise not_found("job_invocation", ident)
        try:
            invocation = await self.runs.RerunJobInvocation(runs_pb2.RerunJobInvocationRequest(
                number=number, failed_only=_bool(params.get("failed_only")),
                succeeded_only=_bool(params.get("succeeded_only"))), metadata=to_metadata(principal),
                timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            details = error.details() or ""
            if error.code() == grpc.StatusCode.NOT_FOUND and details.startswith("Could not rerun"):
                raise ApiError(404, {"error": details}) from error
            raise self._refusal(error, not_found("job_invocation", ident), None) from error
        return JSONResponse(await self._invocation_show(principal, invocation, True, created=True), status_code=201)

    # -- job templates ------------------------------------------------------------------------------

    async def _template(self, principal: Principal, ident: str) -> jobs_pb2.Job:
        number = _number(ident)
        if number is None:
            raise not_found("job_template", ident)
        job = await self._call(self.jobs.GetJob, jobs_pb2.GetJobRequest(number=number), principal,
                               missing=not_found("job_template", ident))
        if not job.HasField("job_template"):
            raise not_found("job_template", ident)
        return job

    async def list_templates(self, request: Request) -> Response:
        principal = await self._authorize(request, "view_job_templates")
        params = await self._params(request)
        page, per_page = self._paging(params)
        everything = await self._call(self.jobs.ListJobs, jobs_pb2.ListJobsRequest(job_templates_only=True),
                                      principal)
        matching = everything
        if params.get("search"):
            matching = await self._call(self.jobs.ListJobs, jobs_pb2.ListJobsRequest(
                job_templates_only=True, job_template_search=str(params["search"])), principal)
        jobs = list(matching.jobs)
        jobs = _ordered_templates(jobs, str(params.get("order") or ""))
        if per_page is not None:
            jobs = jobs[(page - 1) * per_page:page * per_page]
        return self._envelope([_template_base(job) for job in jobs], len(everything.jobs), len(matching.jobs),
                              page, per_page, params)

    async def show_template(self, request: Request) -> Response:
        principal = await self._authorize(request, "view_job_templates")
        return JSONResponse(_template_main(await self._template(principal, request.path_params["id"])))

    async def create_template(self, request: Request) -> Response:
        principal = await self._authorize(request, "create_job_templates")
        params = await self._params(request)
        body = params.get("job_template", params)
        if not isinstance(body, dict):
            raise unprocessable("job_template: must be a JSON object")
        job = jobs_pb2.Job(project_id=principal.project_id or "default")
        paths = _template_fields(job, body, None)
        if "name" not in paths:
            raise unprocessable("name: can't be blank")
        created = await self._call(self.jobs.CreateJob, jobs_pb2.CreateJobRequest(job=job), principal)
        return JSONResponse(_template_main(created), status_code=201)

    async def update_template(self, request: Request) -> Response:
        principal = await self._authorize(request, "edit_job_templates")
        params = await self._params(request)
        current = await self._template(principal, request.path_params["id"])
        body = params.get("job_template", {})
        if not isinstance(body, dict):
            raise unprocessable("job_template: must be a JSON object", current.number)
        patch = jobs_pb2.Job()
        paths = _template_fields(patch, body, current)
        if not paths:
            return JSONResponse(_template_main(current))
        updated = await self._call(self.jobs.UpdateJob, jobs_pb2.UpdateJobRequest(
            job_id=current.id, job=patch, update_mask=field_mask_pb2.FieldMask(paths=paths)), principal,
            missing=not_found("job_template", request.path_params["id"]), resource_id=current.number)
        return JSONResponse(_template_main(updated))

    async def delete_template(self, request: Request) -> Response:
        principal = await self._authorize(request, "destroy_job_templates")
        current = await self._template(principal, request.path_params["id"])
        await self._call(self.jobs.DeleteJob, jobs_pb2.DeleteJobRequest(job_id=current.id), principal,
                         missing=not_found("job_template", request.path_params["id"]), resource_id=current.number)
        return JSONResponse(_template_main(current))

    async def clone_template(self, request: Request) -> Response:
        principal = await self._authorize(request, "create_job_templates")
        params = await self._params(request)
        current = await self._template(principal, request.path_params["id"])
        body = params.get("job_template", params)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise unprocessable("name: can't be blank")
        cloned = await self._call(self.jobs.CloneJob, jobs_pb2.CloneJobRequest(job_id=current.id, name=name),
                                  principal)
        return JSONResponse(_template_main(cloned), status_code=201)

    # -- hosts --------------------------------------------------------------------------------------

    async def list_hosts(self, request: Request) -> Response:
        principal = await self._authorize(request, "view_hosts")
        params = await self._params(request)
        page, per_page = self._paging(params)
        results: list = []
        offset = (page - 1) * (per_page or 0)
        total = matched = 0
        while True:
            want = RPC_PAGE if per_page is None else min(RPC_PAGE, per_page - len(results))
            reply = await self._call(self.devices.ListDevices, devices_pb2.ListDevicesRequest(
                query=str(params.get("search") or ""), query_dialect="foreman", offset=min(offset, 2**31 - 1),
                page_size=want, include_counts=True), principal)
            total, matched = reply.total_count, reply.matched_count
            results.extend(_host_main(device) for device in reply.devices)
            offset += len(reply.devices)
            if len(reply.devices) < want or (per_page is not None and len(results) >= per_page):
                break
        return self._envelope(results, total, matched, page, per_page, params)

    async def show_host(self, request: Request) -> Response:
        principal = await self._authorize(request, "view_hosts")
        ident = request.path_params["id"]
        missing = not_found("host", ident)
        number = _number(ident)
        lookup = devices_pb2.GetDeviceRequest(number=number) if number is not None else \
            devices_pb2.GetDeviceRequest(device_id=ident)
        try:
            device = await self._call(self.devices.GetDevice, lookup, principal, missing=missing)
        except ApiError as error:
            if error.status != 404 or number is not None:
                raise
            if len(ident) > MAX_HOST_NAME:
                raise missing from None
            named = await self._call(self.devices.ListDevices, devices_pb2.ListDevicesRequest(
                query=f'name = "{_quoted(ident)}"', query_dialect="foreman", page_size=2), principal)
            if len(named.devices) != 1:
                raise missing from None
            device = named.devices[0]
        return JSONResponse(_host_main(device))


# -- mapping ----------------------------------------------------------------------------------------


def _digits(text: str) -> bool:
    """ASCII digits, few enough for an int64 (int() refuses other digits, and strings over 4300 of them)."""
    return text.isascii() and text.isdigit() and len(text) <= 19


def _number(text: str) -> int | None:
    if not _digits(text):
        return None
    number = int(text)
    return number if 0 < number <= MAX_INT64 else None


def _bool(value: Any, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "on", "t")


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _user_id(subject_id: str) -> int | None:
    """A stable number for a user (Foreman's ids are integers; ours are not)."""
    return zlib.crc32(subject_id.encode()) if subject_id else None


def _time(ts) -> str | None:
    """A time as Foreman's views render it: `2025-05-15 16:05:00 UTC`."""
    if ts is None or (not ts.seconds and not ts.nanos):
        return None
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(ts) -> str | None:
    """A time as Foreman's JSON renders it directly: `2025-05-15T15:26:31.428+00:00`."""
    if ts is None or (not ts.seconds and not ts.nanos):
        return None
    return ts.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds")


def _parse_time(name: str, value: Any):
    from google.protobuf import timestamp_pb2

    if not isinstance(value, str) or not value.strip():
        raise unprocessable(f"{name}: is not a valid time")
    text = value.strip().removesuffix(" UTC")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise unprocessable(f"{name}: is not a valid time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def _int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or isinstance(value, str) and _digits(
            value.strip().removeprefix("-"))):
        raise unprocessable(f"{name}: is not a number")
    number = int(value)
    if not -2**31 <= number < 2**31:
        raise unprocessable(f"{name}: is out of range")
    return number


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _spec(body: Mapping[str, Any]) -> runs_pb2.JobInvocationSpec:
    """job_invocation[...] as the runs service's spec (the service validates it)."""
    if body.get("bookmark_id") not in (None, "") and not body.get("search_query"):
        raise unprocessable("bookmark_id: bookmarks are not supported; give a search_query")
    targeting_type = body.get("targeting_type")
    if targeting_type in (None, "") and body.get("feature"):
        targeting_type = "static_query"
    spec = runs_pb2.JobInvocationSpec(
        targeting_type=_text(targeting_type), search_query=_text(body.get("search_query")),
        randomized_ordering=_bool(body.get("randomized_ordering")),
        description_format=_text(body.get("description_format")), ssh_user=_text(body.get("ssh_user")),
        feature=_text(body.get("feature")))
    inputs = body.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise unprocessable("inputs: must be a JSON object")
    for name, value in inputs.items():
        spec.inputs[str(name)] = _text(value)
    ssh = body.get("ssh") if isinstance(body.get("ssh"), dict) else {}
    spec.effective_user = _text(ssh.get("effective_user") or body.get("effective_user"))
    concurrency = body.get("concurrency_control")
    if isinstance(concurrency, dict):
        level = _int("concurrency_level", concurrency.get("concurrency_level"))
        if level is not None:
            if level <= 0:
                raise unprocessable("concurrency_level: must be greater than 0")
            spec.concurrency_level = level
    for name in ("execution_timeout_interval", "time_to_pickup"):
        value = _int(name, body.get(name))
        if value is not None:
            setattr(spec, name, value)
    scheduling = body.get("scheduling")
    if isinstance(scheduling, dict):
        for name in ("start_at", "start_before"):
            if scheduling.get(name) not in (None, ""):
                getattr(spec, name).CopyFrom(_parse_time(name, scheduling[name]))
    return spec


def _recurrence(body: Mapping[str, Any]) -> runs_pb2.JobInvocationRecurrence:
    recurrence = runs_pb2.JobInvocationRecurrence(cron_line=_text(body.get("cron_line")),
                                                  purpose=_text(body.get("purpose")))
    max_iteration = _int("max_iteration", body.get("max_iteration"))
    if max_iteration is not None:
        if max_iteration < 1:
            raise unprocessable("max_iteration: must be greater than 0")
        recurrence.max_iteration = max_iteration
    if body.get("end_time") not in (None, ""):
        recurrence.end_time.CopyFrom(_parse_time("end_time", body["end_time"]))
    return recurrence


def _progress(invocation: runs_pb2.JobInvocation) -> dict[str, int]:
    counts = {"succeeded": 0, "failed": 0, "pending": 0, "cancelled": 0}
    if invocation.state == State.JOB_INVOCATION_STATE_SCHEDULED:
        return counts  # a queued invocation reports no progress yet
    for status, count in invocation.runs_by_status.items():
        counts[HOST_STATES.get(status, ("error", "failed"))[1]] += count
    return counts


def _invocation_base(invocation: runs_pb2.JobInvocation, missing: int = 0) -> dict[str, Any]:
    """Foreman's job_invocations/base view."""
    status, label, task_state = INVOCATION_STATES[invocation.state]
    spec = invocation.spec
    queued = invocation.state == State.JOB_INVOCATION_STATE_SCHEDULED
    total_hosts: int | str = invocation.host_count if invocation.targeting_resolved else NO_TASK
    progress = _progress(invocation)
    return {
        "id": invocation.number,
        "description": invocation.description or None,
        "job_category": invocation.job_category,
        "targeting_id": invocation.number,
        "status": status,
        "start_at": _time(invocation.start_at),
        "status_label": label,
        "ssh_user": spec.ssh_user or None,
        "time_to_pickup": spec.time_to_pickup if spec.HasField("time_to_pickup") else None,
        "concurrency_level": spec.concurrency_level or None,
        "execution_timeout_interval": spec.execution_timeout_interval
        if spec.HasField("execution_timeout_interval") else None,
        "dynflow_task": {"id": invocation.task_id, "state": task_state},
        "template_id": invocation.job_number,
        "template_name": invocation.job_name,
        "effective_user": invocation.effective_user,
        "succeeded": progress["succeeded"],
        "failed": progress["failed"],
        "pending": progress["pending"],
        "cancelled": progress["cancelled"],
        "total": NO_TASK if queued else total_hosts,
        "missing": missing if invocation.targeting_resolved else 0,
        "total_hosts": total_hosts,
    }


def _mode(invocation: runs_pb2.JobInvocation, recurrence: jobs_pb2.JobSchedule | None) -> dict[str, Any]:
    if invocation.mode == "recurring":
        body: dict[str, Any] = {"mode": "recurring"}
        if recurrence is not None:
            fired = recurrence.iteration
            body["recurrence"] = {
                "id": recurrence.number, "cron_line": recurrence.cron,
                "end_time": _time(recurrence.end_time) if recurrence.HasField("end_time") else None,
                "iteration": fired + (1 if recurrence.state == "active" else 0),
                "task_group_id": recurrence.number, "state": recurrence.state,
                "max_iteration": recurrence.max_iteration or None, "purpose": recurrence.purpose or None,
                "task_count": fired + (1 if recurrence.state == "active" else 0), "action": "Run hosts job:",
                "last_occurence": _time(recurrence.last_fired_at) if recurrence.HasField("last_fired_at") else None,
                "next_occurence": _time(recurrence.next_fire_at)
                if recurrence.state == "active" and recurrence.HasField("next_fire_at") else None,
            }
        return body
    if invocation.mode == "future":
        spec = invocation.spec
        return {"mode": "future", "scheduling": {
            "start_at": _time(spec.start_at) if spec.HasField("start_at") else None,
            "start_before": _time(spec.start_before) if spec.HasField("start_before") else None}}
    return {"mode": "immediate"}


def _host_status(invocation: runs_pb2.JobInvocation, host: runs_pb2.JobInvocationHost) -> str:
    """Foreman's per-host job status: planned / running, then success, error, cancelled; N/A without a task."""
    if not host.run_id or invocation.state == State.JOB_INVOCATION_STATE_SCHEDULED:
        return "cancelled" if invocation.state == State.JOB_INVOCATION_STATE_CANCELLED and not host.run_id \
            else NO_TASK
    word = runs_pb2.RunStatus.Name(host.run_status).removeprefix("RUN_STATUS_").lower()
    return HOST_STATES.get(word, ("error", "failed"))[0]


def _delayed(invocation: runs_pb2.JobInvocation, default: Any) -> dict[str, Any]:
    start = invocation.spec.start_at if invocation.spec.HasField("start_at") else None
    return {"complete": False, "refresh": True, "output": default, "delayed": True,
            "start_at": _iso(start) if start is not None else None}


def _host_output(invocation: runs_pb2.JobInvocation, output: runs_pb2.JobInvocationOutput, raw: bool,
                 default: Any) -> dict[str, Any]:
    refresh = invocation.state not in TERMINAL_STATES
    body: Any = default
    if output.run_id:
        word = runs_pb2.RunStatus.Name(output.run_status).removeprefix("RUN_STATUS_").lower()
        refresh = HOST_STATES.get(word, ("error", "failed"))[1] == "pending"
        lines = [{"output": chunk.data, "output_type": OUTPUT_TYPES.get(chunk.stream, "stdout"),
                  "timestamp": chunk.timestamp} for chunk in output.chunks]
        body = "".join(line["output"] for line in lines) if raw else lines
    return {"complete": not refresh, "refresh": refresh, "output": body}


def _since(value: Any) -> float:
    if value in (None, ""):
        return 0.0
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        raise param_error("since", value, "Must be a number of seconds since the epoch.") from None


def _template_base(job: jobs_pb2.Job) -> dict[str, Any]:
    spec = job.job_template
    return {"id": job.number, "name": job.name, "job_category": spec.job_category,
            "provider_type": spec.provider_type, "snippet": spec.snippet,
            "description_format": spec.description_format or None, "created_at": _time(job.created_at),
            "updated_at": _time(job.updated_at)}


def _template_main(job: jobs_pb2.Job) -> dict[str, Any]:
    spec = job.job_template
    body = _template_base(job)
    body.update({
        "description": job.description or None, "template": job.command, "locked": spec.locked,
        "cloned_from_id": spec.cloned_from_number or None,
        "execution_timeout_interval": spec.execution_timeout_interval
        if spec.HasField("execution_timeout_interval") else None,
        "template_inputs": [{
            "id": i.id, "name": i.name, "input_type": i.input_type, "template_id": job.number, "fact_name": None,
            "variable_name": None, "puppet_parameter_name": None, "puppet_class_name": None,
            "description": i.description or None, "required": i.required,
            "default": i.default_value if i.HasField("default_value") else None, "hidden_value": i.hidden_value,
            "options": list(i.options) or None,
        } for i in spec.inputs],
        "effective_user": {"value": spec.effective_user.value or None,
                           "current_user": spec.effective_user.current_user,
                           "overridable": spec.effective_user.overridable},
        "remote_execution_features": list(spec.features),
        "locations": [], "organizations": [],
    })
    return body


TEMPLATE_ORDER = {"id": lambda j: j.number, "name": lambda j: j.name.lower(),
                  "job_category": lambda j: j.job_template.job_category.lower()}


def _ordered_templates(jobs: list[jobs_pb2.Job], order: str) -> list[jobs_pb2.Job]:
    """Foreman orders templates by name unless told otherwise."""
    parts = order.split()
    key = TEMPLATE_ORDER.get(parts[0].lower()) if parts else TEMPLATE_ORDER["name"]
    if key is None or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
        raise search_error(f"the field '{parts[0] if parts else order}' in the order statement is not valid "
                           f"field for search (id, name, job_category)")
    return sorted(jobs, key=key, reverse=len(parts) == 2 and parts[1].upper() == "DESC")


def _template_fields(job: jobs_pb2.Job, body: Mapping[str, Any], current: jobs_pb2.Job | None) -> list[str]:
    """job_template[...] into `job`; answers the update-mask paths it set."""
    paths: list[str] = []
    spec = job.job_template
    if current is None:
        spec.SetInParent()
    for key, path in (("name", "name"), ("description", "description"), ("template", "command")):
        if key in body:
            setattr(job, path, _text(body[key]))
            paths.append(path)
    for key in ("job_category", "provider_type", "description_format"):
        if key in body:
            setattr(spec, key, _text(body[key]))
            paths.append(f"job_template.{key}")
    for key in ("snippet", "locked"):
        if key in body:
            setattr(spec, key, _bool(body[key]))
            paths.append(f"job_template.{key}")
    if "execution_timeout_interval" in body:
        value = _int("execution_timeout_interval", body["execution_timeout_interval"])
        if value is not None:
            spec.execution_timeout_interval = value
        paths.append("job_template.execution_timeout_interval")
    user = body.get("effective_user_attributes", body.get("effective_user"))
    if isinstance(user, dict):
        base = current.job_template.effective_user if current is not None else None
        spec.effective_user.value = _text(user.get("value", base.value if base else ""))
        spec.effective_user.current_user = _bool(user.get("current_user", base.current_user if base else False))
        spec.effective_user.overridable = _bool(user.get("overridable", base.overridable if base else False))
        paths.append("job_template.effective_user")
    if "remote_execution_features" in body:
        features = body["remote_execution_features"]
        if not isinstance(features, list):
            raise unprocessable("remote_execution_features: must be a list of labels")
        spec.features.extend(_text(f) for f in features)
        paths.append("job_template.features")
    inputs = body.get("template_inputs_attributes", body.get("template_inputs"))
    if inputs is not None:
        if isinstance(inputs, dict):  # Rails' nested attributes also come as {"0": {...}, "1": {...}}
            inputs = list(inputs.values())
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            raise unprocessable("template_inputs: must be a list of objects")
        spec.inputs.extend(_template_inputs(inputs, current))
        paths.append("job_template.inputs")
    return paths


def _template_inputs(given: list[dict], current: jobs_pb2.Job | None) -> list[jobs_pb2.JobTemplateInput]:
    """Rails' nested-attribute semantics: an entry with an id changes (or, with _destroy, removes) that input,
    one without adds an input; inputs not mentioned stay."""
    kept = {i.id: i for i in current.job_template.inputs} if current is not None else {}
    order = list(kept)
    added = []
    for entry in given:
        ident = _int("template_inputs.id", entry.get("id"))
        template_input = jobs_pb2.JobTemplateInput()
        if ident is not None and ident in kept:
            template_input.CopyFrom(kept[ident])
            if _bool(entry.get("_destroy")):
                del kept[ident]
                order.remove(ident)
                continue
        elif ident is not None:
            raise unprocessable(f"template_inputs: no input with id {ident}")
        if "name" in entry:
            template_input.name = _text(entry["name"])
        if "required" in entry:
            template_input.required = _bool(entry["required"])
        if "description" in entry:
            template_input.description = _text(entry["description"])
        if "input_type" in entry:
            template_input.input_type = _text(entry["input_type"])
        if "hidden_value" in entry:
            template_input.hidden_value = _bool(entry["hidden_value"])
        if "advanced" in entry:
            template_input.advanced = _bool(entry["advanced"])
        if "default" in entry:
            if entry["default"] is None:
                template_input.ClearField("default_value")
            else:
                template_input.default_value = _text(entry["default"])
        if "options" in entry:
            options = entry["options"]
            template_input.ClearField("options")
            template_input.options.extend(options.splitlines() if isinstance(options, str)
                                          else [_text(o) for o in options or []])
        if ident is not None and ident in kept:
            kept[ident] = template_input
        else:
            added.append(template_input)
    return [kept[i] for i in order] + added


def _host_base(device: devices_pb2.Device) -> dict[str, Any]:
    return {"name": device.name, "id": device.number, "display_name": device.name}


def _host_main(device: devices_pb2.Device) -> dict[str, Any]:
    """Foreman's hosts/main view, of what a device has (the rest is null)."""
    body = _host_base(device)
    group = device.groups[0] if device.groups else None
    body.update({
        "uuid": device.id, "ip": None, "ip6": None, "mac": None, "last_report": _time(device.last_seen_at),
        "domain_id": None, "domain_name": None, "architecture_id": None,
        "architecture_name": device.facts.get("arch") or None, "operatingsystem_id": None,
        "operatingsystem_name": device.facts.get("os") or None, "model_id": None, "model_name": device.model or None,
        "hostgroup_id": None, "hostgroup_name": group, "hostgroup_title": group, "comment": None, "build": False,
        "enabled": True, "managed": False, "created_at": _time(device.created_at),
        "updated_at": _time(device.updated_at), "global_status": 0, "global_status_label": "OK",
        "organization_id": None, "organization_name": None, "location_id": None, "location_name": None,
    })
    return body
