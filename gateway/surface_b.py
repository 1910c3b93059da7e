"""Surface B (TrueFoundry job runs) at `/api/svc/v1`: HTTP <-> gRPC mapping only.

    POST   /api/svc/v1/jobs/trigger                              scope TRIGGER -> 200 {message, jobRunName, data}
    GET    /api/svc/v1/jobs/{applicationId}/runs                 scope READ    -> 200 {data: [JobRun], pagination}
    GET    /api/svc/v1/jobs/{applicationId}/runs/{jobRunName}    scope READ    -> 200 {data: JobRun}
    DELETE /api/svc/v1/jobs/{applicationId}/runs/{jobRunName}    scope WRITE   -> 200 {message}
    POST   /api/svc/v1/jobs/terminate                            scope WRITE   -> 200 {message, jobRunStatus}

An application is a job (`applicationId` is the job's id), a deployment one of its immutable
versions (`deploymentId` is the version's id, `deploymentVersion` its number); a job run is a run,
named uniquely among its job's runs by the runs service. Times are epoch milliseconds, `duration`
milliseconds. Errors are `{"statusCode", "message", "code", "details"?}`; another tenant's
application, deployment or run is answered like a missing one (the services are tenant-scoped).
"""

from __future__ import annotations

import asyncio
import json
import math
import shlex
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import struct_pb2
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from jobline.auth.v1 import auth_pb2
from jobline.auth.v1.auth_pb2 import Principal
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2
from services.common.channels import Channels
from services.common.config import Settings
from services.common.errors import DomainError, PermissionDenied, Unauthenticated
from services.common.principal import READ, TRIGGER, WRITE, to_metadata

from .auth import Authenticator, RateLimited
from .surface import RPC_TIMEOUT_SECS, Surface, SurfaceError, unavailable

PREFIX = "/api/svc/v1"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
MAX_OFFSET = 2**31 - 1

# The run's status (RunStatus without its prefix) -> the job run's status. Anything else: UNKNOWN.
# TERMINATION_REQUESTED and TERMINATING never show: a cancel ends the run (TERMINATED) at once.
JOB_RUN_STATUSES: Mapping[str, str] = {
    "waiting": "CREATED",
    "queued": "CREATED",
    "delayed": "SCHEDULED",
    "dequeued": "SCHEDULED",
    "executing": "RUNNING",
    "completed": "FINISHED",
    "failed": "FAILED",
    "timed_out": "FAILED",
    "crashed": "FAILED",
    "system_failed": "FAILED",
    "expired": "FAILED",
    "dead_letter": "FAILED",
    "canceled": "TERMINATED",
}
UNKNOWN = "UNKNOWN"
STATUSES = ("CREATED", "SCHEDULED", "RUNNING", "FINISHED", "FAILED", "TERMINATION_REQUESTED", "TERMINATING",
            "TERMINATED", "UNKNOWN")
SORT_FIELDS: Mapping[str, int] = {
    "startTime": runs_pb2.RUN_SORT_FIELD_CREATED_AT,
    "duration": runs_pb2.RUN_SORT_FIELD_DURATION,
    "deploymentVersion": runs_pb2.RUN_SORT_FIELD_JOB_VERSION,
    "triggeredBy": runs_pb2.RUN_SORT_FIELD_TRIGGERED_BY,
    "status": runs_pb2.RUN_SORT_FIELD_STATUS,
}
SUBJECT_TYPES: Mapping[int, str] = {
    auth_pb2.SUBJECT_TYPE_USER: "user",
    auth_pb2.SUBJECT_TYPE_SERVICE_ACCOUNT: "serviceaccount",
    auth_pb2.SUBJECT_TYPE_DEVICE: "serviceaccount",
}

# gRPC refusals -> (HTTP status, code); anything else is a 5xx.
BY_RPC_STATUS: Mapping[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "BAD_REQUEST"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "BAD_REQUEST"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "BAD_REQUEST"),
    grpc.StatusCode.NOT_FOUND: (404, "NOT_FOUND"),
    grpc.StatusCode.ALREADY_EXISTS: (422, "UNPROCESSABLE_ENTITY"),
    grpc.StatusCode.ABORTED: (422, "UNPROCESSABLE_ENTITY"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "TOO_MANY_REQUESTS"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "FORBIDDEN"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "UNAUTHORIZED"),
}
HTTP_CODES: Mapping[int, str] = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                                 405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
                                 422: "UNPROCESSABLE_ENTITY", 429: "TOO_MANY_REQUESTS",
                                 500: "INTERNAL_SERVER_ERROR", 503: "SERVICE_UNAVAILABLE"}

