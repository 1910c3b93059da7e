"""Surface D (Foreman Remote Execution's job invocations API at /api) end to end: real processes, real agent
CLIs, HTTP Basic with a login and a personal access token issued by `jobline admin`, each example of the
document replayed, and Foreman's own client (apypie) against the running platform."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common.channels import Channels

from .conftest import Client

pytestmark = pytest.mark.e2e

TIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$"
# The keys of the document's examples.
INVOCATION_BASE_KEYS = {
    "id", "description", "job_category", "targeting_id", "status", "start_at", "status_label", "ssh_user",
    "time_to_pickup", "concurrency_level", "execution_timeout_interval", "dynflow_task", "template_id",
    "template_name", "effective_user", "succeeded", "failed", "pending", "cancelled", "total", "missing",
    "total_hosts"}
CREATE_KEYS = INVOCATION_BASE_KEYS | {"targeting", "task", "mode", "recurrence", "pattern_template_invocations",
                                      "job_organization", "job_location"}
TARGETING_KEYS = {"bookmark_id", "bookmark_name", "search_query", "targeting_type", "user_id", "randomized_ordering",
                  "hosts"}
RECURRENCE_KEYS = {"id", "cron_line", "end_time", "iteration", "task_group_id", "state", "max_iteration", "purpose",
                   "task_count", "action", "last_occurence", "next_occurence"}
ENVELOPE_KEYS = {"total", "subtotal", "page", "per_page", "search", "sort", "results"}


def admin_cli(platform, *args: str) -> dict:
    env = {**os.environ, "JOBLINE_AUTH_ADDR": platform.addr("auth"), "JOBLINE_DATA_DIR": str(platform.data_dir)}
    done = subprocess.run([sys.executable, "-m", "cli.main", "admin", "--json", *args], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Foreman:
    """The platform as a Foreman user sees it: a login and a personal access token."""

    def __init__(self, platform, login: str, token: str) -> None:
        self.platform = platform
        self.login, self.token = login, token
        self.http = httpx.Client(base_url=platform.base_url, auth=(login, token), timeout=15)

    def get(self, path: str, **params) -> httpx.Response:
        return self.http.get(path, params=params)

    def post(self, path: str, body: dict | None = None) -> httpx.Response:
        return self.http.post(path, json=body if body is not None else {})

    def put(self, path: str, body: dict) -> httpx.Response:
        return self.http.put(path, json=body)

    def template(self, name: str, template: str, inputs: list[dict] | None = None, **fields) -> dict:
        response = self.post("/api/job_templates", {"job_template": {
            "name": name, "job_category": fields.pop("job_category", "Commands"), "template": template,
            "provider_type": "script", "template_inputs_attributes": inputs or [], **fields}})
        assert response.status_code == 201, response.text
        return response.json()

    def invoke(self, template_id: int, search: str, **fields) -> dict:
        body = {"job_template_id": template_id, "targeting_type": fields.pop("targeting_type", "static_query"),
                "search_query": search, **fields}
        response = self.post("/api/job_invocations", {"job_invocation": body})
        assert response.status_code == 201, response.text
        return response.json()

    def wait(self, invocation_id: int, done=lambda i: i["status_label"] not in ("queued", "running"),
             timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"/api/job_invocations/{invocation_id}")
            assert response.status_code == 200, response.text
            if done(response.json()) or time.monotonic() > deadline:
                return response.json()
            time.sleep(0.2)


@pytest.fixture(scope="module")
def foreman(platform) -> Foreman:
    """A personal access token for the bootstrap tenant's admin, issued by `jobline admin pat create`."""
    pat = admin_cli(platform, "pat", "create", "--tenant", "default", "--user", "admin", "--name", "foreman",
                    "--scopes", "READ,TRIGGER,WRITE")
    return Foreman(platform, "admin", pat["key"])


@pytest.fixture(scope="module")
def hosts(platform, client: Client, foreman: Foreman):
    """Three devices with their agents connected: web01 and web02 (group web), db01 (group db). Each agent
    runs with SURFACE_D_DEVICE set to its device, so a command can behave differently per host."""
    agents = []
    for device_id, group in (("web01", "web"), ("web02", "web"), ("db01", "db")):
        response = client.http.post("/v1/devices", json={"id": device_id, "name": device_id, "groups": [group]})
        assert response.status_code == 201, response.text
        env = {**os.environ, "JOBLINE_AGENT_CREDENTIAL": response.json()["credential"], "PYTHONUNBUFFERED": "1",
               "SURFACE_D_DEVICE": device_id}
        agents.append(subprocess.Popen([sys.executable, "-m", "cli.main", "agent", "--device", device_id,
                                        "--server", platform.addr("runs"), "--capacity", "2"], env=env))
    deadline = time.monotonic() + 20
    while not all(d["online"] for d in client.http.get("/v1/devices").json()["devices"]):
        assert time.monotonic() < deadline, "the agents never came online"
        time.sleep(0.1)
    found = {h["name"]: h for h in foreman.get("/api/hosts", per_page="all").json()["results"]}
    yield found
    for agent in agents:
        agent.terminate()
    for agent in agents:
        agent.wait(10)


@pytest.fixture(scope="module")
def echo(foreman: Foreman) -> dict:
    return foreman.template("Echo message", "echo <%= input('message') %> from $(hostname)",
                            [{"name": "message", "required": True, "description": "what to say"}],
                            description_format="Say %{message}")


# -- templates --------------------------------------------------------------------------------------------


