"""Job template rules (surface D's /api/job_templates): a job template is a device job whose
`command` is the template body and whose `job_template` spec carries Foreman's template fields."""

from __future__ import annotations

from jobline.jobs.v1.jobs_pb2 import Job
from services.common.command_template import referenced_inputs, unsupported_tags
from services.common.errors import FailedPrecondition, InvalidArgument

INPUT_TYPES = ("user",)
PROVIDER_TYPES = ("script", "SSH")
MAX_INPUTS, MAX_INPUT_NAME, MAX_INPUT_TEXT = 100, 255, 4096
MAX_TIMEOUT_SECS = 86400
DEFAULT_TIMEOUT_SECS = 86400
# The template's texts: its job's (held to domain.TEXT_LIMITS, said here in the template's words: its body is
# the job's command), then its spec's own, with their longest.
JOB_TEXTS = {"name": "name", "description": "description", "template": "command"}
SPEC_TEXT_LIMITS = {"job_category": 255, "description_format": 4096}
MAX_EFFECTIVE_USER, MAX_FEATURES, MAX_FEATURE_LEN, MAX_OPTIONS = 255, 50, 255, 1000


def validate(job: Job) -> None:
    """Raises InvalidArgument ("<field>: <why>") for the first thing wrong with a template."""
    from .domain import TEXT_LIMITS  # (domain imports this module)

    spec = job.job_template
    if not job.name.strip():
        raise InvalidArgument("name: can't be blank")
    if not spec.job_category.strip():
        raise InvalidArgument("job_category: can't be blank")
    if not job.command.strip():
        raise InvalidArgument("template: can't be blank")
    if job.endpoint_url:
        raise InvalidArgument("template: a job template runs on devices, it has no endpoint_url")
    if spec.provider_type and spec.provider_type not in PROVIDER_TYPES:
        raise InvalidArgument(f"provider_type: must be one of {', '.join(PROVIDER_TYPES)}")
    if spec.HasField("execution_timeout_interval") and not 1 <= spec.execution_timeout_interval <= MAX_TIMEOUT_SECS:
        raise InvalidArgument(f"execution_timeout_interval: must be between 1 and {MAX_TIMEOUT_SECS} seconds")
    for field, attribute in JOB_TEXTS.items():
        if len(getattr(job, attribute)) > (limit := TEXT_LIMITS[attribute]):
            raise InvalidArgument(f"{field}: is too long (maximum is {limit} characters)")
    for field, limit in SPEC_TEXT_LIMITS.items():
        if len(getattr(spec, field)) > limit:
            raise InvalidArgument(f"{field}: is too long (maximum is {limit} characters)")
    if len(spec.effective_user.value) > MAX_EFFECTIVE_USER:
        raise InvalidArgument(f"effective_user: is too long (maximum is {MAX_EFFECTIVE_USER} characters)")
    if len(spec.features) > MAX_FEATURES or any(len(f) > MAX_FEATURE_LEN for f in spec.features):
        raise InvalidArgument(f"remote_execution_features: at most {MAX_FEATURES} labels of at most "
                              f"{MAX_FEATURE_LEN} characters")
    if len(spec.inputs) > MAX_INPUTS:
        raise InvalidArgument(f"template_inputs: at most {MAX_INPUTS}")
    names: set[str] = set()
    for template_input in spec.inputs:
        name = template_input.name
        if not name.strip() or len(name) > MAX_INPUT_NAME:
            raise InvalidArgument(f"template_inputs: a name must be 1-{MAX_INPUT_NAME} characters")
        if name in names:
            raise InvalidArgument(f"template_inputs: the name {name!r} is used twice")
        names.add(name)
        if (template_input.input_type or "user") not in INPUT_TYPES:
            raise InvalidArgument(f"template_inputs: input_type of {name!r} must be user "
                                  "(fact, variable and puppet parameter inputs are not supported)")
        if len(template_input.options) > MAX_OPTIONS or any(len(o) > MAX_INPUT_TEXT for o in template_input.options):
            raise InvalidArgument(f"template_inputs: the options of {name!r} must be at most {MAX_OPTIONS}, each at "
                                  f"most {MAX_INPUT_TEXT} characters")
        if len(template_input.description) > MAX_INPUT_TEXT or len(template_input.default_value) > MAX_INPUT_TEXT:
            raise InvalidArgument(f"template_inputs: description and default of {name!r} must be at most "
                                  f"{MAX_INPUT_TEXT} characters")
    tags = unsupported_tags(job.command)
    if tags:
        raise InvalidArgument(f"template: uses the unsupported ERB tag {tags[0][:80]!r} (only <%= input('name') %> and "
                              "<%# comments %> are rendered)")
    _, erb = referenced_inputs(job.command)
    undeclared = sorted(erb - names)
    if undeclared:
        raise InvalidArgument(f"template: input {undeclared[0]!r} is used but not declared in template_inputs")


