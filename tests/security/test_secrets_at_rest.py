"""Secrets a service must read back are stored encrypted (AES-256-GCM, services.common.secrets): JWT signing
keys (auth), webhook secrets (jobs' definitions and versions, runs' snapshots). Real flows through the gateway,
then every byte of the databases is searched (SQLite: the files; PostgreSQL: every row of every table) for the
plaintext. Rows an older release wrote in clear still work and are sealed at start."""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy import text

from cli.platform import free_port
from gateway.app import create_app
from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from jobline.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.auth.app import build as build_auth
from services.auth.tokens import AUDIENCE, ISSUER
from services.common import secrets, server, service_auth
from services.common.channels import Channels
from services.common.clock import FakeClock
from services.common.config import SERVICES, Settings
from services.common.principal import to_metadata
from services.common.secrets import SecretBox, SecretKeyError
from services.devices.app import build as build_devices
from services.jobs.app import build as build_jobs
from services.runs.app import build as build_runs
from services.runs.webhooks import WebhookSender

BOOTSTRAP_KEY = "jl_live_secrets_at_rest_bootstrap_0123456789"
WEBHOOK_SECRET = "whsec_plaintext_must_not_be_stored_4f7a"
ADMIN = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}


# -- the box ------------------------------------------------------------------------------------


def test_a_sealed_secret_opens_only_with_its_key_and_purpose() -> None:
    box = SecretBox("k" * 32)
    sealed = box.seal("s3cret", "jobs.webhook_secret")
    assert sealed.startswith("jlenc:v1:") and "s3cret" not in sealed
    assert sealed != box.seal("s3cret", "jobs.webhook_secret")  # a fresh nonce each time
    assert box.open(sealed, "jobs.webhook_secret") == "s3cret"
    assert box.seal(sealed, "jobs.webhook_secret") == sealed and box.seal("", "x") == ""
    assert box.open("written-in-clear-by-an-older-release", "x") == "written-in-clear-by-an-older-release"
    with pytest.raises(SecretKeyError, match="another purpose"):
        box.open(sealed, "auth.signing_key")
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SecretKeyError, match="altered"):
        box.open(tampered, "jobs.webhook_secret")
    with pytest.raises(SecretKeyError, match="JOBLINE_SECRET_KEY"):
        SecretBox("another-key-entirely-0123").open(sealed, "jobs.webhook_secret")


def test_a_retired_key_still_opens_what_it_sealed_and_values_move_to_the_new_key() -> None:
    old = SecretBox("old-key-0123456789abcdef")
    sealed = old.seal("s3cret", "p")
    rotated = SecretBox("new-key-0123456789abcdef", previous=["old-key-0123456789abcdef"])
    assert rotated.open(sealed, "p") == "s3cret"
    assert rotated.needs_sealing(sealed) and not rotated.needs_sealing(rotated.seal("s3cret", "p"))
    assert rotated.needs_sealing("in clear") and not rotated.needs_sealing("")
    moved = rotated.reseal(sealed, "p")
    assert SecretBox("new-key-0123456789abcdef").open(moved, "p") == "s3cret"


def test_the_key_comes_from_the_environment_else_a_0600_file_in_the_data_dir(tmp_path: Path, monkeypatch) -> None:
    configured = secrets._configured
    try:
        secrets.configure_secret_key(None)
        monkeypatch.delenv(secrets.SECRET_KEY_ENV, raising=False)
        monkeypatch.setenv("JOBLINE_DATA_DIR", str(tmp_path))
        sealed = secrets.secret_box().seal("s3cret", "p")
        key_file = tmp_path / "secret-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_text()) >= 32
        secrets.configure_secret_key(None)  # a restart reads the same file
        assert secrets.secret_box().open(sealed, "p") == "s3cret"

        monkeypatch.setenv(secrets.SECRET_KEY_ENV, "from-the-environment-0123")
        secrets.configure_secret_key(None)
        assert secrets.secret_box().open(SecretBox("from-the-environment-0123").seal("x", "p"), "p") == "x"
        with pytest.raises(SecretKeyError):
            secrets.secret_box().open(sealed, "p")
    finally:
        secrets.configure_secret_key(configured)


# -- the services, on one database ---------------------------------------------------------------------


