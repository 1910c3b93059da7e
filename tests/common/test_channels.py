"""What a Channels call adds to the caller's metadata: the service credential and (context-only) the trace
context, each replacing what the caller set under the same keys."""

from __future__ import annotations

import pytest

from services.common import service_auth, telemetry
from services.common.channels import Channels

TOKEN = "service-token-0123456789"
TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"


@pytest.fixture(autouse=True)
def context_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_provider", None)


def _sent(channels: Channels, metadata) -> list[tuple[str, str]]:
    return list(channels.get("127.0.0.1:1").metadata(metadata, telemetry.recording()) or ())


async def test_the_credential_replaces_one_the_caller_set() -> None:
    channels = Channels(service_token=TOKEN)
    sent = _sent(channels, (("x-jobline-principal-bin", b"p"), (service_auth.METADATA_KEY, "forged-token-0123")))
    assert sent == [("x-jobline-principal-bin", b"p"), (service_auth.METADATA_KEY, TOKEN)]
    await channels.close()


async def test_the_carried_trace_context_replaces_the_callers_whole_one() -> None:
    channels = Channels(service_token="")
    caller = (("traceparent", f"00-{'11' * 16}-{'22' * 8}-01"), ("tracestate", "old=1"), ("k", "v"))
    token = telemetry._carried.set((TRACEPARENT, None))
    try:
        assert _sent(channels, caller) == [("k", "v"), ("traceparent", TRACEPARENT)]
        telemetry._carried.set((TRACEPARENT, "v=1"))
        assert _sent(channels, None) == [("traceparent", TRACEPARENT), ("tracestate", "v=1")]
    finally:
        telemetry._carried.reset(token)
    await channels.close()


async def test_without_a_credential_or_a_trace_context_the_metadata_is_the_callers() -> None:
    channels = Channels(service_token="")
    caller = (("traceparent", TRACEPARENT), (service_auth.METADATA_KEY, "their-own-token-0123"))
    assert _sent(channels, caller) == list(caller)
    assert _sent(channels, None) == []
    await channels.close()