def test_job_templates_are_created_listed_shown_updated_and_deleted(foreman: Foreman) -> None:
    created = foreman.template("Run Command - Script Default", "<%#\nkind: job_template\n%>\n<%= input('command') %>",
                               [{"name": "command", "required": True, "description": "Command to run"},
                                {"name": "timeout", "default": "10", "hidden_value": True}],
                               execution_timeout_interval=120,
                               effective_user_attributes={"value": "deploy", "overridable": True})
    assert isinstance(created["id"], int) and created["name"] == "Run Command - Script Default"
    assert created["job_category"] == "Commands" and created["provider_type"] == "script"
    assert created["snippet"] is False and created["locked"] is False
    assert created["execution_timeout_interval"] == 120
    assert created["effective_user"] == {"value": "deploy", "current_user": False, "overridable": True}
    assert [(i["name"], i["required"], i["default"], i["hidden_value"], i["input_type"])
            for i in created["template_inputs"]] == [("command", True, None, False, "user"),
                                                      ("timeout", False, "10", True, "user")]
    assert created["created_at"] and created["template"].startswith("<%#")

    shown = foreman.get(f"/api/job_templates/{created['id']}")
    assert shown.status_code == 200 and shown.json() == created

    listed = foreman.get("/api/job_templates", search='name ~ "Script Default"').json()
    assert set(listed) == ENVELOPE_KEYS and [t["id"] for t in listed["results"]] == [created["id"]]
    assert set(listed["results"][0]) == {"id", "name", "job_category", "provider_type", "snippet",
                                         "description_format", "created_at", "updated_at"}
    assert listed["subtotal"] == 1 and listed["total"] >= 1 and listed["search"] == 'name ~ "Script Default"'

    timeout_input = created["template_inputs"][1]
    updated = foreman.put(f"/api/job_templates/{created['id']}", {"job_template": {
        "job_category": "Maintenance", "template_inputs_attributes": [
            {"id": timeout_input["id"], "_destroy": True}, {"name": "extra", "default": "x"}]}})
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["job_category"] == "Maintenance" and body["name"] == created["name"]
    assert [i["name"] for i in body["template_inputs"]] == ["command", "extra"]
    assert body["template_inputs"][0]["id"] == created["template_inputs"][0]["id"]

    clone = foreman.post(f"/api/job_templates/{created['id']}/clone", {"job_template": {"name": "My copy"}})
    assert clone.status_code == 201 and clone.json()["cloned_from_id"] == created["id"], clone.text

    deleted = foreman.http.delete(f"/api/job_templates/{created['id']}")
    assert deleted.status_code == 200 and deleted.json()["id"] == created["id"], deleted.text
    assert foreman.get(f"/api/job_templates/{created['id']}").json() == \
        {"error": {"message": f"Resource job_template not found by id '{created['id']}'"}}


@pytest.mark.parametrize("body, field", [
    ({"job_category": "x", "template": "true"}, "name"),
    ({"name": "no category", "template": "true"}, "job_category"),
    ({"name": "no body", "job_category": "x"}, "template"),
    ({"name": "bad erb", "job_category": "x", "template": "<% if true %>x<% end %>"}, "template"),
    ({"name": "undeclared", "job_category": "x", "template": "<%= input('nope') %>"}, "template"),
])
def test_invalid_templates_are_422_with_rails_errors(foreman: Foreman, body: dict, field: str) -> None:
    response = foreman.post("/api/job_templates", {"job_template": body})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert set(error) == {"id", "errors", "full_messages"} and error["id"] is None
    assert field in error["errors"] and error["full_messages"], error


def test_template_names_are_unique_and_locked_templates_refuse_changes(foreman: Foreman) -> None:
    locked = foreman.template(f"Locked {uuid.uuid4().hex[:6]}", "uptime", locked=True)
    again = foreman.post("/api/job_templates", {"job_template": {"name": locked["name"], "job_category": "x",
                                                                 "template": "true"}})
    assert again.status_code == 422 and again.json()["error"]["errors"] == {"name": ["has already been taken"]}
    refused = foreman.put(f"/api/job_templates/{locked['id']}", {"job_template": {"template": "reboot"}})
    assert refused.status_code == 422 and refused.json()["error"]["id"] == locked["id"], refused.text
    assert "locked" in refused.json()["error"]["full_messages"][0]
    unlocked = foreman.put(f"/api/job_templates/{locked['id']}", {"job_template": {"locked": False}})
    assert unlocked.status_code == 200 and unlocked.json()["locked"] is False, unlocked.text


# -- hosts --------------------------------------------------------------------------------------------------


def test_hosts_are_the_device_registry_with_numeric_ids_and_foreman_search(foreman: Foreman, hosts: dict) -> None:
    assert set(hosts) >= {"web01", "web02", "db01"}
    web01 = hosts["web01"]
    assert isinstance(web01["id"], int) and web01["display_name"] == "web01" and web01["hostgroup_name"] == "web"
    assert web01["operatingsystem_name"] == "linux"  # the agent's `os` fact
    listed = foreman.get("/api/hosts", search="hostgroup = web and os = linux").json()
    assert set(listed) == ENVELOPE_KEYS and [h["name"] for h in listed["results"]] == ["web01", "web02"]
    assert listed["subtotal"] == 2 and listed["total"] >= 3
    assert [h["name"] for h in foreman.get("/api/hosts", search="name ^ (db01, web02)").json()["results"]] == \
        ["db01", "web02"]
    assert [h["name"] for h in foreman.get("/api/hosts", search="name ~ web%").json()["results"]] == \
        ["web01", "web02"]
    page = foreman.get("/api/hosts", search="name ~ 0", per_page=1, page=2).json()
    assert page["page"] == 2 and page["per_page"] == 1 and len(page["results"]) == 1
    for ident in (str(web01["id"]), "web01"):
        shown = foreman.get(f"/api/hosts/{ident}")
        assert shown.status_code == 200 and shown.json()["id"] == web01["id"], shown.text
    assert foreman.get("/api/hosts/999999").json() == {"error": {"message": "Resource host not found by id '999999'"}}


