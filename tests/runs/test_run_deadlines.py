"""The runs service never leaves a device run hanging: an executing run past its timeout (plus slack) ends
timed_out even when the agent never reports; a rejected run ends with the agent's reason; a run whose Accept
was lost with a stream is executing once the agent reconnects holding it. Real gRPC, a scripted agent, a fake clock."""

from __future__ import annotations

import asyncio

from jobline.runs.v1 import agent_pb2, runs_pb2
from services.runs.engine import EXECUTION_SLACK_SECS

from .test_runs_service import Platform, ScriptedAgent, platform, trigger  # noqa: F401


async def test_a_run_past_its_deadline_ends_timed_out_and_the_device_is_told_to_stop(platform: Platform) -> None:
    job_id, credential = await platform.device_job("sleep 600", timeout_secs=10, max_attempts=1)
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    run = await trigger(platform, job_id)
    ref = (await agent.receive("assign")).assign.run
    agent.send(accept=agent_pb2.Accept(run=ref))
    await asyncio.sleep(0.2)
    for _ in range(3):  # heartbeats keep flowing, but the agent never stops the command
        platform.clock.advance((10 + EXECUTION_SLACK_SECS) / 3 - 1)
        agent.send(heartbeat=agent_pb2.Heartbeat(runs=[ref]))
        await asyncio.sleep(0.1)
        await platform.service.tick()
    assert (await platform.run(run.id)).status == runs_pb2.RUN_STATUS_EXECUTING
    platform.clock.advance(5)
    agent.send(heartbeat=agent_pb2.Heartbeat(runs=[ref]))
    await asyncio.sleep(0.1)
    await platform.service.tick()
    done = await platform.run(run.id)
    assert done.status == runs_pb2.RUN_STATUS_TIMED_OUT, done
    assert done.error == "timed out after 10 s (the executor did not stop it)"
    cancel = (await agent.receive("cancel")).cancel
    assert cancel.run == ref and cancel.force
    agent.close()


async def test_a_rejected_assignment_ends_the_run_with_the_agents_reason(platform: Platform) -> None:
    job_id, credential = await platform.device_job("echo hi", max_attempts=3)
    agent = ScriptedAgent(platform, credential)
    await agent.receive("welcome")
    run = await trigger(platform, job_id)
    ref = (await agent.receive("assign")).assign.run
    agent.send(reject=agent_pb2.Reject(run=ref, reason="could not start the command: [Errno 7] too long"))
    for _ in range(50):
        done = await platform.run(run.id)
        if done.status != runs_pb2.RUN_STATUS_DEQUEUED:
            break
        await asyncio.sleep(0.05)
    assert (done.status, done.attempt) == (runs_pb2.RUN_STATUS_FAILED, 1), done
    assert done.error == "rejected by the agent: could not start the command: [Errno 7] too long"
    agent.close()


async def test_a_held_run_whose_accept_was_lost_is_executing_after_the_reconnect(platform: Platform) -> None:
    job_id, credential = await platform.device_job("sleep 5", timeout_secs=30)
    first = ScriptedAgent(platform, credential)
    await first.receive("welcome")
    run = await trigger(platform, job_id)
    ref = (await first.receive("assign")).assign.run
    first.close()  # the Accept never left the device
    await asyncio.sleep(0.2)
    assert (await platform.run(run.id)).status == runs_pb2.RUN_STATUS_DEQUEUED

    second = ScriptedAgent(platform, credential, held=[ref])
    await second.receive("welcome")
    executing = await platform.run(run.id)
    assert executing.status == runs_pb2.RUN_STATUS_EXECUTING
    platform.clock.advance(31)  # past the claim lease: an executing run is not put back in the queue
    second.send(heartbeat=agent_pb2.Heartbeat(runs=[ref]))
    await asyncio.sleep(0.1)
    await platform.service.tick()
    assert (await platform.run(run.id)).status == runs_pb2.RUN_STATUS_EXECUTING
    second.send(finished=agent_pb2.Finished(run=ref, exit_code=0))
    assert (await second.receive("ack")).ack.finished
    assert (await platform.run(run.id)).status == runs_pb2.RUN_STATUS_COMPLETED
    second.close()
