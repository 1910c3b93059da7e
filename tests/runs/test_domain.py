"""Run rules without I/O."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from jobline.jobs.v1.jobs_pb2 import Job
from services.common.errors import InvalidArgument
from services.runs import domain

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_commands_are_rendered_with_shell_quoted_inputs() -> None:
    assert domain.render_command("echo {{ who }} {{n}}", {"who": "a b; rm -rf /", "n": "1"}) == \
        "echo 'a b; rm -rf /' 1"


def test_a_missing_input_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="missing inputs: host"):
        domain.render_command("ping {{host}}", {})


def test_inputs_are_the_job_defaults_overlaid_with_the_payload() -> None:
    job = Job(default_inputs={"host": "a", "count": "3"})
    assert domain.inputs_for(job, {"host": "b", "opts": {"v": True}}) == {"host": "b", "count": "3",
                                                                          "opts": '{"v":true}'}


@pytest.mark.parametrize(("strategy", "delays", "attempt", "expected"), [
    ("exponential", [], 1, 1), ("exponential", [], 4, 8), ("linear", [5], 3, 15),
    ("fixed", [7], 5, 7), ("custom", [1, 10, 100], 2, 10), ("custom", [1, 10], 9, 10),
    ("exponential", [], 30, 3600),
])
def test_backoff_follows_the_strategy_within_jitter(strategy, delays, attempt, expected) -> None:
    job = Job(retry_strategy=strategy, retry_delays_secs=delays)
    delay = domain.backoff_secs(job, attempt, random.Random(1))
    assert expected * 0.8 <= delay <= min(expected * 1.2, 3600)


def test_a_failure_with_attempts_left_is_retried_later() -> None:
    step = domain.after_failure(Job(), domain.Outcome("failed"), attempt=1, max_attempts=3, now=NOW)
    assert step.status == "delayed" and step.retry_at > NOW


def test_exhausted_retries_go_to_the_dead_letter_queue() -> None:
    assert domain.after_failure(Job(), domain.Outcome("failed"), 3, 3, NOW).status == "dead_letter"
    assert domain.after_failure(Job(), domain.Outcome("failed"), 1, 1, NOW).status == "failed"


def test_a_canceled_attempt_is_never_retried() -> None:
    outcome = domain.agent_outcome(exit_code=-15, error="", timed_out=False, canceled=True)
    assert domain.after_failure(Job(), outcome, 1, 3, NOW).status == "canceled"


def test_agent_reports_map_to_statuses() -> None:
    assert domain.agent_outcome(0, "", False, False).status == "completed"
    assert domain.agent_outcome(2, "", False, False).status == "failed"
    assert domain.agent_outcome(-9, "", True, False).status == "timed_out"