def test_bad_search_syntax_is_400(foreman: Foreman) -> None:
    for path in ("/api/hosts", "/api/job_invocations", "/api/job_templates"):
        response = foreman.get(path, search="name = (")
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "class"} and error["class"] == "ScopedSearch::QueryNotSupported"
        assert "position" in error["message"]
    unknown = foreman.get("/api/hosts", search="colour = red").json()["error"]
    assert "unknown field 'colour'" in unknown["message"]


# -- invocations -----------------------------------------------------------------------------------------


def test_an_invocation_runs_on_the_hosts_the_search_matches(foreman: Foreman, hosts: dict, echo: dict) -> None:
    created = foreman.invoke(echo["id"], "hostgroup = web", inputs={"message": "hello world"})
    assert set(created) == CREATE_KEYS - {"recurrence"}, set(created) ^ (CREATE_KEYS - {"recurrence"})
    assert created["mode"] == "immediate" and created["template_id"] == echo["id"]
    assert created["description"] == "Say hello world" and created["job_category"] == "Commands"
    assert created["total_hosts"] == 2 and created["effective_user"] == "root"
    assert created["targeting"]["search_query"] == "hostgroup = web"
    assert sorted(h["name"] for h in created["targeting"]["hosts"]) == ["web01", "web02"]
    assert set(created["targeting"]) == TARGETING_KEYS and created["pattern_template_invocations"] is None

    done = foreman.wait(created["id"])
    assert (done["status"], done["status_label"]) == (0, "succeeded"), done
    assert (done["succeeded"], done["failed"], done["pending"], done["cancelled"], done["total"]) == (2, 0, 0, 0, 2)
    assert done["dynflow_task"] == {"id": created["dynflow_task"]["id"], "state": "stopped"}
    assert done["task"]["cancellable"] is False and done["task"]["started_at"]

    with_status = foreman.get(f"/api/job_invocations/{created['id']}", host_status="true").json()
    assert {h["name"]: h["job_status"] for h in with_status["targeting"]["hosts"]} == \
        {"web01": "success", "web02": "success"}
    assert with_status["pattern_template_invocations"][0]["input_values"] == [
        {"template_input_name": "message", "template_input_id": echo["template_inputs"][0]["id"],
         "value": "hello world"}]
    assert len(with_status["template_invocations"]) == 2

    web01 = hosts["web01"]["id"]
    output = foreman.get(f"/api/job_invocations/{created['id']}/hosts/{web01}").json()
    assert output["complete"] is True and output["refresh"] is False
    assert "".join(line["output"] for line in output["output"]) == "hello world from " + os.uname().nodename + "\n"
    assert {line["output_type"] for line in output["output"]} == {"stdout"}
    assert all(isinstance(line["timestamp"], float) for line in output["output"])
    later = foreman.get(f"/api/job_invocations/{created['id']}/hosts/{web01}",
                        since=str(output["output"][-1]["timestamp"])).json()
    assert later == {"complete": True, "refresh": False, "output": []}
    raw = foreman.get(f"/api/job_invocations/{created['id']}/hosts/web01/raw").json()
    assert raw == {"complete": True, "refresh": False, "output": "hello world from " + os.uname().nodename + "\n"}

    outputs = foreman.get(f"/api/job_invocations/{created['id']}/outputs").json()
    assert sorted(o["host_id"] for o in outputs["outputs"]) == sorted([web01, hosts["web02"]["id"]])
    assert all(o["complete"] and len(o["output"]) >= 1 for o in outputs["outputs"])
    only = foreman.get(f"/api/job_invocations/{created['id']}/outputs", search_query="name = web02", raw="true").json()
    assert [(o["host_id"], o["output"].startswith("hello world")) for o in only["outputs"]] == \
        [(hosts["web02"]["id"], True)]
    missing_host = foreman.get(f"/api/job_invocations/{created['id']}/hosts/{hosts['db01']['id']}")
    assert missing_host.status_code == 404 and missing_host.json() == \
        {"error": {"message": f"Host with id '{hosts['db01']['id']}' was not found"}}

    per_host = foreman.get(f"/api/job_invocations/{created['id']}/hosts").json()
    assert set(per_host) == ENVELOPE_KEYS and {h["name"]: h["job_status"] for h in per_host["results"]} == \
        {"web01": "success", "web02": "success"}