@dataclass
class Platform:
    url: str
    http: httpx.AsyncClient
    running: dict[str, server.RunningServer]
    channels: Channels
    peers: dict[str, str]
    clock: FakeClock

    def handle(self, name: str):
        return self.running[name].registration.handle

    async def principal(self) -> auth_pb2.Principal:
        auth = auth_pb2_grpc.AuthServiceStub(self.channels.get(self.peers["auth"]))
        return (await auth.Authenticate(auth_pb2.AuthenticateRequest(api_key=BOOTSTRAP_KEY))).principal

    async def stored(self) -> bytes:
        """Everything the database holds, as bytes (SQLite: its files; PostgreSQL: every row as text)."""
        if self.url.startswith("sqlite"):
            path = self.url.removeprefix("sqlite:///")
            return b"".join(Path(p).read_bytes() for p in sorted(glob.glob(path + "*")))
        db = self.handle("devices").store.db
        async with db.engine.connect() as conn:
            tables = (await conn.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"))).scalars().all()
            rows = [str((await conn.execute(text(f'SELECT string_agg(t::text, \'|\') FROM "{table}" t'))).scalar())
                    for table in tables]
        return "\n".join(rows).encode()


async def start_platform(url: str, clock: FakeClock, token: str) -> dict[str, server.RunningServer]:
    peers = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
    builders = {"auth": build_auth, "devices": build_devices, "jobs": build_jobs, "runs": build_runs}
    running: dict[str, server.RunningServer] = {}
    for name in ("auth", "devices", "jobs", "runs"):
        settings = Settings(service=name, listen_addr=peers[name], database_url=url, peers=peers,
                            bootstrap_api_key=BOOTSTRAP_KEY if name == "auth" else None)
        extra = {"ticking": False} if name in ("jobs", "runs") else {}
        registration = await builders[name](settings, clock=clock, **extra)
        running[name] = await server.start(registration, peers[name], service_token=token)
    return running


@pytest.fixture
async def platform(database_url: str) -> AsyncIterator[Platform]:
    token = "svc-" + base64.urlsafe_b64encode(os.urandom(18)).decode()
    service_auth.configure(token)
    clock = FakeClock()
    running: dict[str, server.RunningServer] = {}
    try:
        running = await start_platform(database_url, clock, token)
        peers = {name: f"127.0.0.1:{r.port}" for name, r in running.items()}
        channels = Channels(service_token=token)
        app = create_app(Settings(service="gateway", listen_addr="", database_url="", peers=peers,
                                  auth_cache_secs=0), channels)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            yield Platform(database_url, http, running, channels, peers, clock)
        await channels.close()
    finally:
        for item in reversed(list(running.values())):
            await item.stop(0)
        service_auth.configure(None)


def variants(secret: str) -> list[bytes]:
    """How a plaintext could show in the stored bytes: as itself, hex-encoded (PostgreSQL bytea as text)."""
    return [secret.encode(), secret.encode().hex().encode()]


async def signing_secrets(platform: Platform) -> list[str]:
    signing = platform.handle("auth").signing
    await signing.current()
    return [base64.urlsafe_b64encode(signing._secret(row)).decode() for row in signing._keys.values()]


async def test_no_plaintext_secret_is_ever_written_to_the_database(platform: Platform) -> None:
    http = platform.http
    job = await http.post("/v1/jobs", headers=ADMIN, json={
        "project_id": "default", "name": "hooked", "slug": "hooked", "endpoint_url": "http://x.test/run",
        "webhook_url": "http://hooks.test/in", "webhook_secret": WEBHOOK_SECRET})
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    updated = await http.patch(f"/v1/jobs/{job_id}", headers=ADMIN, json={"description": "a new version"})
    assert updated.status_code == 200, updated.text
    # (delayed: no executor races the cancel)
    run = await http.post(f"/v1/jobs/{job_id}/trigger", headers=ADMIN, json={"scheduled_at": "2099-01-01T00:00:00Z"})
    assert run.status_code == 202, run.text
    canceled = await http.post(f"/v1/runs/{run.json()['id']}:cancel", headers=ADMIN, json={})
    assert canceled.status_code == 200, canceled.text  # a terminal state: a webhook delivery is due

    # A JWT: the auth service makes (and stores) a signing key.
    tenant = (await platform.principal()).tenant_id
    admin = auth_pb2_grpc.AuthAdminServiceStub(platform.channels.get(platform.peers["auth"]))
    account = await admin.CreateServiceAccount(auth_pb2.CreateServiceAccountRequest(tenant=tenant, name="ci"))
    auth = auth_pb2_grpc.AuthServiceStub(platform.channels.get(platform.peers["auth"]))
    token = (await auth.IssueToken(auth_pb2.IssueTokenRequest(client_id=account.client_id,
                                                              client_secret=account.client_secret))).access_token
    assert (await http.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"},
                           params={"project_id": "default"})).status_code == 200

    # The secrets still do their work: the webhook is signed with the job's secret...
    received: list[httpx.Request] = []
    sender = WebhookSender(platform.handle("runs").store, platform.clock, client=httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: received.append(request) or httpx.Response(200))))
    assert await sender.send_due() == 1
    request = received[0]
    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{request.headers['X-Strait-Timestamp']}.".encode()
                        + request.content, hashlib.sha256).hexdigest()
    assert request.headers["X-Strait-Signature"] == f"v1={expected}"
    # ... and the runs service reads it back through GetJobSnapshot.
    jobs = jobs_pb2_grpc.JobServiceStub(platform.channels.get(platform.peers["jobs"]))
    snapshot = await jobs.GetJobSnapshot(jobs_pb2.GetJobRequest(job_id=job_id),
                                         metadata=to_metadata(await platform.principal()))
    assert snapshot.webhook_secret == WEBHOOK_SECRET

    stored = await platform.stored()
    assert b"jlenc:v1:" in stored  # what is stored instead
    for secret in [WEBHOOK_SECRET, *await signing_secrets(platform)]:
        for form in variants(secret):
            assert form not in stored, f"a plaintext secret ({secret[:6]}...) is in the database"


