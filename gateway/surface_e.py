"""Surface E (IDI-FLY V3 drone missions) at `/v3`: HTTP <-> gRPC mapping only.

    POST   /v3/auth/token           {grant_type, client_id, client_secret}   -> 200 {access_token, token_type, expires_in}
    POST   /v3/jobs/create          scopes WRITE + TRIGGER                   -> 201 {success, job}
    GET    /v3/jobs?status=&limit=  scope READ                               -> 200 {success, jobs, count}
    GET    /v3/jobs/{jobId}         scope READ                               -> 200 {success, job}
    PATCH  /v3/jobs/{jobId}         scope WRITE {name?, description?, priority?} -> 200 {success, job}
    DELETE /v3/jobs/{jobId}         scope WRITE                              -> 200 {success, message}
    POST   /v3/jobs/{jobId}/cancel  scope WRITE                              -> 200 {success, job: {jobId, status, cancelledAt}}

An E job is a mission job of the jobs service (its `mission` spec; `jobId` is the job's id) together
with the one run that creating it triggers; the E status is that run's status (STATUSES), the E
priority that run's priority (10 the most urgent: `run_priority`). The jobs service derives the
targets (the named drone, which must be in the group, or any one available drone of the group) and the
agent handler (`mission`); the runs service dispatches, the agent flies.

Tokens: the OAuth2 client_credentials grant of a service account (the auth service's IssueToken),
a JWT valid one hour, presented as `Authorization: Bearer`. Errors are always
`{"success": false, "error", "message"}`; another tenant's job, group or device is answered like a
missing one (the services are tenant-scoped).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf import timestamp_pb2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from jobline.auth.v1 import auth_pb2
from jobline.auth.v1.auth_pb2 import Principal
from jobline.devices.v1 import devices_pb2
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2
from services.common.channels import Channels
from services.common.config import Settings
from services.common.errors import DomainError, PermissionDenied, Unauthenticated
from services.common.principal import READ, TRIGGER, WRITE, require_scope, to_metadata
from services.common.structs import struct_json

from .auth import Authenticator, RateLimited, client_address, credential_request
from .surface import RPC_TIMEOUT_SECS, Surface, SurfaceError, unavailable

log = logging.getLogger(__name__)

PREFIX = "/v3"
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000
PAGE_SIZE = 1000  # ListJobs' largest page
MAX_ID_LENGTH = 256

# The mission run's status (RunStatus without its prefix) -> the E status. Every other status is FAILED.
STATUSES: Mapping[str, str] = {
    "waiting": "PENDING",
    "delayed": "PENDING",  # scheduledAt still ahead
    "queued": "QUEUED",  # due, waiting for its drone
    "dequeued": "QUEUED",  # handed to the drone's agent, not accepted yet
    "executing": "IN_PROGRESS",
    "completed": "COMPLETED",
    "canceled": "CANCELLED",
}
FAILED = "FAILED"
E_STATUSES = ("PENDING", "QUEUED", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED")
NOT_FINISHED = ("PENDING", "QUEUED", "IN_PROGRESS")
CANCELLABLE = ("PENDING", "QUEUED")
# The runs service dispatches a higher priority first; E's 1-10 has 10 the most urgent: the same order.
RESCHEDULABLE = (runs_pb2.RUN_STATUS_DELAYED, runs_pb2.RUN_STATUS_QUEUED)


def run_priority(priority: int) -> int:
    """The runs service's priority for an E priority (1-10, 10 the most urgent)."""
    return priority


def e_priority(run_priority_: int) -> int:
    return run_priority_


