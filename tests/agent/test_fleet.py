"""The fleet simulator against a scripted server: many streams, redelivery, a reconnect storm."""

from __future__ import annotations

import asyncio

from agent.fleet import Fleet
from jobline.runs.v1 import agent_pb2

from .conftest import Connection, FakeAgentService, ref

AGENTS = 200


async def connect_all(service: FakeAgentService) -> dict[str, tuple[Connection, agent_pb2.Hello]]:
    """The next AGENTS streams, welcomed, by device id."""
    connections = [await service.accept() for _ in range(AGENTS)]
    hellos = await asyncio.gather(*(connection.welcome() for connection in connections))
    return {hello.device_id: (connection, hello) for connection, hello in zip(connections, hellos)}


async def until_connected(fleet: Fleet) -> None:
    async with asyncio.timeout(5):
        while fleet.connected < AGENTS:
            await asyncio.sleep(0.01)


async def test_every_simulated_agent_runs_its_assignment_and_redelivers_until_acked(
        fake: tuple[FakeAgentService, str]) -> None:
    service, addr = fake
    devices = [(f"sim-{i}", f"cred-{i}") for i in range(AGENTS)]
    fleet = Fleet(addr, devices, record_assign_times=True, channels=2)
    task = asyncio.create_task(fleet.run())
    try:
        streams = await connect_all(service)
        assert {(hello.device_id, hello.credential) for _, hello in streams.values()} == set(devices)
        await until_connected(fleet)

        async def execute(device_id: str, connection: Connection) -> None:
            connection.send(assign=agent_pb2.Assign(run=ref(f"run-{device_id}"), command=f"job {device_id}"))
            assert (await connection.expect("accept")).run == ref(f"run-{device_id}")
            await connection.expect("started")
            chunks, finished = await connection.until_finished()
            assert [(c.sequence, c.data) for c in chunks] == [(1, f"simulated: job {device_id}\n".encode())]
            assert finished.exit_code == 0 and finished.last_sequence == 1

        await asyncio.gather(*(execute(device_id, c) for device_id, (c, _) in streams.items()))
        assert fleet.assigned == fleet.completed == AGENTS
        assert set(fleet.assign_times) == {(f"run-{device_id}", 1) for device_id, _ in devices}

        # A reconnect storm: nothing was acked, so every agent resends its output and Finished.
        fleet.drop_all()
        streams = await connect_all(service)

        async def redeliver(device_id: str, connection: Connection, hello: agent_pb2.Hello) -> None:
            assert list(hello.held_runs) == [ref(f"run-{device_id}")]
            chunks, finished = await connection.until_finished()
            assert [c.sequence for c in chunks] == [1] and finished.run == ref(f"run-{device_id}")
            connection.send(ack=agent_pb2.Ack(run=finished.run, sequence=1, finished=True))

        await asyncio.gather(*(redeliver(device_id, c, hello) for device_id, (c, hello) in streams.items()))
        async with asyncio.timeout(5):
            while any(agent.outbox for agent in fleet.agents):
                await asyncio.sleep(0.01)

        # Acked as finished: after another storm, no agent holds anything.
        fleet.drop_all()
        streams = await connect_all(service)
        assert not any(hello.held_runs for _, hello in streams.values())
        assert fleet.completed == AGENTS
    finally:
        await fleet.stop()
        await task


async def test_simulated_drones_fly_missions_and_reject_other_handlers(fake: tuple[FakeAgentService, str]) -> None:
    service, addr = fake
    fleet = Fleet(addr, [("drone-1", "cred")], handlers=["mission"])
    task = asyncio.create_task(fleet.run())
    try:
        connection = await service.accept()
        await connection.welcome()
        connection.send(assign=agent_pb2.Assign(run=ref("m1"), handler="mission", inputs={"missionId": "m-7"}))
        await connection.expect("accept")
        await connection.expect("started")
        chunks, finished = await connection.until_finished()
        assert chunks[0].data == b'simulated mission: {"missionId": "m-7"}\n' and finished.exit_code == 0
        connection.send(assign=agent_pb2.Assign(run=ref("s1"), handler="survey"))
        assert (await connection.expect("reject")).reason == "no handler 'survey' on this agent"
    finally:
        await fleet.stop()
        await task
