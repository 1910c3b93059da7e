"""The abuse rules on every surface (C's own finer points: test_credentials.py, tests/gateway/test_native.py):
repeated failed authentication from one address is slowed, then refused (429, or the surface's documented
equivalent) without locking anyone else out; bodies over 1 MiB are refused in the surface's shape; over-long
texts get a clear error in the surface's shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.auth import FailureLimiter

from .conftest import Stack
from .surfaces import Caller, Drones, basic, bearer, eventually, new_caller

LONG = "x" * 20_000  # well under the body limit, far over every text limit


# -- repeated failed authentication ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Guessing:
    """A surface's request with a wrong credential, its answer to it, and its answer once the address is refused."""

    method: str
    url: str
    wrong: Callable[[int], dict[str, str]]  # the n-th guess's headers
    refused: tuple[int, Any]
    refusal: tuple[int, Any]
    body: Any = None
    ok: int = 200  # the answer with the right credential


GUESSING: dict[str, Guessing] = {
    "A": Guessing("GET", "/job/api/jobs/executions/1", lambda n: {"X-API-Key": f"amk_live_guess{n}"},
                  (403, {"code": "J-802", "message": "Invalid API key", "status": 403}),
                  (429, {"code": "J-805", "message": "Too many failed authentication attempts", "status": 429}),
                  ok=404),  # (J-501: no execution 1, once the key is good)
    "B": Guessing("GET", "/api/svc/v1/jobs/{job}/runs", lambda n: bearer(f"jl_live_guess{n}"),
                  (401, {"statusCode": 401, "message": "Unauthorized: invalid token", "code": "UNAUTHORIZED"}),
                  (429, {"statusCode": 429, "message": "Too many failed authentication attempts",
                         "code": "TOO_MANY_REQUESTS"})),
    "C": Guessing("GET", "/v1/jobs", lambda n: bearer(f"jl_live_guess{n}"),
                  (401, {"error": {"code": "unauthorized", "message": "invalid API key", "details": []}}),
                  (429, {"error": {"code": "rate_limited", "details": [],
                                   "message": "too many failed authentication attempts; retry later"}})),
    # Foreman's brute-force protection answers 401 with its own message.
    "D": Guessing("GET", "/api/hosts", lambda n: basic("admin", f"jlp_guess{n}"),
                  (401, {"error": {"message": "Unable to authenticate user admin"}}),
                  (401, {"error": {"message": "Too many tries, please try again in a few minutes."}})),
    "E": Guessing("GET", "/v3/jobs", lambda n: bearer(f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.guess{n}"),
                  (401, {"success": False, "error": "invalid_token", "message": "The access token is invalid"}),
                  (429, {"success": False, "error": "too_many_requests",
                         "message": "Too many failed authentication attempts"})),
    # E's token endpoint: guessing client secrets.
    "E token": Guessing("POST", "/v3/auth/token", lambda n: {},
                        (401, {"success": False, "error": "invalid_client", "message": "Invalid client credentials"}),
                        (429, {"success": False, "error": "too_many_requests",
                               "message": "Too many failed authentication attempts"}),
                        body={"grant_type": "client_credentials", "client_id": "{client_id}",
                              "client_secret": "jlcs_guess"}),
}


class RecordingLimiter(FailureLimiter):
    """Remembers how long each failure's answer was held back."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delays: list[float] = []

    def failed(self, source: str) -> float:
        delay = super().failed(source)
        self.delays.append(delay)
        return delay


def render(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in values.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, dict):
        return {k: render(v, values) for k, v in value.items()}
    return value


async def good_request(client: httpx.AsyncClient, surface: str, guessing: Guessing, caller: Caller,
                       values: dict[str, str]) -> httpx.Response:
    """The same request with the caller's right credential (for the token endpoint: its real secret)."""
    if surface == "E token":
        return await client.post(guessing.url, json={"grant_type": "client_credentials", "client_id": caller.client_id,
                                                     "client_secret": caller.client_secret})
    return await client.request(guessing.method, render(guessing.url, values), headers=caller.headers(surface))


@pytest.mark.parametrize("surface", list(GUESSING))
async def test_guessing_credentials_is_slowed_then_refused_for_that_address_only(stack: Stack, surface: str) -> None:
    guessing = GUESSING[surface]
    now = [0.0]
    limiter = RecordingLimiter(slow_after=3, refuse_after=6, half_life=60, max_delay=0.01, clock=lambda: now[0])
    gateway = stack.client()
    gateway.app.state.authenticator.limiter = limiter  # type: ignore[attr-defined]
    transport = {ip: httpx.ASGITransport(app=gateway.app, client=(ip, 4321))  # type: ignore[attr-defined]
                 for ip in ("10.0.0.66", "10.0.0.7")}
    async with gateway, httpx.AsyncClient(transport=transport["10.0.0.66"], base_url="http://gateway") as attacker, \
            httpx.AsyncClient(transport=transport["10.0.0.7"], base_url="http://gateway") as honest:
        caller = await new_caller(stack, honest, "acme")
        job = await honest.post("/v1/jobs", headers=caller.headers("C"), json={
            "project_id": "default", "name": "n", "slug": "n", "endpoint_url": "http://x.test/"})
        values = {"job": job.json()["id"], "client_id": caller.client_id}
        answers = []
        for n in range(8):
            response = await attacker.request(guessing.method, render(guessing.url, values), headers=guessing.wrong(n),
                                              json=render(guessing.body, values))
            answers.append((response.status_code, response.json()))
        assert answers[:6] == [guessing.refused] * 6, answers
        assert answers[6:] == [guessing.refusal] * 2, answers
        assert limiter.delays[:3] == [0, 0, 0] and all(d > 0 for d in limiter.delays[3:6])  # slowed, then refused
        # Refused even with the right credential, and told when to come back; others are not affected.
        refused = await good_request(attacker, surface, guessing, caller, values)
        assert (refused.status_code, refused.json()) == guessing.refusal
        assert int(refused.headers["retry-after"]) >= 1
        assert (await good_request(honest, surface, guessing, caller, values)).status_code == guessing.ok
        now[0] += 180  # the address's score decays
        assert (await good_request(attacker, surface, guessing, caller, values)).status_code == guessing.ok


# -- bodies over the limit ------------------------------------------------------------------------------------

TOO_LARGE = b"{" + b" " * (1024 * 1024) + b"}"
BODY_LIMIT = {
    "A": ("/job/api/jobs/execute", {"code": "J-500", "message": "request body larger than 1 MiB", "status": 413}),
    "B": ("/api/svc/v1/jobs/trigger", {"statusCode": 413, "message": "request body larger than 1 MiB",
                                       "code": "PAYLOAD_TOO_LARGE"}),
    "C": ("/v1/jobs", {"error": {"code": "payload_too_large", "message": "request body larger than 1 MiB",
                                 "details": []}}),
    "D": ("/api/job_templates", {"error": {"message": "request body larger than 1 MiB"}}),
    "E": ("/v3/jobs/create", {"success": False, "error": "invalid_request",
                              "message": "request body larger than 1 MiB"}),
    "E token": ("/v3/auth/token", {"success": False, "error": "invalid_request",
                                   "message": "request body larger than 1 MiB"}),
}


async def test_bodies_over_one_mebibyte_are_413_in_each_surfaces_shape(stack: Stack) -> None:
    async def chunks():
        for start in range(0, len(TOO_LARGE), 64 * 1024):
            yield TOO_LARGE[start:start + 64 * 1024]

    async with stack.client() as client:
        caller = await new_caller(stack, client, "acme")
        for surface, (url, body) in BODY_LIMIT.items():
            headers = {**caller.headers(surface.split()[0]), "Content-Type": "application/json"}
            declared = await client.post(url, headers=headers, content=TOO_LARGE)
            streamed = await client.post(url, headers=headers, content=chunks())  # no Content-Length
            for response in (declared, streamed):
                assert (response.status_code, response.json()) == (413, body), (surface, response.text)


# -- over-long texts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Long:
    surface: str
    method: str
    url: str
    body: Any
    status: int
    answer: Any  # the body, or a predicate on it


def e_invalid(message: str) -> dict[str, Any]:
    return {"success": False, "error": "invalid_request", "message": message}


def d_field(field: str, why: str) -> dict[str, Any]:
    label = field.replace("_", " ").capitalize()
    return {"error": {"id": None, "errors": {field: [why]}, "full_messages": [f"{label} {why}"]}}


def bounded_message(key: str) -> Callable[[Any], bool]:
    """A message that quotes the long input elided, not whole."""
    return lambda body: "…" in body[key] and len(body[key]) <= 1000


INVOCATION = {"targeting_type": "static_query", "search_query": "name = drone-1"}
LONGS = [
    Long("A", "POST", "/job/api/jobs/execute", {"jobName": LONG, "deviceIds": ["drone-1"]}, 404,
         {"code": "J-301", "message": "Job not found", "status": 404}),
    Long("A", "POST", "/job/api/jobs/execute", {"jobName": "probe", "deviceIds": [LONG]}, 404,
         {"code": "J-001", "message": "Device not found", "status": 404}),
    Long("A", "POST", "/job/api/jobs/execute", {"jobName": "probe", "deviceIds": [f"d{i}" for i in range(5000)]}, 404,
         {"code": "J-001", "message": "Device not found", "status": 404}),
    Long("A", "GET", "/job/api/jobs/executions/" + "9" * 5000, None, 404,
         {"code": "J-501", "message": "Job execution not found", "status": 404}),
    Long("B", "POST", "/api/svc/v1/jobs/trigger", {"applicationId": LONG}, 404, bounded_message("message")),
    Long("B", "POST", "/api/svc/v1/jobs/trigger", {"deploymentId": LONG}, 404, bounded_message("message")),
    Long("B", "POST", "/api/svc/v1/jobs/trigger", {"applicationId": "{job}", "input": {"command": "echo " + LONG * 4}},
         400, {"statusCode": 400, "message": "command must be at most 65536 characters", "code": "BAD_REQUEST"}),
    Long("B", "POST", "/api/svc/v1/jobs/trigger", {"applicationId": "{job}", "metadata": {"job_run_name_alias": LONG}},
         400, {"statusCode": 400, "code": "BAD_REQUEST",
               "message": "a run name must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter "
                          "or digit"}),
    Long("B", "GET", "/api/svc/v1/jobs/{job}/runs/" + LONG, None, 404,
         {"statusCode": 404, "message": "Job run not found", "code": "NOT_FOUND"}),
    Long("B", "POST", "/api/svc/v1/jobs/terminate", {"deploymentId": LONG, "jobRunName": LONG}, 404,
         {"statusCode": 404, "message": "Deployment not found", "code": "NOT_FOUND"}),
    Long("C", "POST", "/v1/jobs", {"project_id": "default", "name": LONG, "slug": "s", "endpoint_url": "http://x/"},
         400, {"error": {"code": "validation_error", "message": "name must be at most 256 characters", "details": []}}),
    Long("D", "POST", "/api/job_templates", {"job_template": {"name": LONG, "job_category": "C", "template": "x"}},
         422, d_field("name", "is too long (maximum is 256 characters)")),
    Long("D", "POST", "/api/job_templates", {"job_template": {"name": "t", "job_category": "C", "template": LONG * 4}},
         422, d_field("template", "is too long (maximum is 65536 characters)")),
    Long("D", "POST", "/api/job_templates", {"job_template": {"name": "t", "job_category": LONG, "template": "x"}},
         422, d_field("job_category", "is too long (maximum is 255 characters)")),
    Long("D", "POST", "/api/job_templates", {"job_template": {
        "name": "t", "job_category": "C", "template": "x", "template_inputs_attributes": [{"name": LONG}]}},
         422, d_field("template_inputs", "a name must be 1-255 characters")),
    Long("D", "POST", "/api/job_invocations", {"job_invocation": {
        "job_template_id": "{template}", **INVOCATION, "description_format": LONG}},
         422, d_field("description_format", "is too long (maximum is 4096 characters)")),
    Long("D", "POST", "/api/job_invocations", {"job_invocation": {
        "job_template_id": "{template}", **INVOCATION, "inputs": {"message": LONG * 4}}},
         422, d_field("inputs", "a value is too long (maximum is 65536 characters)")),
    Long("D", "POST", "/api/job_invocations", {"job_invocation": {
        "job_template_id": "{template}", "targeting_type": "static_query", "search_query": "name = " + LONG}},
         422, {"error": {"id": None, "errors": {"base": ["the query must be at most 4096 characters"]},
                         "full_messages": ["the query must be at most 4096 characters"]}}),
    Long("D", "GET", "/api/hosts/" + LONG, None, 404,
         {"error": {"message": f"Resource host not found by id '{LONG}'"}}),
    Long("D", "GET", "/api/job_invocations?per_page=" + "9" * 5000, None, 400,
         lambda body: body["error"]["parameter_name"] == "per_page"),
    Long("E", "POST", "/v3/jobs/create", {"name": LONG, "deviceGroupId": "dock-1"}, 400,
         e_invalid("name must be at most 256 characters")),
    Long("E", "POST", "/v3/jobs/create", {"name": "m", "description": LONG, "deviceGroupId": "dock-1"}, 400,
         e_invalid("description must be at most 4096 characters")),
    Long("E", "POST", "/v3/jobs/create", {"name": "m", "missionId": LONG, "deviceGroupId": "dock-1"}, 400,
         e_invalid("mission_id must be at most 256 characters")),
    Long("E", "POST", "/v3/jobs/create", {"name": "m", "deviceId": LONG, "deviceGroupId": "dock-1"}, 400,
         e_invalid("device_id must be at most 128 characters")),
    Long("E", "POST", "/v3/jobs/create", {"name": "m", "deviceGroupId": "dock-1", "metadata": {"k": LONG * 4}}, 400,
         e_invalid("metadata must be at most 64 KiB")),
    Long("E", "POST", "/v3/jobs/create", {"name": "m", "deviceGroupId": LONG}, 404,
         {"success": False, "error": "Device group not found", "message": "The specified device group does not exist"}),
    Long("E", "POST", "/v3/jobs/create", {"name": "m", "deviceGroupId": "dock-1", "priority": 10**30}, 400,
         e_invalid("priority must be an integer between 1 and 10")),
    Long("E", "PATCH", "/v3/jobs/{mission}", {"name": LONG}, 400, e_invalid("name must be at most 256 characters")),
    Long("E", "GET", "/v3/jobs?limit=" + "9" * 5000, None, 400,
         e_invalid("limit must be an integer between 1 and 1000")),
    Long("E", "POST", "/v3/auth/token", {"grant_type": "client_credentials", "client_id": LONG, "client_secret": LONG},
         401, {"success": False, "error": "invalid_client", "message": "Invalid client credentials"}),
]


async def test_over_long_texts_get_a_clear_error_in_each_surfaces_shape(stack: Stack) -> None:
    async with stack.client() as client:
        caller = await new_caller(stack, client, "acme")
        native = caller.headers("C")
        assert (await client.post("/v1/device-groups", headers=native, json={"id": "dock-1"})).status_code == 201
        drone = await client.post("/v1/devices", headers=native, json={"id": "drone-1", "groups": ["dock-1"]})
        job = await client.post("/v1/jobs", headers=native, json={
            "project_id": "default", "name": "probe", "slug": "probe", "command": "echo hi",
            "targets": {"device_ids": ["drone-1"]}})
        template = await client.post("/api/job_templates", headers=caller.headers("D"), json={"job_template": {
            "name": "Say", "job_category": "Commands", "template": "echo <%= input('message') %>",
            "template_inputs_attributes": [{"name": "message"}]}})
        assert template.status_code == 201, template.text
        async with Drones(stack, [("drone-1", drone.json()["credential"])]):
            await eventually(lambda: _online(client, native), "the drone")
            mission = await client.post("/v3/jobs/create", headers=caller.headers("E"),
                                        json={"name": "Survey", "deviceGroupId": "dock-1"})
            assert mission.status_code == 201, mission.text
            values = {"job": job.json()["id"], "template": str(template.json()["id"]),
                      "mission": mission.json()["job"]["jobId"]}
            wrong = []
            for case in LONGS:
                response = await client.request(case.method, render(case.url, values), json=render(case.body, values),
                                                headers=caller.headers(case.surface))
                body = response.json()
                good = case.answer(body) if callable(case.answer) else body == case.answer
                if response.status_code != case.status or not good:
                    wrong.append(f"{case.surface} {case.method} {case.url[:60]}: {response.status_code} "
                                 f"{response.text[:300]}")
            assert not wrong, "\n".join(wrong)


async def _online(client: httpx.AsyncClient, headers: dict[str, str]) -> bool:
    return (await client.get("/v1/devices/drone-1", headers=headers)).json()["online"]