async def test_secrets_an_older_release_stored_in_clear_keep_working_and_are_sealed_at_start(
        platform: Platform) -> None:
    http = platform.http
    job_id = (await http.post("/v1/jobs", headers=ADMIN, json={
        "project_id": "default", "name": "old", "slug": "old", "endpoint_url": "http://x.test/run",
        "webhook_url": "http://hooks.test/in", "webhook_secret": WEBHOOK_SECRET})).json()["id"]
    run_id = (await http.post(f"/v1/jobs/{job_id}/trigger", headers=ADMIN, json={})).json()["id"]
    signing = platform.handle("auth").signing
    key = await signing.current()
    key_secret = base64.urlsafe_b64encode(signing._secret(key)).decode()

    # Write everything back in clear, as an older release did.
    clear = jobs_pb2.Job()
    jobs_db, runs_db, auth_db = (platform.handle(n) for n in ("jobs", "runs", "auth"))
    async with jobs_db.db.engine.begin() as conn:
        for table in ("jobs_jobs", "jobs_versions"):
            for row_id, definition in (await conn.execute(text(f"SELECT id, definition FROM {table}"))).all():
                clear.ParseFromString(definition)
                clear.webhook_secret = WEBHOOK_SECRET
                await conn.execute(text(f"UPDATE {table} SET definition = :d WHERE id = :i"),
                                   {"d": clear.SerializeToString(), "i": row_id})
    async with runs_db.db.engine.begin() as conn:
        definition = (await conn.execute(text("SELECT snapshot FROM runs_runs WHERE id = :i"), {"i": run_id})).scalar()
        clear.ParseFromString(definition)
        clear.webhook_secret = WEBHOOK_SECRET
        await conn.execute(text("UPDATE runs_runs SET snapshot = :s WHERE id = :i"),
                           {"s": clear.SerializeToString(), "i": run_id})
        await conn.execute(text("DELETE FROM runs_counters WHERE name = 'snapshots_sealed_v1'"))
    async with auth_db.store.db.engine.begin() as conn:
        await conn.execute(text("UPDATE auth_signing_keys SET secret = :s WHERE kid = :k"),
                           {"s": key_secret, "k": key.kid})
    stored = await platform.stored()
    assert WEBHOOK_SECRET.encode() in stored or WEBHOOK_SECRET.encode().hex().encode() in stored  # (the setup)

    # Read in clear, they still work...
    legacy_token = jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "iat": 1, "nbf": 1,
                               "exp": int(platform.clock.now().timestamp()) + 600},
                              base64.urlsafe_b64decode(key_secret), algorithm="HS256", headers={"kid": key.kid})
    signing._plain.clear()
    signing._keys.clear()
    assert (await signing.verify(legacy_token))["sub"] == "x"
    principal = to_metadata(await platform.principal())
    jobs = jobs_pb2_grpc.JobServiceStub(platform.channels.get(platform.peers["jobs"]))
    assert (await jobs.GetJobSnapshot(jobs_pb2.GetJobRequest(job_id=job_id), metadata=principal)).webhook_secret \
        == WEBHOOK_SECRET

    # ... and the start-up sealing (what each service runs when it starts) seals them.
    assert await platform.handle("auth").signing.seal_stored() == 1
    assert await jobs_db.jobs.seal_stored() == 2  # the job and its version
    assert await runs_db.engine.seal_stored_snapshots() == 1
    assert await runs_db.engine.seal_stored_snapshots() == 0  # once per database
    assert await jobs_db.jobs.seal_stored() == 0
    signing._plain.clear()
    signing._keys.clear()
    assert (await signing.verify(legacy_token))["sub"] == "x"
    assert (await jobs.GetJobSnapshot(jobs_pb2.GetJobRequest(job_id=job_id), metadata=principal)).webhook_secret \
        == WEBHOOK_SECRET
    async with runs_db.db.engine.connect() as conn:
        snapshot = (await conn.execute(text("SELECT snapshot FROM runs_runs WHERE id = :i"), {"i": run_id})).scalar()
    assert jobs_pb2.Job.FromString(snapshot).webhook_secret.startswith("jlenc:v1:")

    async with jobs_db.db.engine.connect() as conn, auth_db.store.db.engine.connect() as auth_conn:
        definitions = [d for table in ("jobs_jobs", "jobs_versions")
                       for d in (await conn.execute(text(f"SELECT definition FROM {table}"))).scalars()]
        keys = (await auth_conn.execute(text("SELECT secret FROM auth_signing_keys"))).scalars().all()
    assert definitions and not any(WEBHOOK_SECRET.encode() in d for d in definitions)
    assert keys and all(k.startswith("jlenc:v1:") for k in keys) and key_secret not in keys
    # Nor do the overwritten bytes linger in the files (SQLite: the WAL, freed space in pages).
    stored = await platform.stored()
    for secret in (WEBHOOK_SECRET, key_secret):
        for form in variants(secret):
            assert form not in stored, f"a plaintext secret ({secret[:6]}...) is still in the database"
