"""Surface D's API description at `/apidoc/v2.json`, in Apipie's JSON format: what Foreman's clients
(apypie, hammer) read to learn the resources, their actions, routes and parameters.

It describes what `gateway/surface_d.py` serves, and only that: job_invocations, job_templates and
hosts. The document is built once; its checksum is also sent as the `Apipie-Checksum` header of every
/api answer, so a client's cached copy is refreshed when the description changes.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
from typing import Any

API_URL = "/api"
DOC_URL = "/apidoc/v2"

# Apipie's validators: (expected_type, the validator's description).
TYPES: dict[str, tuple[str, str]] = {
    "string": ("string", "Must be a String"),
    "identifier": ("string", "Must be an identifier, string from 1 to 128 characters containing only alphanumeric "
                             "characters, space, underscore(_), hypen(-) with no leading or trailing space."),
    "number": ("numeric", "Must be a number."),
    "integer": ("numeric", "Must be a number."),
    "bool": ("boolean", "Must be one of: <code>true</code>, <code>false</code>, <code>1</code>, <code>0</code>."),
    "hash": ("hash", "Must be a Hash"),
    "array": ("array", "Must be an array of any type"),
    "datetime": ("string", "Must be a String"),
    "per_page": ("string", "Must match regular expression <code>/\\A([1-9]\\d*|all)\\Z$/</code>."),
}


def _param(name: str, kind: str, description: str = "", *, required: bool = False, allow_nil: bool = False,
           params: list[dict] | None = None, parent: str = "") -> dict[str, Any]:
    expected, validator = TYPES[kind]
    full_name = f"{parent}[{name}]" if parent else name
    param = {
        "name": name, "full_name": full_name,
        "description": f"\n<p>{html.escape(description)}</p>\n" if description else "",
        "required": required, "allow_nil": allow_nil, "allow_blank": False, "validator": validator,
        "expected_type": expected, "metadata": None, "show": True, "validations": [], "deprecated": False,
    }
    if params is not None:
        param["params"] = [_reparent(p, full_name) for p in params]
    return param


def _reparent(param: dict[str, Any], parent: str) -> dict[str, Any]:
    copy = dict(param)
    copy["full_name"] = f"{parent}[{param['name']}]"
    if "params" in param:
        copy["params"] = [_reparent(p, copy["full_name"]) for p in param["params"]]
    return copy


TAXONOMY = [_param("location_id", "integer", "Set the current location context for the request"),
            _param("organization_id", "integer", "Set the current organization context for the request")]
SEARCH_AND_PAGINATION = [
    _param("search", "string", "filter results"),
    _param("order", "string", "Sort and order by a searchable field, e.g. '<field> DESC'"),
    _param("page", "number", "Page number, starting at 1"),
    _param("per_page", "per_page", "Number of results per page to return, 'all' to return all results"),
]
ID = _param("id", "identifier", required=True)


def _method(resource: str, name: str, routes: list[tuple[str, str, str]], params: list[dict],
            description: str = "", search: list[dict] | None = None) -> dict[str, Any]:
    return {
        "doc_url": f"{DOC_URL}/{resource}/{name}", "name": name,
        "apis": [{"api_url": path, "http_method": method, "short_description": short, "deprecated": None}
                 for method, path, short in routes],
        "formats": None, "full_description": f"\n<p>{html.escape(description)}</p>\n" if description else "",
        "errors": [], "params": [*TAXONOMY, *params], "returns": [], "examples": [],
        "metadata": {"search": search} if search else None, "see": [], "headers": [], "show": True,
        "deprecated": None,
    }


def _resource(name: str, title: str, description: str, methods: list[dict]) -> dict[str, Any]:
    return {"doc_url": f"{DOC_URL}/{name}", "id": name, "api_url": API_URL, "name": title,
            "short_description": None, "full_description": f"\n<p>{html.escape(description)}</p>\n",
            "version": "v2", "formats": None, "metadata": None, "headers": None, "deprecated": None,
            "methods": methods}


def _job_invocation_params() -> list[dict]:
    p = _param
    return [p("job_invocation", "hash", required=True, params=[
        p("job_template_id", "string", "The job template to use, parameter is required unless feature was specified",
          allow_nil=True),
        p("targeting_type", "string",
          'Invocation type, one of {"static_query"=>"Static Query", "dynamic_query"=>"Dynamic Query"}', required=True),
        p("randomized_ordering", "bool", "Execute the jobs on hosts in randomized order", allow_nil=True),
        p("inputs", "hash", "Inputs to use", allow_nil=True),
        p("ssh", "hash", "SSH provider specific options", allow_nil=True, params=[
            p("effective_user", "string", "What user should be used to run the script (using sudo-like mechanisms). "
              "Defaults to a template parameter or global setting.", allow_nil=True),
            p("effective_user_password", "string", "Set password for effective user (using sudo-like mechanisms)",
              allow_nil=True),
        ]),
        p("ssh_user", "string", "Set SSH user", allow_nil=True),
        p("password", "string", "Set SSH password", allow_nil=True),
        p("key_passphrase", "string", "Set SSH key passphrase", allow_nil=True),
        p("recurrence", "hash", "Create a recurring job", allow_nil=True, params=[
            p("cron_line", "string", "How often the job should occur, in the cron format", allow_nil=True),
            p("max_iteration", "number", "Repeat a maximum of N times", allow_nil=True),
            p("end_time", "datetime", "Perform no more executions after this time", allow_nil=True),
            p("purpose", "string", "Designation of a special purpose", allow_nil=True),
        ]),
        p("scheduling", "hash", "Schedule the job to start at a later time", allow_nil=True, params=[
            p("start_at", "datetime", "Schedule the job for a future time", allow_nil=True),
            p("start_before", "datetime",
              "Indicates that the action should be cancelled if it cannot be started before this time.",
              allow_nil=True),
        ]),
        p("concurrency_control", "hash", "Control concurrency level and distribution over time", allow_nil=True,
          params=[p("concurrency_level", "integer", "Run at most N tasks at a time", allow_nil=True)]),
        p("bookmark_id", "integer", allow_nil=True),
        p("search_query", "string", allow_nil=True),
        p("description_format", "string",
          "Override the description format from the template for this invocation only", allow_nil=True),
        p("execution_timeout_interval", "integer",
          "Override the timeout interval from the template for this invocation only", allow_nil=True),
        p("feature", "string", "Remote execution feature label that should be triggered, job template assigned to "
          "this feature will be used", allow_nil=True),
        p("time_to_pickup", "integer", "Override the global time to pickup interval for this invocation only",
          allow_nil=True),
    ])]


def _job_template_params(create: bool) -> list[dict]:
    p = _param
    return [p("job_template", "hash", required=create, params=[
        p("name", "string", "Template name", required=create),
        p("description", "string"),
        p("job_category", "string", "Job category", required=create),
        p("description_format", "string", "This template is used to generate the description. Input values can be "
          "used using the syntax %{package}. You may also include the job category and template name using "
          "%{job_category} and %{template_name}."),
        p("template", "string", "The template body: <%= input('name') %> inserts an input as given, {{name}} "
          "shell-quoted", required=create),
        p("provider_type", "string", "Provider type: script (default) or SSH"),
        p("snippet", "bool", allow_nil=True),
        p("audit_comment", "string", allow_nil=True),
        p("locked", "bool", "Whether or not the template is locked for editing"),
        p("execution_timeout_interval", "integer", "Default timeout of the template's runs, in seconds",
          allow_nil=True),
        p("effective_user_attributes", "hash", "Effective user options", params=[
            p("value", "string", "What user should be used to run the script (using sudo-like mechanisms)"),
            p("overridable", "bool", "Whether it should be allowed to override the effective user from the "
              "invocation form."),
            p("current_user", "bool", "Whether the current user login should be used as the effective user"),
        ]),
        p("template_inputs_attributes", "array", "The template's inputs: name, required, description, default, "
          "hidden_value, options (an entry with an id changes that input; with _destroy it removes it)",
          allow_nil=True),
        p("remote_execution_features", "array", "Remote execution feature labels the template serves",
          allow_nil=True),
        p("location_ids", "array", "REPLACE locations with given ids"),
        p("organization_ids", "array", "REPLACE organizations with given ids."),
    ])]


JOB_INVOCATION_SEARCH = [{"name": name, "type": kind} for name, kind in (
    ("description", "string"), ("id", "integer"), ("job_category", "string"), ("owner", "string"),
    ("pattern_template_name", "string"), ("recurring", "boolean"), ("recurring_logic.id", "integer"),
    ("status", "string"), ("user", "string"))]
HOST_SEARCH = [{"name": name, "type": kind} for name, kind in (
    ("architecture", "string"), ("facts", "string"), ("hostgroup", "string"), ("hostgroup_title", "string"),
    ("id", "integer"), ("model", "string"), ("name", "string"), ("os", "string"), ("params", "string"))]
TEMPLATE_SEARCH = [{"name": name, "type": kind} for name, kind in (
    ("id", "integer"), ("job_category", "string"), ("locked", "boolean"), ("name", "string"),
    ("provider_type", "string"), ("snippet", "boolean"), ("template", "string"))]


def document() -> dict[str, Any]:
    p = _param
    inv = "job_invocations"
    base = f"{API_URL}/job_invocations"
    invocations = _resource(inv, "Job invocations", "One job template run on many hosts.", [
        _method(inv, "index", [("GET", f"{base}/", "List job invocations")], SEARCH_AND_PAGINATION,
                search=JOB_INVOCATION_SEARCH),
        _method(inv, "show", [("GET", f"{base}/:id", "Show job invocation")], [
            ID, p("include_hosts", "bool", "Include hosts and template invocations in the response. Defaults to "
                  "true."), p("host_status", "bool", "Show Job status for the hosts")]),
        _method(inv, "create", [("POST", f"{base}/", "Create a job invocation")],
                [*_job_invocation_params(), p("include_hosts", "bool", "Include hosts in the response. Defaults to "
                                              "true.")]),
        _method(inv, "output", [("GET", f"{base}/:id/hosts/:host_id", "Get output for a host")],
                [ID, p("host_id", "identifier", required=True), p("since", "string")]),
        _method(inv, "hosts", [("GET", f"{base}/:id/hosts", "List hosts belonging to job invocation")],
                [*SEARCH_AND_PAGINATION, ID], search=HOST_SEARCH),
        _method(inv, "raw_output", [("GET", f"{base}/:id/hosts/:host_id/raw", "Get raw output for a host")],
                [ID, p("host_id", "identifier", required=True)]),
        _method(inv, "cancel", [("POST", f"{base}/:id/cancel", "Cancel job invocation")],
                [ID, p("force", "bool")]),
        _method(inv, "rerun", [("POST", f"{base}/:id/rerun", "Rerun job on failed hosts")],
                [ID, p("failed_only", "bool"), p("succeeded_only", "bool")]),
        _method(inv, "outputs", [("GET", f"{base}/:id/outputs", "Get outputs of hosts in a job")],
                [ID, p("search_query", "identifier"), p("since", "string"), p("raw", "string")]),
    ])
    jt = "job_templates"
    base = f"{API_URL}/job_templates"
    job_templates = _resource(jt, "Job templates", "The templates job invocations run.", [
        _method(jt, "index", [("GET", f"{base}/", "List job templates")], SEARCH_AND_PAGINATION,
                search=TEMPLATE_SEARCH),
        _method(jt, "show", [("GET", f"{base}/:id", "Show job template details")], [ID]),
        _method(jt, "create", [("POST", f"{base}/", "Create a job template")], _job_template_params(True)),
        _method(jt, "update", [("PUT", f"{base}/:id", "Update a job template")], [ID, *_job_template_params(False)]),
        _method(jt, "destroy", [("DELETE", f"{base}/:id", "Delete a job template")], [ID]),
        _method(jt, "clone", [("POST", f"{base}/:id/clone", "Clone a job template")], [
            ID, p("job_template", "hash", required=True, params=[p("name", "string", "Template name",
                                                                     required=True)])]),
    ])
    base = f"{API_URL}/hosts"
    hosts = _resource("hosts", "Hosts", "The device registry: a host is a device, its id the device's number.", [
        _method("hosts", "index", [("GET", f"{base}", "List all hosts")], SEARCH_AND_PAGINATION, search=HOST_SEARCH),
        _method("hosts", "show", [("GET", f"{base}/:id", "Show a host")], [ID]),
    ])
    return {"docs": {
        "name": "Jobline (Foreman Remote Execution API)",
        "info": "\n<p>Foreman API v2 is currently the default API version.</p>\n", "copyright": "",
        "doc_url": DOC_URL, "api_url": API_URL,
        "resources": {inv: invocations, jt: job_templates, "hosts": hosts},
        "link_extension": ".html",
    }}


@functools.cache
def document_bytes() -> bytes:
    return json.dumps(document(), separators=(",", ":"), sort_keys=True).encode()


@functools.cache
def checksum() -> str:
    return hashlib.md5(document_bytes()).hexdigest()  # noqa: S324 - a cache tag, not a secret