class ApiError(SurfaceError):
    """An answer of this surface in its error shape: `{success: false, error, message}`."""

    def __init__(self, status: int, error: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.headers = status, error, message, headers

    def response(self) -> JSONResponse:
        return JSONResponse({"success": False, "error": self.error, "message": self.message},
                            status_code=self.status, headers=self.headers)


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def job_not_found() -> ApiError:
    return ApiError(404, "Job not found", "The specified job ID does not exist")


def group_not_found() -> ApiError:
    return ApiError(404, "Device group not found", "The specified device group does not exist")


def device_not_found() -> ApiError:
    return ApiError(404, "Device not found", "The specified device does not exist")


def cannot_cancel(status: str) -> ApiError:
    return ApiError(400, "Cannot cancel job", f"The job is {status}; only PENDING or QUEUED jobs can be cancelled")


def routes(settings: Settings, channels: Channels, authenticator: Authenticator) -> list[BaseRoute]:
    surface = SurfaceE(settings, channels, authenticator)
    guarded = surface.guarded
    served = [
        Route(f"{PREFIX}/auth/token", guarded(surface.token), methods=["POST"]),
        Route(f"{PREFIX}/jobs/create", guarded(surface.create), methods=["POST"]),
        Route(f"{PREFIX}/jobs", guarded(surface.list), methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{job_id}}/cancel", guarded(surface.cancel), methods=["POST"]),
        Route(f"{PREFIX}/jobs/{{job_id}}", guarded(surface.get), methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{job_id}}", guarded(surface.update), methods=["PATCH"]),
        Route(f"{PREFIX}/jobs/{{job_id}}", guarded(surface.delete), methods=["DELETE"]),
    ]

    async def unrouted(request: Request) -> Response:
        """Anything else under /v3, answered in this surface's shape: 405 for a known path, else 404."""
        allowed = sorted({method for route in served if route.path_regex.match(request.url.path)
                          for method in route.methods or ()})
        if allowed:
            return ApiError(405, "method_not_allowed", f"{request.method} is not allowed here",
                                       headers={"Allow": ", ".join(allowed)}).response()
        return ApiError(404, "not_found", "No such endpoint").response()

    everything = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return [*served, Route(f"{PREFIX}/{{path:path}}", unrouted, methods=everything), Route(PREFIX, unrouted,
                                                                                          methods=everything)]


class SurfaceE(Surface):
    def failure(self, error: DomainError | HTTPException | grpc.aio.AioRpcError) -> ApiError:
        if isinstance(error, RateLimited):
            return ApiError(429, "too_many_requests", "Too many failed authentication attempts",
                            headers={"Retry-After": str(error.retry_after)})
        if isinstance(error, HTTPException):  # the body limit (413) and the like
            return ApiError(error.status_code, "invalid_request" if error.status_code < 500 else "internal_error",
                            str(error.detail))
        if isinstance(error, grpc.aio.AioRpcError) and unavailable(error):
            return ApiError(503, "service_unavailable", "Service unavailable")
        return ApiError(500, "internal_error", "Internal error")

    # -- endpoints ----------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        """The client_credentials grant (JSON or form body; client credentials also as HTTP Basic)."""
        source = client_address.get()
        limiter = self.authenticator.limiter
        limiter.check(source)
        form = _token_form(await request.body(), request.headers.get("content-type", ""))
        grant_type = form.get("grant_type")
        if not grant_type:
            raise invalid("grant_type is required")
        if grant_type != "client_credentials":
            raise ApiError(400, "unsupported_grant_type", "Only client_credentials is supported")
        client_id, client_secret = _client_credentials(form, request.headers.get("authorization", ""))
        if not client_id or not client_secret:
            raise invalid("client_id and client_secret are required")
        try:
            issued = await self.auth.IssueToken(
                auth_pb2.IssueTokenRequest(client_id=client_id, client_secret=client_secret),
                timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT,
                                    grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
                raise
            delay = limiter.failed(source)
            if delay > 0:
                await asyncio.sleep(delay)
            raise ApiError(401, "invalid_client", "Invalid client credentials") from None
        return JSONResponse({"access_token": issued.access_token, "token_type": issued.token_type or "Bearer",
                             "expires_in": issued.expires_in},
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def create(self, request: Request) -> Response:
        principal = await self._authorize(request, WRITE, TRIGGER)
        body = _create_body(_json_object(await request.body()))
        metadata = to_metadata(principal)
        try:
            await self.devices.GetDeviceGroup(devices_pb2.GetDeviceGroupRequest(group_id=body["deviceGroupId"]),
                                               metadata=metadata, timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise group_not_found() from None
            raise
        mission = jobs_pb2.MissionSpec(mission_id=body.get("missionId") or "", device_group_id=body["deviceGroupId"],
                                       device_id=body.get("deviceId") or "")
        if "priority" in body:
            mission.priority = body["priority"]
        if body.get("metadata") is not None:
            mission.metadata.update(body["metadata"])
        job = jobs_pb2.Job(project_id=principal.project_id, name=body["name"],
                           description=body.get("description") or "", mission=mission)
        try:
            created = await self.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=job), metadata=metadata,
                                                 timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            raise _refusal(error) from error
        trigger = runs_pb2.TriggerJobRequest(job_id=created.id, priority=run_priority(created.mission.priority))
        if body.get("scheduledAt") is not None:
            trigger.scheduled_at.FromDatetime(body["scheduledAt"])
        try:
            run = await self.runs.TriggerJob(trigger, metadata=metadata, timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            await self._discard(principal, created.id)  # nothing stays half-created
            raise _refusal(error, device_not_found()) from error
        return JSONResponse({"success": True, "job": _summary(created, run)}, status_code=201)

    async def list(self, request: Request) -> Response:
        principal = await self._authorize(request, READ)
        wanted = request.query_params.get("status")
        if wanted is not None and wanted not in E_STATUSES:
            raise invalid("status must be one of " + ", ".join(E_STATUSES))
        limit = _limit(request.query_params.get("limit"))
        found: list[dict[str, Any]] = []
        token = ""
        while len(found) < limit:
            reply = await self.jobs.ListJobs(
                jobs_pb2.ListJobsRequest(missions_only=True, page_size=limit if wanted is None else PAGE_SIZE,
                                         page_token=token),
                metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
            runs = await self._latest_runs(principal, [job.id for job in reply.jobs])
            for job in reply.jobs:
                summary = _summary(job, runs.get(job.id))
                if wanted is None or summary["status"] == wanted:
                    found.append(summary)
            token = reply.next_page_token
            if not token:
                break
        found = found[:limit]
        return JSONResponse({"success": True, "jobs": found, "count": len(found)})

    async def get(self, request: Request) -> Response:
        principal = await self._authorize(request, READ)
        job = await self._mission(principal, request.path_params["job_id"])
        run = (await self._latest_runs(principal, [job.id])).get(job.id)
        return JSONResponse({"success": True, "job": _detail(job, run)})

    async def update(self, request: Request) -> Response:
        principal = await self._authorize(request, WRITE)
        body = _update_body(_json_object(await request.body()))
        job = await self._mission(principal, request.path_params["job_id"])
        run = (await self._latest_runs(principal, [job.id])).get(job.id)
        if "priority" in body and (run is None or run.status not in RESCHEDULABLE):
            raise invalid(f"priority can only change before the job is handed to its drone; the job is "
                          f"{e_status(run)}")
        metadata = to_metadata(principal)
        patch, paths = jobs_pb2.Job(), []
        for field in ("name", "description"):
            if field in body:
                setattr(patch, field, body[field])
                paths.append(field)
        if "priority" in body:
            patch.mission.CopyFrom(job.mission)
            patch.mission.priority = body["priority"]
            paths.append("mission")
        updated = job
        if paths:
            try:
                updated = await self.jobs.UpdateJob(
                    jobs_pb2.UpdateJobRequest(job_id=job.id, job=patch, update_mask={"paths": paths}),
                    metadata=metadata, timeout=RPC_TIMEOUT_SECS)
            except grpc.aio.AioRpcError as error:
                raise _refusal(error, job_not_found()) from error
        if "priority" in body and run is not None:
            try:
                run = await self.runs.RescheduleRun(
                    runs_pb2.RescheduleRunRequest(run_id=run.id, priority=run_priority(updated.mission.priority)),
                    metadata=metadata, timeout=RPC_TIMEOUT_SECS)
            except grpc.aio.AioRpcError as error:
                if error.code() not in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION):
                    raise
                # It started meanwhile: put the job's priority back, keep the other changes.
                await self._restore_priority(principal, job)
                raise invalid("priority can only change before the job is handed to its drone") from None
        view = _summary(updated, run)
        return JSONResponse({"success": True, "job": {
            "jobId": view["jobId"], "name": updated.name, "description": updated.description or None,
            "status": view["status"], "priority": view["priority"], "updatedAt": _iso(updated.updated_at)}})

    async def delete(self, request: Request) -> Response:
        """Deletes the mission job; a mission still pending, queued or in progress is cancelled first."""
        principal = await self._authorize(request, WRITE)
        job = await self._mission(principal, request.path_params["job_id"])
        run = (await self._latest_runs(principal, [job.id])).get(job.id)
        metadata = to_metadata(principal)
        if run is not None and e_status(run) in NOT_FINISHED:
            try:
                await self.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.id), metadata=metadata,
                                           timeout=RPC_TIMEOUT_SECS)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.ABORTED:  # it ended meanwhile
                    raise
        try:
            await self.jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job.id), metadata=metadata,
                                       timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            raise _refusal(error, job_not_found()) from error
        return JSONResponse({"success": True, "message": "Job deleted successfully"})

    async def cancel(self, request: Request) -> Response:
        principal = await self._authorize(request, WRITE)
        job = await self._mission(principal, request.path_params["job_id"])
        run = (await self._latest_runs(principal, [job.id])).get(job.id)
        if run is None:  # its run is still being created (or was never triggered)
            raise ApiError(400, "Cannot cancel job", "The job is not in a cancellable state yet")
        status = e_status(run)
        if status not in CANCELLABLE:
            raise cannot_cancel(status)
        try:
            canceled = await self.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.id, only_if_not_started=True),
                                                  metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION):
                latest = (await self._latest_runs(principal, [job.id])).get(job.id)
                raise cannot_cancel(e_status(latest)) from None
            raise _refusal(error, job_not_found()) from error
        return JSONResponse({"success": True, "job": {
            "jobId": job.id, "status": e_status(canceled), "cancelledAt": _iso(canceled.finished_at)}})

    # -- calls --------------------------------------------------------------------------------

    async def _authorize(self, request: Request, *scopes: str) -> Principal:
        """The caller's principal, holding every scope; 401 without a valid token, 403 without a scope."""
        credential = credential_request(request.headers)
        if credential is None:
            self.authenticator.limiter.check(client_address.get())
            raise ApiError(401, "unauthorized", "A Bearer access token is required",
                           headers={"WWW-Authenticate": 'Bearer realm="v3"'})
        try:
            principal = await self.authenticator.authenticate_request(credential)
        except RateLimited:
            raise
        except Unauthenticated as error:
            expired = "expired" in error.message.lower()
            message = "The access token expired" if expired else "The access token is invalid"
            raise ApiError(401, "invalid_token", message, headers={
                "WWW-Authenticate": f'Bearer realm="v3", error="invalid_token", error_description="{message}"'}) \
                from None
        for scope in scopes:
            try:
                require_scope(principal, scope)
            except PermissionDenied:
                raise ApiError(403, "insufficient_scope", f"The access token lacks the {scope} scope", headers={
                    "WWW-Authenticate": f'Bearer realm="v3", error="insufficient_scope", scope="{scope}"'}) \
                    from None
        return principal

    async def _mission(self, principal: Principal, job_id: str) -> jobs_pb2.Job:
        """The caller's mission job with this id (any other job is not an E job: not found)."""
        if not job_id or len(job_id) > MAX_ID_LENGTH:
            raise job_not_found()
        try:
            job = await self.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=to_metadata(principal),
                                          timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise job_not_found() from None
            raise
        if not job.HasField("mission"):
            raise job_not_found()
        return job

    async def _latest_runs(self, principal: Principal, job_ids: Iterable[str]) -> dict[str, runs_pb2.Run]:
        """Job id -> its most recent run, in one ListRuns call."""
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}
        reply = await self.runs.ListRuns(runs_pb2.ListRunsRequest(latest_for_job_ids=ids),
                                          metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        return {run.job_id: run for run in reply.runs}

    async def _discard(self, principal: Principal, job_id: str) -> None:
        try:
            await self.jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job_id), metadata=to_metadata(principal),
                                       timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            log.warning("could not delete the mission job %s whose run was refused: %s %s", job_id,
                        error.code().name, error.details())

    async def _restore_priority(self, principal: Principal, job: jobs_pb2.Job) -> None:
        try:
            await self.jobs.UpdateJob(jobs_pb2.UpdateJobRequest(job_id=job.id, job=jobs_pb2.Job(mission=job.mission),
                                                                 update_mask={"paths": ["mission"]}),
                                       metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            log.warning("could not restore the priority of mission job %s: %s", job.id, error.code().name)


# -- mapping ----------------------------------------------------------------------------------


def e_status(run: runs_pb2.Run | None) -> str:
    """The E status of a mission's run (PENDING while its run is being created)."""
    if run is None:
        return "PENDING"
    word = runs_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_").lower()
    return STATUSES.get(word, FAILED)


def _summary(job: jobs_pb2.Job, run: runs_pb2.Run | None) -> dict[str, Any]:
    """The job as create and list answer it."""
    return {"jobId": job.id, "name": job.name, "status": e_status(run),
            "priority": e_priority(run.priority) if run is not None else job.mission.priority,
            "createdAt": _iso(job.created_at)}


def _detail(job: jobs_pb2.Job, run: runs_pb2.Run | None) -> dict[str, Any]:
    """The job as GET answers it: the document's fields, then when it is due, ran and ended."""
    mission = job.mission
    summary = _summary(job, run)
    view: dict[str, Any] = {
        "jobId": job.id, "name": job.name, "description": job.description or None,
        "missionId": mission.mission_id or None,
        "deviceId": (run.device_id if run is not None and run.device_id else mission.device_id) or None,
        "deviceGroupId": mission.device_group_id, "status": summary["status"], "priority": summary["priority"],
        "createdAt": summary["createdAt"], "metadata": struct_json(mission.metadata),
        "updatedAt": _iso(job.updated_at),
    }
    if run is not None:
        view["scheduledAt"] = _iso(run.scheduled_at)
        if run.HasField("started_at"):
            view["startedAt"] = _iso(run.started_at)
        if run.HasField("finished_at"):
            view["cancelledAt" if summary["status"] == "CANCELLED" else "completedAt"] = _iso(run.finished_at)
        if summary["status"] == FAILED and run.error:
            view["error"] = run.error
    return view


def _iso(ts: timestamp_pb2.Timestamp) -> str | None:
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    return body


def _string(body: Mapping[str, Any], field: str, required: bool = False) -> None:
    value = body.get(field)
    if value is None:
        if required:
            raise invalid(f"{field} is required")
        return
    if not isinstance(value, str):
        raise invalid(f"{field} must be a string")
    if required and not value.strip():
        raise invalid(f"{field} is required")


def _priority(body: Mapping[str, Any]) -> None:
    value = body["priority"]
    whole = isinstance(value, int) or isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if isinstance(value, bool) or not whole or not -2**31 <= value < 2**31:  # (an int32 in the proto)
        raise invalid("priority must be an integer between 1 and 10")
    body["priority"] = int(value)  # type: ignore[index]


CREATE_FIELDS = ("name", "description", "missionId", "deviceId", "deviceGroupId", "priority", "scheduledAt",
                 "metadata")
UPDATE_FIELDS = ("name", "description", "priority")


def _create_body(body: dict[str, Any]) -> dict[str, Any]:
    """The create request, type-checked (the jobs service checks the values)."""
    unknown = sorted(set(body) - set(CREATE_FIELDS))
    if unknown:
        raise invalid(f"unknown field {unknown[0]}")
    _string(body, "name", required=True)
    _string(body, "deviceGroupId", required=True)
    for field in ("description", "missionId", "deviceId"):
        _string(body, field)
    if body.get("priority") is not None:
        _priority(body)
    else:
        body.pop("priority", None)
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise invalid("metadata must be an object")
    if body.get("scheduledAt") is not None:
        body["scheduledAt"] = _datetime(body["scheduledAt"])
    return body


def _update_body(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - set(UPDATE_FIELDS))
    if unknown:
        raise invalid(f"{unknown[0]} cannot be updated; only name, description and priority can")
    body = {field: value for field, value in body.items() if value is not None}
    _string(body, "name")
    _string(body, "description")
    if "priority" in body:
        _priority(body)
    return body


def _datetime(value: Any) -> datetime:
    """An ISO 8601 date-time (UTC when it has no offset)."""
    if not isinstance(value, str):
        raise invalid("scheduledAt must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise invalid("scheduledAt must be an ISO 8601 date-time, e.g. 2024-01-15T10:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or len(text) > 4 or not 1 <= int(text) <= MAX_LIMIT:
        raise invalid(f"limit must be an integer between 1 and {MAX_LIMIT}")
    return int(text)


def _token_form(raw: bytes, content_type: str) -> dict[str, str]:
    """The token request's fields, from a JSON or an application/x-www-form-urlencoded body."""
    if not raw.strip():
        return {}
    if "application/x-www-form-urlencoded" in content_type.lower():
        try:
            return dict(parse_qsl(raw.decode(), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            raise invalid("the body is not a valid form") from None
    body = _json_object(raw)
    fields = {}
    for field in ("grant_type", "client_id", "client_secret"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise invalid(f"{field} must be a string")
        if value:
            fields[field] = value
    return fields


def _client_credentials(form: Mapping[str, str], authorization: str) -> tuple[str, str]:
    """client_id and client_secret from the body, or from `Authorization: Basic` (RFC 6749 2.3.1)."""
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "basic" and value.strip() and not (client_id or client_secret):
        try:
            client_id, _, client_secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ApiError(401, "invalid_client", "Invalid client credentials") from None
    return client_id, client_secret


def _refusal(error: grpc.aio.AioRpcError, not_found: ApiError | None = None) -> Exception:
    """A service's refusal in this surface's shape (other failures propagate as they are)."""
    code = error.code()
    if code == grpc.StatusCode.NOT_FOUND and not_found is not None:
        return not_found
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return ApiError(403, "insufficient_scope", error.details() or "permission denied")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE,
                grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.ABORTED):
        return invalid(error.details() or "invalid request")
    return error
