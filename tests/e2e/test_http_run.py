"""An endpoint job end to end: the runs service POSTs to a real local HTTP server."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import Client

pytestmark = pytest.mark.e2e


class Endpoint(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Endpoint.received.append({"body": body, "run_id": self.headers["X-Run-ID"],
                                  "attempt": self.headers["X-Attempt"]})
        status = 400 if self.path == "/bad" else 200
        answer = json.dumps({"echo": body}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_endpoint_job_posts_its_payload_and_keeps_the_result(client: Client, endpoint: str) -> None:
    slug = f"hook-{uuid.uuid4().hex[:8]}"
    job = client.http.post("/v1/jobs", json={"project_id": "default", "name": slug, "slug": slug,
                                              "endpoint_url": f"{endpoint}/ok"}).json()
    run = client.http.post(f"/v1/jobs/{job['id']}/trigger", json={"payload": {"n": 1}}).json()
    done = client.wait_run(run["id"], {"completed", "failed", "dead_letter"})
    assert done["status"] == "completed", done
    assert done["result"] == {"echo": {"n": 1}}
    assert {"body": {"n": 1}, "run_id": run["id"], "attempt": "1"} in Endpoint.received
    assert done["execution_trace"]["total_ms"] >= done["execution_trace"]["ttfb_ms"] >= 0


def test_a_4xx_answer_fails_the_run_without_retrying(client: Client, endpoint: str) -> None:
    slug = f"hook-{uuid.uuid4().hex[:8]}"
    job = client.http.post("/v1/jobs", json={"project_id": "default", "name": slug, "slug": slug,
                                              "endpoint_url": f"{endpoint}/bad", "max_attempts": 3}).json()
    run = client.http.post(f"/v1/jobs/{job['id']}/trigger", json={}).json()
    done = client.wait_run(run["id"], {"completed", "failed", "dead_letter"})
    assert (done["status"], done["attempt"]) == ("failed", 1), done
    assert "400" in done["error"]