def test_a_failing_host_makes_the_invocation_failed_and_rerun_failed_only_takes_just_it(
        foreman: Foreman, hosts: dict) -> None:
    template = foreman.template(f"Fail on db {uuid.uuid4().hex[:4]}", '[ "$SURFACE_D_DEVICE" != db01 ] || exit 3')
    created = foreman.invoke(template["id"], "name ~ 0")
    done = foreman.wait(created["id"])
    assert (done["status"], done["status_label"], done["failed"], done["succeeded"]) == (1, "failed", 1, 2), done
    statuses = foreman.get(f"/api/job_invocations/{created['id']}", host_status=True).json()["targeting"]["hosts"]
    assert {h["name"]: h["job_status"] for h in statuses} == {"db01": "error", "web01": "success",
                                                              "web02": "success"}

    rerun = foreman.post(f"/api/job_invocations/{created['id']}/rerun", {"failed_only": True})
    assert rerun.status_code == 201, rerun.text
    assert rerun.json()["id"] > created["id"] and [h["name"] for h in rerun.json()["targeting"]["hosts"]] == ["db01"]
    assert foreman.wait(rerun.json()["id"])["status_label"] == "failed"
    succeeded = foreman.post(f"/api/job_invocations/{created['id']}/rerun", {"succeeded_only": True})
    assert sorted(h["name"] for h in succeeded.json()["targeting"]["hosts"]) == ["web01", "web02"]
    assert foreman.wait(succeeded.json()["id"])["status_label"] == "succeeded"
    everything = foreman.post(f"/api/job_invocations/{created['id']}/rerun")
    assert everything.status_code == 201 and everything.json()["total_hosts"] == 3


def test_cancel_stops_running_hosts_and_a_finished_invocation_cannot_be_cancelled(
        foreman: Foreman, hosts: dict) -> None:
    sleeper = foreman.template(f"Sleep {uuid.uuid4().hex[:4]}", "sleep 30")
    created = foreman.invoke(sleeper["id"], "name = db01")
    foreman.wait(created["id"], done=lambda i: i["pending"] == 1 and i["status_label"] == "running")
    cancelled = foreman.post(f"/api/job_invocations/{created['id']}/cancel", {"force": True, "job_invocation": {}})
    assert cancelled.status_code == 200 and cancelled.json() == {"cancelled": True, "id": created["id"]}
    done = foreman.wait(created["id"])
    assert (done["status"], done["status_label"], done["cancelled"]) == (4, "cancelled", 1), done
    again = foreman.post(f"/api/job_invocations/{created['id']}/cancel")
    assert again.status_code == 422 and again.json() == {"message": "The job could not be cancelled."}


def test_concurrency_level_runs_at_most_n_hosts_at_once(client: Client, foreman: Foreman, hosts: dict) -> None:
    template = foreman.template(f"Nap {uuid.uuid4().hex[:4]}", "sleep 0.6")
    created = foreman.invoke(template["id"], "name ~ 0", concurrency_control={"concurrency_level": 1},
                             randomized_ordering=True)
    assert created["concurrency_level"] == 1 and created["targeting"]["randomized_ordering"] is True
    done = foreman.wait(created["id"])
    assert done["succeeded"] == 3, done
    job = next(j for j in client.http.get("/v1/jobs", params={"page_size": 1000}).json()
               if j["name"] == template["name"])
    runs = client.http.get("/v1/runs", params={"job_id": job["id"], "limit": 1000}).json()
    spans = sorted((_at(r["started_at"]), _at(r["finished_at"])) for r in runs)
    assert len(spans) == 3
    for (_, first_end), (second_start, _) in zip(spans, spans[1:]):
        assert first_end <= second_start, spans  # never two at once


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_invocation_options_override_the_template(foreman: Foreman, hosts: dict) -> None:
    template = foreman.template(f"Slow {uuid.uuid4().hex[:4]}", "whoami >/dev/null; sleep <%= input('secs') %>",
                                [{"name": "secs", "default": "5"}], execution_timeout_interval=60,
                                effective_user_attributes={"value": "svc", "overridable": True})
    created = foreman.invoke(template["id"], "name = web01", execution_timeout_interval=1, time_to_pickup=600,
                             description_format="Nap of %{secs}s by %{template_name}",
                             ssh={"effective_user": "operator"}, ssh_user="ops")
    assert (created["execution_timeout_interval"], created["time_to_pickup"], created["ssh_user"]) == (1, 600, "ops")
    assert created["description"] == f"Nap of 5s by {template['name']}" and created["effective_user"] == "operator"
    done = foreman.wait(created["id"])
    assert (done["status_label"], done["failed"]) == ("failed", 1), done  # timed out after 1 s, not 60
    statuses = foreman.get(f"/api/job_invocations/{created['id']}", host_status=True).json()["targeting"]["hosts"]
    assert [h["job_status"] for h in statuses] == ["error"]
    fixed = foreman.template(f"Fixed user {uuid.uuid4().hex[:4]}", "true")
    assert foreman.invoke(fixed["id"], "name = web01", ssh={"effective_user": "operator"})["effective_user"] == "root"


