"""Surface A (AndroMate device jobs) at `/job/api`: HTTP <-> gRPC mapping only.

    POST /job/api/jobs/execute                      {jobName, deviceIds}   scope TRIGGER -> 201 [execution]
    GET  /job/api/jobs/executions/{jobExecutionId}                         scope READ    -> 200 execution

An execution is one device run: {jobExecutionId (the run's `number`), jobName, deviceId, deviceName,
execState, launchedAt (UTC wall time, seconds, no offset)}. Errors are always
`{"code", "message", "status"}` with the J-codes of the surface's documentation; another tenant's job,
device or execution is answered like a missing one (the services are tenant-scoped already).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
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
from services.common.principal import READ, TRIGGER, to_metadata

from .auth import Authenticator, RateLimited
from .surface import RPC_TIMEOUT_SECS, Surface, SurfaceError, unavailable

PREFIX = "/job/api"
MAX_INT64 = 2**63 - 1
LIST_LIMIT = 1000  # ListRuns' and ListJobs' largest page

# The run's status (RunStatus without its prefix) -> execState. Every other status is terminal: FAILURE.
EXEC_STATES: Mapping[str, str] = {
    "delayed": "PENDING",
    "queued": "PENDING",
    "dequeued": "PENDING",
    "waiting": "PENDING",
    "executing": "EXECUTING",
    "completed": "SUCCESS",
}
FAILURE = "FAILURE"


class ApiError(SurfaceError):
    """An answer of this surface in its error shape: `{"code", "message", "status"}`."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    def response(self) -> JSONResponse:
        return JSONResponse({"code": self.code, "message": self.message, "status": self.status},
                            status_code=self.status, headers=self.headers)


def validation() -> ApiError:
    return ApiError(400, "J-500", "Validation error")


JOB_NOT_FOUND = (404, "J-301", "Job not found")
DEVICE_NOT_FOUND = (404, "J-001", "Device not found")
EXECUTION_NOT_FOUND = (404, "J-501", "Job execution not found")


def routes(settings: Settings, channels: Channels, authenticator: Authenticator) -> list[BaseRoute]:
    surface = SurfaceA(settings, channels, authenticator)
    return [
        Route(f"{PREFIX}/jobs/execute", surface.guarded(surface.execute), methods=["POST"]),
        Route(f"{PREFIX}/jobs/executions/{{execution_id}}", surface.guarded(surface.execution), methods=["GET"]),
    ]