def apply_defaults(job: Job) -> None:
    spec = job.job_template
    spec.provider_type = spec.provider_type or "script"
    next_id = max((i.id for i in spec.inputs), default=0) + 1
    seen: set[int] = set()
    for template_input in spec.inputs:
        template_input.input_type = template_input.input_type or "user"
        if template_input.id <= 0 or template_input.id in seen:  # a new input gets the next id
            template_input.id = next_id
            next_id += 1
        seen.add(template_input.id)
    if not spec.effective_user.value and not spec.effective_user.current_user:
        spec.effective_user.value = "root"
    # The runs' timeout: the template's execution_timeout_interval, else a day; one attempt, as Foreman.
    job.timeout_secs = spec.execution_timeout_interval if spec.HasField("execution_timeout_interval") \
        else DEFAULT_TIMEOUT_SECS
    if not job.HasField("max_attempts"):
        job.max_attempts = 1


def check_unlocked(before: Job, after: Job) -> None:
    """A locked template can only be unlocked (Foreman refuses every other change)."""
    if not before.job_template.locked:
        return
    def comparable(job: Job, locked: bool) -> bytes:
        copy = Job()
        copy.CopyFrom(job)
        copy.job_template.locked = locked
        for field in ("updated_at", "updated_by", "version", "version_id"):
            copy.ClearField(field)
        return copy.SerializeToString(deterministic=True)

    if comparable(after, True) != comparable(before, True):
        raise FailedPrecondition("This template is locked. Please clone it to a new template to customize.")


# -- searching templates: the devices' query language, Foreman dialect, over a template's fields -------

_SEARCH_FIELDS = {"name": "name", "job_category": "job_category", "provider_type": "provider_type",
                  "description_format": "description_format", "snippet": "snippet", "locked": "locked",
                  "id": "number", "template": "template"}


def _search_dialect():
    from services.devices import query

    return query.Dialect("foreman job templates", lambda name: _SEARCH_FIELDS.get(name.lower()),
                         ", ".join(_SEARCH_FIELDS), numeric_fields=("number",), contains_like=True,
                         bare_field="name", logic_symbols=True)


def search(jobs: list[Job], text: str) -> list[Job]:
    """The templates matching a search (evaluated here: templates are few, stored as definitions)."""
    if not text.strip():
        return jobs
    from services.devices import query

    node = query.parse(text, _search_dialect())
    return [job for job in jobs if _matches(node, job, query)]


def _value(job: Job, field: str) -> str | int | bool:
    spec = job.job_template
    return {"name": job.name, "job_category": spec.job_category, "provider_type": spec.provider_type,
            "description_format": spec.description_format, "snippet": spec.snippet, "locked": spec.locked,
            "number": job.number, "template": job.command}[field]


def _matches(node, job: Job, query) -> bool:
    import re

    if isinstance(node, query.Comparison):
        positive, negated = query.positive_op(node.op)
        value = _value(job, node.field)
        if isinstance(value, bool):
            wanted = [v.lower() in ("true", "1", "yes") for v in node.values]
            hit = value in wanted if positive in ("=", "^") else False
        elif isinstance(value, int):
            numbers = [int(v) for v in node.values]
            hit = {"=": value in numbers[:1], "^": value in numbers, "<": bool(numbers) and value < numbers[0],
                   ">": bool(numbers) and value > numbers[0], "<=": bool(numbers) and value <= numbers[0],
                   ">=": bool(numbers) and value >= numbers[0]}.get(positive, False)
        elif positive == "~":
            pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in node.values[0])
            hit = re.fullmatch(pattern, value, re.IGNORECASE | re.DOTALL) is not None
        elif positive == "^":
            hit = value in node.values
        else:
            hit = value == node.values[0]
        return not hit if negated else hit
    if node[0] == "not":
        return not _matches(node[1], job, query)
    if node[0] == "and":
        return _matches(node[1], job, query) and _matches(node[2], job, query)
    return _matches(node[1], job, query) or _matches(node[2], job, query)