def test_index_envelope_search_order_and_paging(foreman: Foreman, hosts: dict, echo: dict) -> None:
    first = foreman.invoke(echo["id"], "name = web01", inputs={"message": "one"})
    second = foreman.invoke(echo["id"], "name = web02", inputs={"message": "two"})
    listed = foreman.get("/api/job_invocations").json()
    assert set(listed) == ENVELOPE_KEYS
    assert (listed["page"], listed["per_page"], listed["search"], listed["sort"]) == \
        (1, 20, None, {"by": None, "order": None})
    ids = [i["id"] for i in listed["results"]]
    assert ids == sorted(ids, reverse=True) and ids.index(second["id"]) < ids.index(first["id"])  # id DESC
    assert all(set(i) == INVOCATION_BASE_KEYS for i in listed["results"])
    searched = foreman.get("/api/job_invocations", search='description = "Say two"', order="id ASC").json()
    assert [i["id"] for i in searched["results"]] == [second["id"]] and searched["subtotal"] == 1
    assert searched["sort"] == {"by": "id", "order": "ASC"} and searched["total"] == listed["total"]
    everything = foreman.get("/api/job_invocations", per_page="all").json()
    assert everything["per_page"] == everything["total"] == len(everything["results"])
    page = foreman.get("/api/job_invocations", per_page=1, page=2).json()
    assert [i["id"] for i in page["results"]] == [ids[1]]
    foreman.wait(first["id"]), foreman.wait(second["id"])
    by_status = foreman.get("/api/job_invocations", search=f"status = succeeded and id >= {first['id']}").json()
    assert {i["id"] for i in by_status["results"]} == {first["id"], second["id"]}
    assert foreman.get("/api/job_invocations", search=f"status = running and id >= {first['id']}").json()[
        "results"] == []
    assert foreman.get("/api/job_invocations", per_page="x").status_code == 400