class SurfaceA(Surface):
    def failure(self, error: DomainError | HTTPException | grpc.aio.AioRpcError) -> ApiError:
        if isinstance(error, DomainError):
            return _auth_error(error)
        if isinstance(error, HTTPException):  # the body limit (413) and the like
            return ApiError(error.status_code, "J-500" if error.status_code < 500 else "J-900", str(error.detail))
        return ApiError(503, "J-900", "Service unavailable") if unavailable(error) \
            else ApiError(500, "J-900", "Internal error")

    # -- endpoints ----------------------------------------------------------------------------

    async def execute(self, request: Request) -> Response:
        principal = await self._authorize(request, TRIGGER)
        job_name, device_ids = _execute_body(await request.body())
        job = await self._job_named(principal, job_name)
        runs_stub = self.runs
        try:
            first = await runs_stub.TriggerJob(
                runs_pb2.TriggerJobRequest(job_id=job.id, device_ids=device_ids),
                metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            raise _rpc_error(error, DEVICE_NOT_FOUND) from error
        runs = [first]
        if first.invocation_id:
            listed = await runs_stub.ListRuns(
                runs_pb2.ListRunsRequest(invocation_id=first.invocation_id, limit=LIST_LIMIT),
                metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
            runs = sorted(listed.runs, key=lambda run: run.number) or runs
        names = await self._device_names(principal, [run.device_id for run in runs])
        # Each execution in its initial state, as the document has it: however far its device got already
        return JSONResponse([_execution(run, job.name, names, state="PENDING") for run in runs], status_code=201)

    async def execution(self, request: Request) -> Response:
        principal = await self._authorize(request, READ)
        number = _execution_number(request.path_params["execution_id"])
        runs_stub = self.runs
        try:
            run = await runs_stub.GetRun(runs_pb2.GetRunRequest(number=number), metadata=to_metadata(principal),
                                         timeout=RPC_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            raise _rpc_error(error, EXECUTION_NOT_FOUND) from error
        jobs_stub = self.jobs
        try:
            job_name = (await jobs_stub.GetJob(jobs_pb2.GetJobRequest(job_id=run.job_id),
                                               metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)).name
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            job_name = ""  # the job was deleted since; the execution remains
        names = await self._device_names(principal, [run.device_id])
        return JSONResponse(_execution(run, job_name, names))

    # -- calls --------------------------------------------------------------------------------

    async def _authorize(self, request: Request, scope: str) -> Principal:
        try:
            return await self.authenticator.authorize(request.headers, scope)
        except PermissionDenied as error:
            raise ApiError(403, "J-804", f"API key does not have the required permission: {scope}") from error

    async def _job_named(self, principal: Principal, name: str) -> jobs_pb2.Job:
        """The caller's job with exactly this name (the first, by id, if several projects share it)."""
        stub = self.jobs
        token = ""
        while True:
            reply = await stub.ListJobs(jobs_pb2.ListJobsRequest(name=name, page_size=LIST_LIMIT, page_token=token),
                                        metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
            for job in reply.jobs:
                if job.name == name:
                    return job
            token = reply.next_page_token
            if not token:
                raise ApiError(*JOB_NOT_FOUND)

    async def _device_names(self, principal: Principal, device_ids: Iterable[str]) -> dict[str, str]:
        """Device id -> name, in one ResolveTargets call."""
        ids = sorted({device_id for device_id in device_ids if device_id})
        if not ids:
            return {}
        stub = self.devices
        reply = await stub.ResolveTargets(
            devices_pb2.ResolveTargetsRequest(targets=devices_pb2.DeviceTargets(device_ids=ids)),
            metadata=to_metadata(principal), timeout=RPC_TIMEOUT_SECS)
        return {device.id: device.name for device in reply.devices}


# -- mapping ----------------------------------------------------------------------------------


def _execute_body(raw: bytes) -> tuple[str, list[str]]:
    try:
        body: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise validation() from None
    if not isinstance(body, dict):
        raise validation()
    job_name, device_ids = body.get("jobName"), body.get("deviceIds")
    if not isinstance(job_name, str) or not job_name.strip():
        raise validation()
    if not isinstance(device_ids, list) or not device_ids:
        raise validation()
    if not all(isinstance(device_id, str) and device_id.strip() for device_id in device_ids):
        raise validation()
    return job_name, list(dict.fromkeys(device_ids))


def _execution_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 19:  # (longer is over int64, and int() refuses it)
        raise ApiError(*EXECUTION_NOT_FOUND)
    number = int(text)
    if not 0 < number <= MAX_INT64:
        raise ApiError(*EXECUTION_NOT_FOUND)
    return number


def exec_state(status: int) -> str:
    word = runs_pb2.RunStatus.Name(status).removeprefix("RUN_STATUS_").lower()
    return EXEC_STATES.get(word, FAILURE)


def _execution(run: runs_pb2.Run, job_name: str, names: Mapping[str, str], state: str = "") -> dict[str, Any]:
    launched = run.created_at.ToDatetime() if run.HasField("created_at") else None  # naive UTC
    return {
        "jobExecutionId": run.number,
        "jobName": job_name,
        "deviceId": run.device_id,
        "deviceName": names.get(run.device_id, ""),
        "execState": state or exec_state(run.status),
        "launchedAt": launched.strftime("%Y-%m-%dT%H:%M:%S") if launched else None,
    }


def _rpc_error(error: grpc.aio.AioRpcError, not_found: Sequence) -> Exception:
    if error.code() == grpc.StatusCode.NOT_FOUND:
        return ApiError(*not_found)
    if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                        grpc.StatusCode.OUT_OF_RANGE):
        return validation()
    return error


def _auth_error(error: DomainError) -> ApiError:
    if isinstance(error, RateLimited):
        return ApiError(429, "J-805", "Too many failed authentication attempts",
                        headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, Unauthenticated):
        if "expired" in error.message.lower():
            return ApiError(403, "J-803", "API key is expired")
        return ApiError(403, "J-802", "Invalid API key")
    if isinstance(error, PermissionDenied):
        return ApiError(403, "J-804", "API key does not have the required permission")
    return ApiError(500, "J-900", "Internal error")
