"""The runs service's API rules over real gRPC (jobs and devices services beside it), time on a fake clock:
triggering (idempotency, dedup, payload schema, windows, TTL, bulk), replay / DLQ / cancel / lineage,
events and outputs, listing, flow control, health, webhooks, dependencies and WatchRun."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from jobline.auth.v1.auth_pb2 import SUBJECT_TYPE_SERVICE_ACCOUNT, Principal
from jobline.jobs.v1 import jobs_pb2
from jobline.runs.v1 import runs_pb2
from services.common.principal import ADMIN, to_metadata
from services.runs import domain

from .test_runs_service import ADMIN_CALL, Platform, platform  # noqa: F401 - the fixture

Q = runs_pb2


class Hooks(BaseHTTPRequestHandler):
    """Endpoint and webhook receiver: /ok answers 200, /fail 500, /bad 400; records every request."""

    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooks.received.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        status = {"/fail": 500, "/bad": 400}.get(self.path, 200)
        answer = json.dumps({"ok": True}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(scope="module")
def hooks() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def ts(dt) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(dt)
    return t


async def endpoint_job(platform: Platform, url: str = "http://127.0.0.1:9/none", **fields) -> jobs_pb2.Job:
    slug = f"job-{uuid.uuid4().hex[:8]}"
    return await platform.jobs.CreateJob(jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(
        project_id="default", name=slug, slug=slug, endpoint_url=url, **fields)), metadata=ADMIN_CALL)


def hold(platform: Platform) -> None:
    """Keeps the HTTP executor from starting runs, so the queue can be looked at."""
    platform.service.http.concurrency = 0


async def trigger(platform: Platform, job_id: str, call=ADMIN_CALL, **fields) -> Q.Run:
    if "payload" in fields:
        fields["payload"] = struct(fields["payload"])
    return await platform.runs.TriggerJob(Q.TriggerJobRequest(job_id=job_id, **fields), metadata=call)


async def error_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code()


# -- 1. triggering ------------------------------------------------------------------------------


async def test_an_idempotency_key_returns_the_same_run(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform)
    first = await trigger(platform, job.id, idempotency_key="k1", payload={"a": 1})
    again = await trigger(platform, job.id, idempotency_key="k1", payload={"a": 2})
    assert again.id == first.id and again.idempotency_hit and not first.idempotency_hit
    other = await trigger(platform, job.id, idempotency_key="k2")
    assert other.id != first.id
    reset = await platform.runs.ResetIdempotencyKey(Q.GetRunRequest(run_id=first.id), metadata=ADMIN_CALL)
    assert (reset.status, reset.run_id) == ("reset", first.id)
    assert (await trigger(platform, job.id, idempotency_key="k1")).id != first.id


async def test_the_same_payload_within_the_dedup_window_returns_the_existing_run(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform, dedup_window_secs=60)
    first = await trigger(platform, job.id, payload={"b": 1, "a": [1, 2]})
    same = await trigger(platform, job.id, payload={"a": [1, 2], "b": 1})  # canonical: key order ignored
    assert same.id == first.id and same.idempotency_hit
    assert (await trigger(platform, job.id, payload={"b": 2})).id != first.id
    platform.clock.advance(61)
    assert (await trigger(platform, job.id, payload={"b": 1, "a": [1, 2]})).id != first.id


async def test_a_payload_failing_the_schema_is_refused(platform: Platform) -> None:
    hold(platform)
    schema = struct({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 1}}})
    job = await endpoint_job(platform, payload_schema=schema)
    assert (await trigger(platform, job.id, payload={"n": 3})).status == Q.RUN_STATUS_QUEUED
    assert await error_of(trigger(platform, job.id, payload={"n": 0})) == grpc.StatusCode.INVALID_ARGUMENT
    assert await error_of(trigger(platform, job.id, payload={})) == grpc.StatusCode.INVALID_ARGUMENT


async def test_outside_its_execution_window_a_run_waits_for_the_window(platform: Platform) -> None:
    hold(platform)
    # The fake clock starts at 12:00 UTC = 13:00 in Paris (winter); the window is 14:00-14:59 Paris time.
    job = await endpoint_job(platform, execution_window_cron="* 14 * * *", timezone="Europe/Paris")
    run = await trigger(platform, job.id)
    assert run.status == Q.RUN_STATUS_DELAYED
    assert run.scheduled_at.ToDatetime().isoformat() == "2026-01-01T13:00:00"
    platform.clock.advance(3600)
    await platform.service.tick()
    assert (await platform.run(run.id)).status == Q.RUN_STATUS_QUEUED
    assert (await trigger(platform, job.id)).status == Q.RUN_STATUS_QUEUED  # inside the window now


async def test_scheduled_runs_are_delayed_and_unstarted_runs_expire(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform, run_ttl_secs=30)
    later = await trigger(platform, job.id, scheduled_at=ts(platform.clock.now() + timedelta(seconds=10)))
    assert later.status == Q.RUN_STATUS_DELAYED
    platform.clock.advance(31)
    await platform.service.tick()
    expired = await platform.run(later.id)
    assert expired.status == Q.RUN_STATUS_EXPIRED


async def test_a_disabled_job_cannot_be_triggered(platform: Platform) -> None:
    job = await endpoint_job(platform, enabled=False)
    assert await error_of(trigger(platform, job.id)) == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_cron_service_account_triggers_as_cron(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform)
    cron = to_metadata(Principal(tenant_id="t1", project_id="default", subject_id="sa-cron", subject_name="cron",
                                 subject_type=SUBJECT_TYPE_SERVICE_ACCOUNT, scopes=[ADMIN]))
    user_named_cron = to_metadata(Principal(tenant_id="t1", subject_id="u2", subject_name="cron", scopes=[ADMIN]))
    assert (await trigger(platform, job.id, call=cron)).triggered_by == "cron"
    assert (await trigger(platform, job.id, call=user_named_cron)).triggered_by == "manual"


async def test_bulk_trigger_creates_a_thousand_runs_in_one_call(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform)
    await trigger(platform, job.id, idempotency_key="seen")
    items = [Q.BulkTriggerItem(payload=struct({"i": i}), idempotency_key=f"b{i}" if i % 100 == 0 else "")
             for i in range(998)]
    items.append(Q.BulkTriggerItem(idempotency_key="seen"))
    items.append(Q.BulkTriggerItem(idempotency_key="b0"))  # repeated inside the call
    reply = await platform.runs.BulkTriggerJob(Q.BulkTriggerJobRequest(job_id=job.id, items=items),
                                               metadata=ADMIN_CALL)
    assert (reply.total, reply.created) == (1000, 998) and reply.batch_id
    assert [r.idempotency_hit for r in reply.results[-2:]] == [True, True]
    assert reply.results[-1].id == reply.results[0].id
    assert all(r.run_token.startswith("jlrt_") for r in reply.results[:998])
    page = await platform.runs.ListRuns(Q.ListRunsRequest(batch_id=reply.batch_id, limit=1000), metadata=ADMIN_CALL)
    assert len(page.runs) == 998 and {r.batch_id for r in page.runs} == {reply.batch_id}
    again = await platform.runs.BulkTriggerJob(Q.BulkTriggerJobRequest(job_id=job.id, items=items[:101]),
                                               metadata=ADMIN_CALL)
    assert again.created == 99 and sum(r.idempotency_hit for r in again.results) == 2


# -- 3. retries, replay, DLQ, cancel, lineage, events, outputs ----------------------------------


def test_backoff_strategies_are_capped_and_jittered() -> None:
    import random

    class Fixed(random.Random):
        def uniform(self, a, b):
            return 0.0

    job = jobs_pb2.Job()
    assert [domain.backoff_secs(job, n, Fixed()) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert domain.backoff_secs(job, 20, Fixed()) == 3600
    assert domain.backoff_secs(jobs_pb2.Job(retry_strategy="linear", retry_delays_secs=[5]), 3, Fixed()) == 15
    assert domain.backoff_secs(jobs_pb2.Job(retry_strategy="fixed", retry_delays_secs=[7]), 3, Fixed()) == 7
    custom = jobs_pb2.Job(retry_strategy="custom", retry_delays_secs=[3, 30])
    assert [domain.backoff_secs(custom, n, Fixed()) for n in (1, 2, 5)] == [3, 30, 30]
    delays = {domain.backoff_secs(jobs_pb2.Job(), 3) for _ in range(200)}
    assert min(delays) >= 3.2 and max(delays) <= 4.8 and len(delays) > 1


async def test_exhausted_retries_dead_letter_and_replay_makes_a_lineage(platform: Platform, hooks: str) -> None:
    job = await endpoint_job(platform, f"{hooks}/fail", max_attempts=2)
    run = await trigger(platform, job.id)
    for _ in range(50):
        if (current := await platform.run(run.id)).status == Q.RUN_STATUS_DELAYED:
            break
        await asyncio.sleep(0.05)
    assert current.attempt == 2 and current.HasField("next_retry_at")
    platform.clock.advance(3)
    await platform.service.tick()
    for _ in range(50):
        if (current := await platform.run(run.id)).status == Q.RUN_STATUS_DEAD_LETTER:
            break
        await asyncio.sleep(0.05)
    assert current.status == Q.RUN_STATUS_DEAD_LETTER
    dlq = await platform.runs.ListDeadLetterRuns(Q.ListRunsRequest(project_id="default"), metadata=ADMIN_CALL)
    assert run.id in [r.id for r in dlq.runs]
    hold(platform)
    replay = await platform.runs.ReplayDeadLetterRun(Q.ReplayRunRequest(run_id=run.id), metadata=ADMIN_CALL)
    assert (replay.continuation_of, replay.lineage_depth, replay.attempt) == (run.id, 1, 1)
    again = await platform.runs.ReplayRun(Q.ReplayRunRequest(run_id=run.id), metadata=ADMIN_CALL)
    lineage = await platform.runs.ListRunLineage(Q.GetRunRequest(run_id=replay.id), metadata=ADMIN_CALL)
    assert [r.id for r in lineage.runs] == [run.id, replay.id, again.id]
    assert await error_of(platform.runs.ReplayDeadLetterRun(Q.ReplayRunRequest(run_id=replay.id),
                                                            metadata=ADMIN_CALL)) == grpc.StatusCode.ABORTED
    bulk = await platform.runs.BulkReplayDeadLetterRuns(Q.BulkReplayDeadLetterRunsRequest(project_id="default"),
                                                        metadata=ADMIN_CALL)
    assert bulk.count >= 1 and bulk.replayed[0].continuation_of == run.id
    events = await platform.runs.ListRunEvents(Q.ListRunEventsRequest(run_id=run.id), metadata=ADMIN_CALL)
    types = [e.type for e in events.events]
    assert types[0] == "run.created" and types[-1] == "run.dead_letter"
    assert "run.delayed" in types and types.count("run.executing") == 2
    errors = await platform.runs.ListRunEvents(Q.ListRunEventsRequest(run_id=run.id, level="error"),
                                               metadata=ADMIN_CALL)
    assert [e.type for e in errors.events] == ["run.dead_letter"]


async def test_an_endpoint_result_is_the_runs_output(platform: Platform, hooks: str) -> None:
    job = await endpoint_job(platform, f"{hooks}/ok")
    run = await trigger(platform, job.id)
    for _ in range(50):
        if (await platform.run(run.id)).status == Q.RUN_STATUS_COMPLETED:
            break
        await asyncio.sleep(0.05)
    outputs = await platform.runs.ListRunOutputs(Q.GetRunRequest(run_id=run.id), metadata=ADMIN_CALL)
    assert [(o.output_key, dict(o.value)) for o in outputs.outputs] == [("result", {"ok": True})]


async def test_canceling_a_parent_cancels_its_children_and_bulk_cancel_reports_each(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform)
    parent = await trigger(platform, job.id)
    child = await trigger(platform, job.id, parent_run_id=parent.id)
    grandchild = await trigger(platform, job.id, parent_run_id=child.id)
    assert child.triggered_by == "spawn"
    children = await platform.runs.ListChildRuns(Q.GetRunRequest(run_id=parent.id), metadata=ADMIN_CALL)
    assert [r.id for r in children.runs] == [child.id]
    await platform.runs.DeleteRun(Q.CancelRunRequest(run_id=parent.id), metadata=ADMIN_CALL)
    for run_id in (parent.id, child.id, grandchild.id):
        assert (await platform.run(run_id)).status == Q.RUN_STATUS_CANCELED

    a, b = await trigger(platform, job.id), await trigger(platform, job.id)
    reply = await platform.runs.BulkCancelRuns(Q.BulkCancelRunsRequest(run_ids=[a.id, parent.id, "nope", b.id]),
                                               metadata=ADMIN_CALL)
    assert (reply.total, reply.canceled, reply.failed) == (4, 2, 2)
    assert [r.status for r in reply.results] == ["canceled", "canceled", "not_found", "canceled"]
    assert reply.results[1].error == "run is already canceled" and reply.results[2].status == "not_found"

    c = await trigger(platform, job.id)
    everything = await platform.runs.BulkCancelAllRuns(Q.BulkCancelAllRunsRequest(
        project_id="default", filter=Q.BulkCancelAllFilter(job_id=job.id)), metadata=ADMIN_CALL)
    assert everything.canceled == 1 and everything.results[0].id == c.id


async def test_a_run_not_started_can_be_rescheduled(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform)
    run = await trigger(platform, job.id, payload={"v": 1})
    later = platform.clock.now() + timedelta(hours=1)
    moved = await platform.runs.RescheduleRun(Q.RescheduleRunRequest(
        run_id=run.id, scheduled_at=ts(later), payload=struct({"v": 2})), metadata=ADMIN_CALL)
    assert moved.status == Q.RUN_STATUS_DELAYED and dict(moved.payload) == {"v": 2}
    await platform.runs.CancelRun(Q.CancelRunRequest(run_id=run.id), metadata=ADMIN_CALL)
    assert await error_of(platform.runs.RescheduleRun(Q.RescheduleRunRequest(run_id=run.id, scheduled_at=ts(later)),
                                                      metadata=ADMIN_CALL)) == grpc.StatusCode.ABORTED


async def test_a_runs_first_event_says_how_it_was_created_whatever_came_after(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform)
    later = platform.clock.now() + timedelta(hours=1)
    queued = await trigger(platform, job.id)
    delayed = await trigger(platform, job.id, scheduled_at=ts(later))
    bulk = await platform.runs.BulkTriggerJob(Q.BulkTriggerJobRequest(job_id=job.id, items=[
        Q.BulkTriggerItem(), Q.BulkTriggerItem(scheduled_at=ts(later))]), metadata=ADMIN_CALL)
    # then each goes another way: the queued one is put off, the delayed one brought forward
    await platform.runs.RescheduleRun(Q.RescheduleRunRequest(run_id=queued.id, scheduled_at=ts(later)),
                                      metadata=ADMIN_CALL)
    await platform.runs.RescheduleRun(Q.RescheduleRunRequest(run_id=delayed.id,
                                                             scheduled_at=ts(platform.clock.now())), metadata=ADMIN_CALL)
    await platform.runs.CancelRun(Q.CancelRunRequest(run_id=bulk.results[0].id), metadata=ADMIN_CALL)
    replay = await platform.runs.ReplayRun(Q.ReplayRunRequest(run_id=bulk.results[0].id), metadata=ADMIN_CALL)
    # a replay of a run created delayed is created queued (not what the run it replays was created as)
    await platform.runs.CancelRun(Q.CancelRunRequest(run_id=bulk.results[1].id), metadata=ADMIN_CALL)
    replay_of_delayed = await platform.runs.ReplayRun(Q.ReplayRunRequest(run_id=bulk.results[1].id),
                                                      metadata=ADMIN_CALL)
    expected = {queued.id: "queued", delayed.id: "delayed", bulk.results[0].id: "queued",
                bulk.results[1].id: "delayed", replay.id: "queued", replay_of_delayed.id: "queued"}
    for run_id, status in expected.items():
        run = await platform.run(run_id)
        events = (await platform.runs.ListRunEvents(Q.ListRunEventsRequest(run_id=run_id),
                                                    metadata=ADMIN_CALL)).events
        first = events[0]
        assert (first.type, first.level, first.message, dict(first.data)) == (
            "run.created", "info", f"run {status}", {"status": status, "attempt": 1}), run_id
        assert first.created_at == run.created_at and first.run_id == run_id and first.id
        again = await platform.runs.ListRunEvents(Q.ListRunEventsRequest(run_id=run_id, type="run.created",
                                                                         level="info"), metadata=ADMIN_CALL)
        assert list(again.events) == [first]
    canceled = await platform.runs.ListRunEvents(Q.ListRunEventsRequest(run_id=bulk.results[0].id),
                                                 metadata=ADMIN_CALL)
    assert [e.type for e in canceled.events] == ["run.created", "run.canceled"]
    warned = await platform.runs.ListRunEvents(Q.ListRunEventsRequest(run_id=bulk.results[0].id, level="warn"),
                                               metadata=ADMIN_CALL)
    assert [e.type for e in warned.events] == ["run.canceled"]


# -- 8. listing ---------------------------------------------------------------------------------


async def test_runs_are_listed_by_filters_and_paged_by_cursor(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform)
    for i in range(5):
        await trigger(platform, job.id, payload={"i": i, "tag": {"color": "red" if i % 2 else "blue"}},
                      metadata={"team": "a" if i < 2 else "b"})
        platform.clock.advance(1)
    async def ids(**fields) -> list[str]:
        reply = await platform.runs.ListRuns(Q.ListRunsRequest(job_id=job.id, **fields), metadata=ADMIN_CALL)
        return [dict(r.payload)["i"] for r in reply.runs]
    assert await ids() == [4, 3, 2, 1, 0]
    assert await ids(metadata_key="team", metadata_value="a") == [1, 0]
    assert await ids(payload_contains='{"tag": {"color": "red"}}') == [3, 1]
    assert await ids(payload_contains='{"i": 2}') == [2]
    assert await ids(triggered_by="cron") == []
    page = await platform.runs.ListRuns(Q.ListRunsRequest(job_id=job.id, limit=2), metadata=ADMIN_CALL)
    rest = await platform.runs.ListRuns(Q.ListRunsRequest(job_id=job.id, limit=2, cursor=page.next_cursor),
                                        metadata=ADMIN_CALL)
    assert [dict(r.payload)["i"] for r in [*page.runs, *rest.runs]] == [4, 3, 2, 1]
    assert await error_of(platform.runs.ListRuns(Q.ListRunsRequest(payload_contains="[1]"), metadata=ADMIN_CALL)) \
        == grpc.StatusCode.INVALID_ARGUMENT


# -- 2. flow control ----------------------------------------------------------------------------


async def triggers(platform: Platform, job_id: str, n: int, **fields) -> list[Q.Run]:
    runs = []
    for _ in range(n):
        runs.append(await trigger(platform, job_id, **fields))
        platform.clock.advance(0.001)
    return runs


async def claimable(platform: Platform) -> set[str]:
    store, now = platform.service.store, platform.clock.now()
    rows = await store.queued_for([""], 100)
    return await store.claim([r.id for r in rows], "test", now, now + timedelta(seconds=30))


async def test_concurrency_and_rate_limits_keep_runs_queued(platform: Platform) -> None:
    hold(platform)
    limited = await endpoint_job(platform, max_concurrency=2)
    free = await endpoint_job(platform)
    runs = await triggers(platform, limited.id, 4, priority=5)
    other = await trigger(platform, free.id)
    got = await claimable(platform)
    assert got == {runs[0].id, runs[1].id, other.id}  # the blocked job does not starve the other
    assert await claimable(platform) == set()
    await platform.service.engine.accept(runs[0].id, 1)
    await platform.service.engine.end_attempt(runs[0].id, 1, domain.Outcome("completed"))
    assert await claimable(platform) == {runs[2].id}

    keyed = await endpoint_job(platform, max_concurrency_per_key=1)
    a1, a2 = await triggers(platform, keyed.id, 2, concurrency_key="a")
    b1 = await trigger(platform, keyed.id, concurrency_key="b")
    assert await claimable(platform) == {a1.id, b1.id}

    rated = await endpoint_job(platform, rate_limit_max=2, rate_limit_window_secs=60,
                               rate_limit_keys=[jobs_pb2.RateLimitKey(name="x", max=1, window_secs=10)])
    r = await triggers(platform, rated.id, 3)
    assert await claimable(platform) == {r[0].id, r[1].id}
    platform.clock.advance(61)
    assert await claimable(platform) == {r[2].id}
    x1, x2 = await triggers(platform, rated.id, 2, concurrency_key="x")
    platform.clock.advance(61)
    assert await claimable(platform) == {x1.id}
    platform.clock.advance(11)
    assert await claimable(platform) == {x2.id}


# -- 6. health ----------------------------------------------------------------------------------


async def test_health_is_computed_from_the_windows_runs(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform, max_attempts=1)
    engine = platform.service.engine
    durations = [1, 1, 1, 1, 10]
    for i, secs in enumerate(durations):
        run = await trigger(platform, job.id)
        await claimable(platform)
        await engine.accept(run.id, 1)
        platform.clock.advance(secs)
        await engine.end_attempt(run.id, 1, domain.Outcome("completed" if i < 4 else "failed", retryable=False))
    stats = await platform.runs.GetJobHealth(Q.GetJobHealthRequest(job_id=job.id, window="1h"), metadata=ADMIN_CALL)
    assert (stats.total_runs, stats.completed_runs, stats.failed_runs) == (5, 4, 1)
    assert stats.success_rate == 80 and stats.avg_duration_secs == pytest.approx(2.8)
    assert stats.p95_duration_secs == pytest.approx(10)
    stability = 30 - min((10 / 2.8 - 2) * 15, 30)
    assert stats.health_score == pytest.approx(0.7 * 80 + stability)
    platform.clock.advance(2 * 3600)
    empty = await platform.runs.GetJobHealth(Q.GetJobHealthRequest(job_id=job.id, window="1h"), metadata=ADMIN_CALL)
    assert (empty.total_runs, empty.health_score) == (0, -1)
    week = await platform.runs.GetJobHealth(Q.GetJobHealthRequest(job_id=job.id), metadata=ADMIN_CALL)
    assert week.total_runs == 5
    assert await error_of(platform.runs.GetJobHealth(Q.GetJobHealthRequest(job_id=job.id, window="2d"),
                                                     metadata=ADMIN_CALL)) == grpc.StatusCode.INVALID_ARGUMENT


def test_the_health_score_formula() -> None:
    assert domain.health_score(0, 0, None, None) == (0.0, -1.0)
    assert domain.health_score(10, 10, 2.0, 3.0) == (100.0, 100.0)
    assert domain.health_score(4, 2, None, None) == (50.0, 35.0)
    assert domain.health_score(4, 2, 1.0, 10.0) == (50.0, 35.0)  # stability reduced by the full 30


# -- 5. webhooks --------------------------------------------------------------------------------


async def test_a_terminal_state_posts_a_signed_webhook_retried_until_delivered(platform: Platform, hooks: str) -> None:
    hold(platform)
    Hooks.received.clear()
    job = await endpoint_job(platform, webhook_url=f"{hooks}/fail", webhook_secret="s3cret")
    run = await trigger(platform, job.id)
    await platform.runs.CancelRun(Q.CancelRunRequest(run_id=run.id), metadata=ADMIN_CALL)
    sender, store = platform.service.webhooks, platform.service.store
    assert await sender.send_due() == 1
    (delivery,) = await store.deliveries(run.id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 500)
    assert await sender.send_due() == 0  # not due before its backoff
    await store.finish_delivery(delivery.id, url=f"{hooks}/ok")
    platform.clock.advance(1)
    assert await sender.send_due() == 1
    assert (await store.deliveries(run.id))[0].state == "delivered"
    sent = Hooks.received[-1]
    body = json.loads(sent["body"])
    assert {k: body[k] for k in ("run_id", "job_id", "project_id", "status", "attempt")} == {
        "run_id": run.id, "job_id": job.id, "project_id": "default", "status": "canceled", "attempt": 1}
    assert body["error"] == "canceled" and body["timestamp"]
    stamp = sent["headers"]["X-Strait-Timestamp"]
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + sent["body"], hashlib.sha256).hexdigest()
    assert sent["headers"]["X-Strait-Signature"] == f"v1={expected}"


# -- 4. dependencies ----------------------------------------------------------------------------


async def test_a_run_waits_for_its_dependencies(platform: Platform) -> None:
    hold(platform)
    upstream = await endpoint_job(platform)
    downstream = await endpoint_job(platform)
    try:
        await platform.jobs.CreateJobDependency(jobs_pb2.CreateJobDependencyRequest(
            job_id=downstream.id, depends_on_job_id=upstream.id), metadata=ADMIN_CALL)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
            pytest.skip("the jobs service does not serve dependencies yet")
        raise
    up = await trigger(platform, upstream.id)
    down = await trigger(platform, downstream.id)
    assert down.status == Q.RUN_STATUS_WAITING
    status = await platform.runs.GetRunDependencyStatus(Q.GetRunRequest(run_id=down.id), metadata=ADMIN_CALL)
    assert not status.dependencies_satisfied and status.dependencies[0].depends_on_job_id == upstream.id
    await platform.service.tick()
    assert (await platform.run(down.id)).status == Q.RUN_STATUS_WAITING
    await claimable(platform)
    await platform.service.engine.accept(up.id, 1)
    await platform.service.engine.end_attempt(up.id, 1, domain.Outcome("completed"))
    await platform.service.tick()
    assert (await platform.run(down.id)).status == Q.RUN_STATUS_QUEUED
    events = (await platform.runs.ListRunEvents(Q.ListRunEventsRequest(run_id=down.id), metadata=ADMIN_CALL)).events
    assert [(e.type, e.data["status"]) for e in events] == [("run.created", "waiting"), ("run.queued", "queued")]

    platform.clock.advance(1)
    blocked = await trigger(platform, downstream.id)
    failing = await trigger(platform, upstream.id)
    await claimable(platform)
    await platform.service.engine.accept(failing.id, 1)
    await platform.service.engine.end_attempt(failing.id, 1, domain.Outcome("failed", retryable=False))
    await platform.service.tick()
    assert (await platform.run(blocked.id)).status == Q.RUN_STATUS_CANCELED


# -- 7. watching --------------------------------------------------------------------------------


async def test_watch_streams_changes_and_output_until_the_run_ends(platform: Platform) -> None:
    hold(platform)
    job = await endpoint_job(platform)
    run = await trigger(platform, job.id)
    call = platform.runs.WatchRun(Q.GetRunRequest(run_id=run.id), metadata=ADMIN_CALL)
    first = await asyncio.wait_for(call.read(), 5)
    assert first.run.status == Q.RUN_STATUS_QUEUED
    store = platform.service.store
    await claimable(platform)
    await platform.service.engine.accept(run.id, 1)
    await store.add_chunks([dict(run_id=run.id, attempt=1, sequence=1, stream=1, data=b"hello",
                                 created_at=platform.clock.now())])
    await platform.service.engine.end_attempt(run.id, 1, domain.Outcome("completed"))
    seen = [first]
    while (message := await asyncio.wait_for(call.read(), 5)) is not grpc.aio.EOF:
        seen.append(message)
    kinds = [m.WhichOneof("body") for m in seen]
    assert "output" in kinds and seen[-1].run.status == Q.RUN_STATUS_COMPLETED
    assert next(m.output.data for m in seen if m.HasField("output")) == "hello"
    missing = platform.runs.WatchRun(Q.GetRunRequest(run_id="nope"), metadata=ADMIN_CALL)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await missing.read()
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_long_endpoint_call_is_not_mistaken_for_a_silent_device(platform: Platform) -> None:
    """An HTTP call in flight past the heartbeat deadline keeps its run executing (it beats)."""
    release = asyncio.Event()

    async def slow_endpoint(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(slow_endpoint, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/slow"
    job = await endpoint_job(platform, url, timeout_secs=600)
    run = await trigger(platform, job.id)
    for _ in range(100):
        if (await platform.run(run.id)).status == Q.RUN_STATUS_EXECUTING:
            break
        await asyncio.sleep(0.02)
    platform.clock.advance(120)  # four heartbeat deadlines
    await platform.service.tick()
    assert (await platform.run(run.id)).status == Q.RUN_STATUS_EXECUTING
    release.set()
    for _ in range(100):
        if (done := await platform.run(run.id)).status == Q.RUN_STATUS_COMPLETED:
            break
        await asyncio.sleep(0.02)
    assert done.status == Q.RUN_STATUS_COMPLETED and done.attempt == 1
    server.close()