def test_validation_errors_are_422(foreman: Foreman, hosts: dict, echo: dict) -> None:
    cases = [
        ({"job_template_id": echo["id"], "targeting_type": "sideways", "search_query": "name = web01",
          "inputs": {"message": "x"}}, "targeting_type"),
        ({"job_template_id": echo["id"], "targeting_type": "static_query", "search_query": "name = web01"}, "inputs"),
        ({"job_template_id": echo["id"], "targeting_type": "static_query", "search_query": "name = web01",
          "inputs": {"message": "x", "bogus": "y"}}, "inputs"),
        ({"job_template_id": echo["id"], "targeting_type": "static_query", "search_query": "",
          "inputs": {"message": "x"}}, "search_query"),
        ({"job_template_id": echo["id"], "targeting_type": "static_query", "search_query": "name = web01",
          "inputs": {"message": "x"}, "concurrency_control": {"concurrency_level": 0}}, "concurrency_level"),
        ({"job_template_id": echo["id"], "targeting_type": "static_query", "search_query": "name = web01",
          "inputs": {"message": "x"}, "recurrence": {"cron_line": "every now and then"}}, "base"),
    ]
    for body, field in cases:
        response = foreman.post("/api/job_invocations", {"job_invocation": body})
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert set(error) == {"id", "errors", "full_messages"} and field in error["errors"], (body, error)
    bad_search = foreman.post("/api/job_invocations", {"job_invocation": {
        "job_template_id": echo["id"], "targeting_type": "static_query", "search_query": "name ^ (",
        "inputs": {"message": "x"}}})
    assert bad_search.status_code == 400 and bad_search.json()["error"]["class"] == "ScopedSearch::QueryNotSupported"
    no_template = foreman.post("/api/job_invocations", {"job_invocation": {
        "job_template_id": 987654321, "targeting_type": "static_query", "search_query": "name = web01"}})
    assert no_template.status_code == 404 and no_template.json() == \
        {"error": {"message": "Template with id '987654321' was not found"}}
    not_json = foreman.http.post("/api/job_invocations", content=b"x=1",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert not_json.status_code == 415 and "application/json" in not_json.json()["error"]["message"]
    broken = foreman.http.post("/api/job_invocations", content=b"{nope", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"].startswith("There was a problem in the JSON")


def test_a_search_matching_no_host_makes_an_empty_succeeded_invocation(foreman: Foreman, hosts: dict,
                                                                      echo: dict) -> None:
    created = foreman.invoke(echo["id"], "name = nobody", inputs={"message": "x"})
    assert (created["total_hosts"], created["targeting"]["hosts"]) == (0, [])
    done = foreman.wait(created["id"])
    assert (done["status"], done["status_label"], done["total"], done["dynflow_task"]["state"]) == \
        (0, "succeeded", 0, "stopped")
    assert foreman.get(f"/api/job_invocations/{created['id']}/outputs").json() == {"outputs": []}


def test_a_feature_picks_its_template(foreman: Foreman, hosts: dict) -> None:
    label = f"run_script_{uuid.uuid4().hex[:4]}"
    template = foreman.template(f"Feature {label}", "echo feature", remote_execution_features=[label])
    response = foreman.post("/api/job_invocations", {"job_invocation": {"feature": label,
                                                                         "search_query": "name = web01"}})
    assert response.status_code == 201, response.text
    assert response.json()["template_id"] == template["id"]
    assert response.json()["targeting"]["targeting_type"] == "static_query"
    unknown = foreman.post("/api/job_invocations", {"job_invocation": {"feature": "nope", "search_query": "x"}})
    assert unknown.status_code == 404 and unknown.json() == {"error": {"message": "Unknown remote execution feature nope"}}


def test_a_future_invocation_reports_delayed_output(foreman: Foreman, hosts: dict, echo: dict) -> None:
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    created = foreman.invoke(echo["id"], "name = web01", inputs={"message": "later"},
                             scheduling={"start_at": start.isoformat(), "start_before": (start + timedelta(
                                 minutes=5)).isoformat()})
    assert created["mode"] == "future" and created["scheduling"] == {
        "start_at": start.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "start_before": (start + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S UTC")}
    assert (created["status"], created["status_label"], created["total"]) == (2, "queued", "N/A")
    assert created["dynflow_task"]["state"] == "scheduled" and created["task"]["cancellable"] is True
    delayed = foreman.get(f"/api/job_invocations/{created['id']}/hosts/web01")
    assert delayed.json() == {"complete": False, "refresh": True, "output": [], "delayed": True,
                              "start_at": start.isoformat(timespec="milliseconds")}
    raw = foreman.get(f"/api/job_invocations/{created['id']}/hosts/web01/raw").json()
    assert raw == {"complete": False, "refresh": True, "output": None, "delayed": True,
                   "start_at": start.isoformat(timespec="milliseconds")}
    statuses = foreman.get(f"/api/job_invocations/{created['id']}", host_status=1).json()["targeting"]["hosts"]
    assert [h["job_status"] for h in statuses] == ["N/A"]
    assert foreman.post(f"/api/job_invocations/{created['id']}/cancel").json() == \
        {"cancelled": True, "id": created["id"]}
    assert foreman.get(f"/api/job_invocations/{created['id']}").json()["status_label"] == "cancelled"


# -- the document's examples, verbatim ---------------------------------------------------------------------


def test_document_example_create_recurring_invocation(foreman: Foreman, hosts: dict) -> None:
    template = foreman.template("Job template 12", "echo <%= input('Template input 7') %>",
                                [{"name": "Template input 7"}], job_category="Job name 10")
    response = foreman.post("/api/job_invocations", {
        "job_invocation": {
            "job_category": "Job name 10",
            "name": "RandomName",
            "job_template_id": template["id"],
            "targeting_type": "static_query",
            "search_query": "foobar",
            "recurrence": {
                "cron_line": "5 * * * *"
            }
        }
    })
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == CREATE_KEYS, set(body) ^ CREATE_KEYS
    assert body["description"] == "Job template 12 with inputs Template input 7=\"''\""
    assert (body["job_category"], body["status"], body["status_label"]) == ("Job name 10", 2, "queued")
    assert body["start_at"].endswith(":05:00 UTC") and body["targeting_id"] == body["id"]
    for key in ("ssh_user", "time_to_pickup", "concurrency_level", "execution_timeout_interval",
                "pattern_template_invocations", "job_organization", "job_location"):
        assert body[key] is None, key
    assert body["dynflow_task"]["state"] == "scheduled" and uuid.UUID(body["dynflow_task"]["id"])
    assert (body["template_id"], body["template_name"], body["effective_user"]) == \
        (template["id"], "Job template 12", "root")
    assert (body["succeeded"], body["failed"], body["pending"], body["cancelled"], body["total"], body["missing"],
            body["total_hosts"]) == (0, 0, 0, 0, "N/A", 0, 0)
    assert set(body["targeting"]) == TARGETING_KEYS
    assert body["targeting"]["search_query"] == "foobar" and body["targeting"]["targeting_type"] == "static_query"
    assert body["targeting"]["hosts"] == [] and isinstance(body["targeting"]["user_id"], int)
    assert body["targeting"]["bookmark_id"] is None and body["targeting"]["randomized_ordering"] is None
    assert body["task"]["id"] == body["dynflow_task"]["id"] and body["task"]["state"] == "scheduled"
    assert body["task"]["started_at"] is None
    assert body["mode"] == "recurring" and set(body["recurrence"]) == RECURRENCE_KEYS
    recurrence = body["recurrence"]
    assert (recurrence["cron_line"], recurrence["iteration"], recurrence["state"], recurrence["task_count"],
            recurrence["action"], recurrence["last_occurence"], recurrence["end_time"], recurrence["max_iteration"],
            recurrence["purpose"]) == ("5 * * * *", 1, "active", 1, "Run hosts job:", None, None, None, None)
    assert recurrence["next_occurence"] == body["start_at"] and isinstance(recurrence["id"], int)
    assert foreman.post(f"/api/job_invocations/{body['id']}/cancel").json() == {"cancelled": True, "id": body["id"]}
    assert foreman.get(f"/api/job_invocations/{body['id']}").json()["recurrence"]["state"] == "cancelled"


def test_document_example_index(foreman: Foreman, hosts: dict, echo: dict) -> None:
    foreman.wait(foreman.invoke(echo["id"], "name = web01", inputs={"message": "x"})["id"])
    response = foreman.get("/api/job_invocations")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == ENVELOPE_KEYS and body["sort"] == {"by": None, "order": None} and body["search"] is None
    assert isinstance(body["total"], int) and isinstance(body["subtotal"], int)
    result = body["results"][0]
    assert set(result) == INVOCATION_BASE_KEYS and set(result["dynflow_task"]) == {"id", "state"}
    assert isinstance(result["status"], int) and result["status_label"] in \
        ("succeeded", "failed", "queued", "running", "cancelled")


def test_document_example_show_missing_is_404(foreman: Foreman) -> None:
    response = foreman.get("/api/job_invocations/228")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "Resource job_invocation not found by id '228'"}}
    assert foreman.get("/api/job_invocations/abc").json() == \
        {"error": {"message": "Resource job_invocation not found by id 'abc'"}}


def test_document_example_host_output_and_outputs(foreman: Foreman, hosts: dict) -> None:
    quiet = foreman.template(f"Quiet {uuid.uuid4().hex[:4]}", "true")
    created = foreman.invoke(quiet["id"], "name = web02")
    foreman.wait(created["id"])
    host = hosts["web02"]["id"]
    response = foreman.get(f"/api/job_invocations/{created['id']}/hosts/{host}")
    assert response.status_code == 200
    assert response.json() == {"complete": True, "refresh": False, "output": []}
    outputs = foreman.get(f"/api/job_invocations/{created['id']}/outputs")
    assert outputs.status_code == 200
    assert outputs.json() == {"outputs": [{"complete": True, "refresh": False, "output": [], "host_id": host}]}


def test_document_example_cancel_and_rerun_without_template(client: Client, foreman: Foreman, hosts: dict) -> None:
    sleeper = foreman.template(f"Long {uuid.uuid4().hex[:4]}", "sleep 30")
    created = foreman.invoke(sleeper["id"], "name = web02")
    response = foreman.post(f"/api/job_invocations/{created['id']}/cancel", {"force": True, "job_invocation": {}})
    assert response.status_code == 200
    assert response.json() == {"cancelled": True, "id": created["id"]}
    foreman.wait(created["id"])
    job = next(j for j in client.http.get("/v1/jobs", params={"page_size": 1000}).json()
               if j["name"] == sleeper["name"])
    assert client.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    rerun = foreman.post(f"/api/job_invocations/{created['id']}/rerun", {"job_invocation": {}})
    assert rerun.status_code == 404
    assert rerun.json() == {"error": f"Could not rerun job {created['id']} because its template could not be found"}


# -- authentication and tenancy -------------------------------------------------------------------------------


def test_basic_authentication_refusals_are_foremans_401_and_403(platform, foreman: Foreman) -> None:
    bare = httpx.Client(base_url=platform.base_url, timeout=10)
    none = bare.get("/api/job_invocations")
    assert none.status_code == 401 and none.json() == {"error": {"message": "Unable to authenticate user "}}
    wrong = bare.get("/api/job_invocations", auth=("admin", "jlp_not_a_token"))
    assert wrong.status_code == 401 and wrong.json() == {"error": {"message": "Unable to authenticate user admin"}}
    other_login = bare.get("/api/job_invocations", auth=("somebody", foreman.token))
    assert other_login.status_code == 401
    bearer = bare.get("/api/job_invocations", headers={"Authorization": f"Bearer {foreman.token}"})
    assert bearer.status_code == 401

    reader = admin_cli(platform, "pat", "create", "--tenant", "default", "--user", "admin", "--name", "reader",
                       "--scopes", "READ")["key"]
    readonly = httpx.Client(base_url=platform.base_url, auth=("admin", reader), timeout=10)
    assert readonly.get("/api/job_invocations").status_code == 200
    refused = readonly.post("/api/job_invocations", json={"job_invocation": {}})
    assert refused.status_code == 403
    assert refused.json() == {"error": {"message": "Access denied", "details":
                                        "Missing one of the required permissions: create_job_invocations",
                                        "missing_permissions": ["create_job_invocations"]}}
    assert readonly.post("/api/job_templates", json={"job_template": {}}).json()["error"]["missing_permissions"] == \
        ["create_job_templates"]

    pat = admin_cli(platform, "pat", "create", "--tenant", "default", "--user", "admin", "--name", "revoked")
    assert httpx.get(f"{platform.base_url}/api/hosts", auth=("admin", pat["key"])).status_code == 200
    admin_cli(platform, "pat", "revoke", "--tenant", "default", pat["id"])
    deadline = time.monotonic() + 10  # revocation holds within the auth cache bound
    while httpx.get(f"{platform.base_url}/api/hosts", auth=("admin", pat["key"])).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_another_tenants_invocation_template_and_host_are_answered_as_missing(
        platform, foreman: Foreman, hosts: dict, echo: dict) -> None:
    mine = foreman.invoke(echo["id"], "name = web01", inputs={"message": "mine"})
    other = asyncio.run(_other_tenant_foreman(platform))
    for path, resource, ident in ((f"/api/job_invocations/{mine['id']}", "job_invocation", mine["id"]),
                                  (f"/api/job_templates/{echo['id']}", "job_template", echo["id"]),
                                  (f"/api/hosts/{hosts['web01']['id']}", "host", hosts["web01"]["id"]),
                                  ("/api/hosts/web01", "host", "web01")):
        response = other.get(path)
        assert response.status_code == 404, (path, response.text)
        assert response.json() == {"error": {"message": f"Resource {resource} not found by id '{ident}'"}}
    for path in (f"/api/job_invocations/{mine['id']}/hosts/web01", f"/api/job_invocations/{mine['id']}/outputs"):
        assert other.get(path).status_code == 404
    assert other.post(f"/api/job_invocations/{mine['id']}/cancel").status_code == 404
    assert other.post(f"/api/job_invocations/{mine['id']}/rerun").status_code == 404
    used = other.post("/api/job_invocations", {"job_invocation": {
        "job_template_id": echo["id"], "targeting_type": "static_query", "search_query": "name = web01"}})
    assert used.status_code == 404
    assert other.get("/api/job_invocations").json()["total"] == 0
    assert other.get("/api/hosts").json()["results"] == []
    assert other.get("/api/job_templates").json()["results"] == []


async def _other_tenant_foreman(platform) -> Foreman:
    token = (platform.data_dir / "service-token").read_text().strip()
    channels = Channels(service_token=token)
    try:
        admin = auth_pb2_grpc.AuthAdminServiceStub(channels.get(platform.addr("auth")))
        tenant = await admin.CreateTenant(auth_pb2.CreateTenantRequest(name=f"t-{uuid.uuid4().hex[:6]}"))
        await admin.CreateUser(auth_pb2.CreateUserRequest(tenant=tenant.id, login="mallory"))
        key = await admin.IssueApiKey(auth_pb2.IssueApiKeyRequest(
            tenant=tenant.id, user_login="mallory", name="pat", scopes=["ADMIN"],
            kind=auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN))
        return Foreman(platform, "mallory", key.key)
    finally:
        await channels.close()


# -- curl, as in the document ---------------------------------------------------------------------------------


def test_plain_curl_lists_and_creates(platform, foreman: Foreman, hosts: dict, echo: dict) -> None:
    base = ["curl", "-s", "-u", f"{foreman.login}:{foreman.token}", "-H", "Accept: application/json"]
    listed = json.loads(subprocess.run([*base, f"{platform.base_url}/api/job_invocations?per_page=2"],
                                       capture_output=True, text=True, timeout=30, check=True).stdout)
    assert set(listed) == ENVELOPE_KEYS and listed["per_page"] == 2
    body = json.dumps({"job_invocation": {"job_template_id": echo["id"], "targeting_type": "static_query",
                                          "search_query": "name = db01", "inputs": {"message": "curl"}}})
    created = json.loads(subprocess.run([*base, "-H", "Content-Type: application/json", "-X", "POST", "-d", body,
                                         f"{platform.base_url}/api/job_invocations"],
                                        capture_output=True, text=True, timeout=30, check=True).stdout)
    assert created["description"] == "Say curl" and foreman.wait(created["id"])["status_label"] == "succeeded"


# -- apypie, Foreman's Python bindings ------------------------------------------------------------------------


def test_apypie_reads_the_apidoc_and_lists_creates_and_reads(platform, foreman: Foreman, hosts: dict,
                                                             tmp_path) -> None:
    import apypie

    api = apypie.ForemanApi(uri=platform.base_url, username=foreman.login, password=foreman.token,
                            apidoc_cache_base_dir=str(tmp_path), verify_ssl=False)
    assert {"job_invocations", "job_templates", "hosts"} <= set(api.resources)
    assert {"index", "show", "create", "output", "raw_output", "outputs", "cancel", "rerun", "hosts"} <= \
        set(api.resource("job_invocations").actions)

    template = api.create("job_templates", {"name": f"apypie {uuid.uuid4().hex[:4]}", "job_category": "Commands",
                                            "template": "echo <%= input('text') %>", "provider_type": "script",
                                            "template_inputs_attributes": [{"name": "text", "required": True}]})
    assert isinstance(template["id"], int)
    assert api.show("job_templates", template["id"])["template"] == "echo <%= input('text') %>"
    assert template["id"] in [t["id"] for t in api.list("job_templates", search=f'name = "{template["name"]}"')]

    invocation = api.create("job_invocations", {"job_template_id": template["id"], "targeting_type": "static_query",
                                                "search_query": "hostgroup = web", "inputs": {"text": "via apypie"}})
    assert invocation["description"].startswith(template["name"]) and invocation["total_hosts"] == 2
    shown = api.show("job_invocations", invocation["id"])
    assert shown["id"] == invocation["id"] and shown["template_id"] == template["id"]
    assert invocation["id"] in [i["id"] for i in api.list("job_invocations")]
    deadline = time.monotonic() + 30
    while api.show("job_invocations", invocation["id"])["status_label"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    host = hosts["web01"]["id"]
    output = api.resource_action("job_invocations", "output", {"id": invocation["id"], "host_id": host})
    assert "".join(line["output"] for line in output["output"]) == "via apypie\n"
    raw = api.resource_action("job_invocations", "raw_output", {"id": invocation["id"], "host_id": host})
    assert raw["output"] == "via apypie\n"
    assert [h["name"] for h in api.list("hosts", search="hostgroup = web")] == ["web01", "web02"]
    assert (tmp_path / os.listdir(tmp_path)[0]).exists()  # the apidoc was cached under its checksum
    with pytest.raises(apypie.foreman.ForemanApiException) as error:
        api.show("job_invocations", 987654321)
    assert "Resource job_invocation not found by id '987654321'" in str(error.value)


def test_the_apidoc_describes_the_served_routes(platform) -> None:
    response = httpx.get(f"{platform.base_url}/apidoc/v2.json")
    assert response.status_code == 200 and response.headers["apipie-checksum"]
    resources = response.json()["docs"]["resources"]
    create = next(m for m in resources["job_invocations"]["methods"] if m["name"] == "create")
    assert create["apis"] == [{"api_url": "/api/job_invocations/", "http_method": "POST",
                               "short_description": "Create a job invocation", "deprecated": None}]
    wrapper = next(p for p in create["params"] if p["name"] == "job_invocation")
    assert wrapper["expected_type"] == "hash" and wrapper["required"] is True
    nested = {p["full_name"]: p for p in wrapper["params"]}
    assert nested["job_invocation[targeting_type]"]["required"] is True
    assert {p["full_name"] for p in nested["job_invocation[recurrence]"]["params"]} == {
        "job_invocation[recurrence][cron_line]", "job_invocation[recurrence][max_iteration]",
        "job_invocation[recurrence][end_time]", "job_invocation[recurrence][purpose]"}
    served = {(route["http_method"], route["api_url"].rstrip("/"))
              for resource in resources.values() for method in resource["methods"] for route in method["apis"]}
    bare = httpx.Client(base_url=platform.base_url, timeout=10)
    for method, path in served:  # every described route exists (401 without a credential, not 404/405)
        url = path.replace(":id", "1").replace(":host_id", "1")
        assert bare.request(method, url).status_code == 401, (method, path)