APPLICATION_NOT_FOUND = "Application not found"
DEPLOYMENT_NOT_FOUND = "Deployment not found"
JOB_RUN_NOT_FOUND = "Job run not found"


class ApiError(SurfaceError):
    """An answer of this surface in its error shape: `{statusCode, message, code, details?}`."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None,
                 headers: Mapping[str, str] | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.details, self.headers = status, message, details, headers
        self.code = code or HTTP_CODES.get(status, "INTERNAL_SERVER_ERROR" if status >= 500 else "BAD_REQUEST")

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"statusCode": self.status, "message": self.message, "code": self.code}
        if self.details:
            body["details"] = self.details
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def bad_request(message: str, field: str = "") -> ApiError:
    return ApiError(400, message, [{"field": field, "message": message}] if field else None)


def routes(settings: Settings, channels: Channels, authenticator: Authenticator) -> list[BaseRoute]:
    surface = SurfaceB(settings, channels, authenticator)
    return [
        Route(f"{PREFIX}/jobs/trigger", surface.guarded(surface.trigger), methods=["POST"]),
        Route(f"{PREFIX}/jobs/terminate", surface.guarded(surface.terminate), methods=["POST"]),
        Route(f"{PREFIX}/jobs/{{application_id}}/runs", surface.guarded(surface.list_runs), methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{application_id}}/runs/{{job_run_name}}", surface.guarded(surface.get_run),
              methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{application_id}}/runs/{{job_run_name}}", surface.guarded(surface.delete_run),
              methods=["DELETE"]),
    ]


class SurfaceB(Surface):
    def failure(self, error: DomainError | HTTPException | grpc.aio.AioRpcError) -> ApiError:
        if isinstance(error, DomainError):
            return _auth_error(error)
        if isinstance(error, HTTPException):  # the body limit (413) and the like
            return ApiError(error.status_code, str(error.detail))
        mapped = BY_RPC_STATUS.get(error.code())
        if mapped is not None:
            return ApiError(mapped[0], error.details() or mapped[1], code=mapped[1])
        return ApiError(503, "Service unavailable") if unavailable(error) else ApiError(500, "Internal server error")

    # -- endpoints ----------------------------------------------------------------------------

    async def trigger(self, request: Request) -> Response:
        principal = await self._authorize(request, TRIGGER)
        trigger = _trigger_request(await request.body())
        run = await self.runs.TriggerJob(trigger, metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        job = await self._application(principal, run.job_id)
        return JSONResponse({"message": "Job triggered", "jobRunName": run.name, "data": job_run(run, job)})

    async def list_runs(self, request: Request) -> Response:
        principal = await self._authorize(request, READ)
        application_id = request.path_params["application_id"]
        query, offset, limit = _list_request(application_id, request.query_params)
        if query is None:  # only statuses no run is ever in
            job, reply = await self._application(principal, application_id), runs_pb2.ListRunsResponse()
        else:
            job, reply = await asyncio.gather(
                self._application(principal, application_id),
                self.runs.ListRuns(query, metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS))
        return JSONResponse({"data": [job_run(run, job) for run in reply.runs],
                             "pagination": {"total": reply.total_count, "offset": offset, "limit": limit}})

    async def get_run(self, request: Request) -> Response:
        principal = await self._authorize(request, READ)
        job, run = await self._named_run(principal, request.path_params["application_id"],
                                         request.path_params["job_run_name"])
        return JSONResponse({"data": job_run(run, job)})

    async def delete_run(self, request: Request) -> Response:
        principal = await self._authorize(request, WRITE)
        application_id, name = request.path_params["application_id"], request.path_params["job_run_name"]
        await self._application(principal, application_id)
        try:
            await self.runs.PurgeRun(runs_pb2.PurgeRunRequest(job_id=application_id, name=name),
                                      metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.ABORTED:  # still active: terminate it first
                raise ApiError(409, error.details() or "Job run is still active") from error
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise ApiError(404, JOB_RUN_NOT_FOUND) from error
            raise
        return JSONResponse({"message": "Job run deleted"})

    async def terminate(self, request: Request) -> Response:
        principal = await self._authorize(request, WRITE)
        deployment_id, job_run_name = _terminate_request(request.query_params, await request.body())
        try:
            version = await self.jobs.GetJobVersion(jobs_pb2.GetJobVersionRequest(version_id=deployment_id),
                                                     metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise ApiError(404, DEPLOYMENT_NOT_FOUND) from error
            raise
        try:
            run = await self.runs.CancelRun(runs_pb2.CancelRunRequest(job_id=version.job_id, name=job_run_name),
                                             metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise ApiError(404, JOB_RUN_NOT_FOUND) from error
            raise  # ABORTED: it has already ended (422)
        return JSONResponse({"message": "Job run terminated", "jobRunStatus": job_run_status(run.status)})

    # -- calls --------------------------------------------------------------------------------

    async def _authorize(self, request: Request, scope: str) -> Principal:
        try:
            return await self.authenticator.authorize(request.headers, scope)
        except PermissionDenied as error:
            raise ApiError(403, f"Forbidden: the API key lacks the {scope} permission") from error

    async def _application(self, principal: Principal, application_id: str) -> jobs_pb2.Job:
        try:
            return await self.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=application_id),
                                           metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise ApiError(404, APPLICATION_NOT_FOUND) from error
            raise

    async def _run_named(self, principal: Principal, job_id: str, name: str) -> runs_pb2.Run:
        try:
            return await self.runs.GetRun(runs_pb2.GetRunRequest(job_id=job_id, name=name),
                                           metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise ApiError(404, JOB_RUN_NOT_FOUND) from error
            raise

    async def _named_run(self, principal: Principal, application_id: str,
                         name: str) -> tuple[jobs_pb2.Job, runs_pb2.Run]:
        """The application and its run of that name (404 for either missing), in parallel."""
        job, run = await asyncio.gather(self._application(principal, application_id),
                                        self._run_named(principal, application_id, name),
                                        return_exceptions=True)
        for outcome in (job, run):
            if isinstance(outcome, BaseException):
                raise outcome
        return job, run  # type: ignore[return-value]


# -- requests ---------------------------------------------------------------------------------


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body: Any = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    return body


def _optional_text(body: Mapping[str, Any], key: str, where: str = "") -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"{where}{key} must be a string", f"{where}{key}")
    return value.strip()


def _optional_object(body: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{where}{key} must be an object", f"{where}{key}")
    return value


def _trigger_request(raw: bytes) -> runs_pb2.TriggerJobRequest:
    body = _json_object(raw)
    deployment_id = _optional_text(body, "deploymentId")
    application_id = _optional_text(body, "applicationId")
    if not deployment_id and not application_id:
        raise bad_request("One of deploymentId or applicationId is required", "deploymentId")
    given = _optional_object(body, "input")
    command: Any = given.get("command")
    if isinstance(command, list) and command and all(isinstance(part, str) for part in command):
        command = shlex.join(command)
    if command is not None and not isinstance(command, str):
        raise bad_request("input.command must be a string or a list of strings", "input.command")
    params = _optional_object(given, "params", "input.")
    metadata = _optional_object(body, "metadata")
    alias = _optional_text(metadata, "job_run_name_alias", "metadata.")
    request = runs_pb2.TriggerJobRequest(job_id=application_id, job_version_id=deployment_id,
                                         command=(command or "").strip(), name=alias)
    if params:
        try:
            request.payload.CopyFrom(_struct(params))
        except (ValueError, TypeError):
            raise bad_request("input.params must be a JSON object", "input.params") from None
    return request


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _values(query: QueryParams, key: str) -> list[str]:
    """A query parameter given repeatedly (`status=A&status=B`) or comma-separated (`status=A,B`)."""
    return [part.strip() for value in query.getlist(key) for part in value.split(",") if part.strip()]


def _integer(query: QueryParams, key: str, default: int, low: int, high: int) -> int:
    text = query.get(key)
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise bad_request(f"{key} must be an integer", key) from None
    if not low <= value <= high:
        raise bad_request(f"{key} must be between {low} and {high}", key)
    return value


def _list_request(application_id: str, query: QueryParams) -> tuple[runs_pb2.ListRunsRequest | None, int, int]:
    """The ListRuns request for the query (None when the statuses asked for match no run), offset, limit."""
    limit = _integer(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _integer(query, "offset", 0, 0, MAX_OFFSET)
    request = runs_pb2.ListRunsRequest(job_id=application_id, limit=limit, offset=offset, include_total_count=True,
                                       name_prefix=(query.get("searchPrefix") or "").strip())
    sort_by = (query.get("sortBy") or "").strip()
    if sort_by:
        if sort_by not in SORT_FIELDS:
            raise bad_request("sortBy must be one of " + ", ".join(SORT_FIELDS), "sortBy")
        request.order_by = SORT_FIELDS[sort_by]
    order = (query.get("order") or "").strip().lower()
    if order not in ("", "asc", "desc"):
        raise bad_request("order must be asc or desc", "order")
    request.ascending = order == "asc"
    request.triggered_by_subject_names.extend(dict.fromkeys(_values(query, "triggeredBy")))
    for value in _values(query, "versionNumbers"):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number != int(number) or not 0 < number < 2**31:
            raise bad_request("versionNumbers must be positive whole numbers", "versionNumbers")
        request.job_versions.append(int(number))
    statuses = _values(query, "status")
    unknown = [status for status in statuses if status not in STATUSES]
    if unknown:
        raise bad_request(f"status must be one of {', '.join(STATUSES)}", "status")
    if statuses:
        wanted = sorted({runs_pb2.RunStatus.Value(f"RUN_STATUS_{word.upper()}")
                         for word, status in JOB_RUN_STATUSES.items() if status in statuses})
        if not wanted:
            return None, offset, limit
        request.statuses.extend(wanted)
    return request, offset, limit


def _terminate_request(query: QueryParams, raw: bytes) -> tuple[str, str]:
    """deploymentId and jobRunName, from the query (as the vendor's client sends them) or a JSON body."""
    body = _json_object(raw) if raw.strip() else {}
    deployment_id = (query.get("deploymentId") or "").strip() or _optional_text(body, "deploymentId")
    job_run_name = (query.get("jobRunName") or "").strip() or _optional_text(body, "jobRunName")
    if not deployment_id:
        raise bad_request("deploymentId is required", "deploymentId")
    if not job_run_name:
        raise bad_request("jobRunName is required", "jobRunName")
    return deployment_id, job_run_name


# -- mapping ----------------------------------------------------------------------------------


def job_run_status(status: int) -> str:
    word = runs_pb2.RunStatus.Name(status).removeprefix("RUN_STATUS_").lower()
    return JOB_RUN_STATUSES.get(word, UNKNOWN)


def _epoch_ms(run: runs_pb2.Run, field: str) -> int | None:
    if not run.HasField(field):
        return None
    ts = getattr(run, field)
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def job_run(run: runs_pb2.Run, job: jobs_pb2.Job) -> dict[str, Any]:
    """The vendor's JobRun: every documented key (null when it does not apply), then the ids its client reads."""
    subject = run.triggered_by_subject
    return {
        "name": run.name,
        "applicationName": job.name,
        "deploymentVersion": str(run.job_version),
        "createdAt": _epoch_ms(run, "created_at"),
        "endTime": _epoch_ms(run, "finished_at"),
        "duration": run.duration_ms if run.HasField("duration_ms") else None,
        "command": run.command,
        "totalRetries": max(run.attempt - 1, 0),
        "error": run.error or None,
        "status": job_run_status(run.status),
        "triggeredBy": subject.name or subject.id or None,
        "triggeredBySubject": {
            "subjectId": subject.id,
            "subjectType": SUBJECT_TYPES.get(subject.type, "user"),
            "subjectSlug": subject.name or subject.id,
            "subjectDisplayName": subject.name or subject.id,
        },
        "exitCode": run.exit_code if run.HasField("exit_code") else None,
        "externalId": str(run.number) if run.number else None,
        "id": run.id,
        "applicationId": run.job_id,
        "deploymentId": run.job_version_id,
    }


def _auth_error(error: DomainError) -> ApiError:
    if isinstance(error, RateLimited):
        return ApiError(429, "Too many failed authentication attempts",
                        headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, Unauthenticated):
        bearer = {"WWW-Authenticate": "Bearer"}
        if "expired" in error.message.lower():
            return ApiError(401, "Unauthorized: the token has expired", headers=bearer)
        if "missing" in error.message.lower():
            return ApiError(401, "Unauthorized: a bearer token is required", headers=bearer)
        return ApiError(401, "Unauthorized: invalid token", headers=bearer)
    if isinstance(error, PermissionDenied):
        return ApiError(403, "Forbidden")
    return ApiError(500, "Internal server error")
