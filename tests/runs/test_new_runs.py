"""The runs one trigger call makes: built with what they share computed once (a bulk trigger's way),
they are the runs built one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import configure_mappers

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, Principal
from jobline.jobs.v1 import jobs_pb2
from services.common.clock import Clock
from services.runs import domain
from services.runs.engine import RunEngine, RunSpec

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
JOBS = [
    jobs_pb2.Job(id="j1", project_id="default", slug="s", version=2, version_id="v1", endpoint_url="http://x/"),
    jobs_pb2.Job(id="j2", project_id="p", slug="s", version=3, version_id="v2", command="echo", max_attempts=4,
                 timeout_secs=30, run_ttl_secs=600, max_concurrency=2, rate_limit_max=5, rate_limit_window_secs=60,
                 max_concurrency_per_key=1, rate_limit_keys=[jobs_pb2.RateLimitKey(name="ck", max=3, window_secs=10)],
                 default_run_metadata={"a": "b"}, webhook_url="http://hook", execution_window_cron="0 9 * * *",
                 timezone="UTC"),
]
SPECS = [
    RunSpec(payload={"n": 1}, payload_hash="h"),
    RunSpec(payload={}, payload_hash="x", priority=3, scheduled=NOW + timedelta(days=1), idempotency_key="k",
            metadata={"m": "1"}, tags={"t": "2"}, concurrency_key="ck"),
    RunSpec(payload={"n": 2}, payload_hash="y", scheduled=NOW + timedelta(days=1), concurrency_key="other"),
    RunSpec(payload={"n": 1}, payload_hash="h", scheduled=NOW - timedelta(days=1), metadata={"a": "c"}),
]


def test_shared_and_one_by_one_runs_are_the_same() -> None:
    configure_mappers()
    engine = RunEngine(None, None, Clock())  # type: ignore[arg-type] - building runs needs no store
    principal = Principal(tenant_id="t1", subject_id="u1", subject_name="cron",
                          subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, scopes=["ADMIN"])
    for job in JOBS:
        for deps in ([], [{"id": "d", "depends_on_job_id": "j0", "condition": "on_success", "created_at": ""}]):
            shared: dict = {}
            for index, spec in enumerate(SPECS * 2):
                kw = dict(invocation_id=f"i{index}", deps=deps, device_id=["", "dev", "@t1/pool"][index % 3], command="c",
                          keyed=index % 3 == 0, batch_id="b", run_token_hash="rt", name=f"n{index}", run_id=f"r{index}")
                alone = engine._new_run(principal, job, spec, NOW, index, **kw)
                together = engine._new_run(principal, job, spec, NOW, index, shared=shared, **kw)
                assert together.model_dump() == alone.model_dump()
                assert together.__pydantic_fields_set__ == alone.__pydantic_fields_set__


def test_run_names_draw_one_suffix_each() -> None:
    names = domain.run_names("slug", "", 500)
    assert len(set(names)) == 500
    assert all(n.startswith("slug-") and len(n) == 5 + domain.NAME_SUFFIX_LENGTH
               and set(n[5:]) <= set(domain.NAME_SUFFIX_ALPHABET) for n in names)
    assert domain.run_names("slug", "", 0) == []
    import random

    assert domain.run_names("s", "", 3, random.Random(7)) == [
        f"s-{''.join(random.Random(7).choices(domain.NAME_SUFFIX_ALPHABET, k=24))[i:i + 8]}" for i in (0, 8, 16)]
