"""`jobline admin`: an operator's commands against the auth service (gRPC, with the service credential).

    jobline admin tenant create acme                      # also creates its project "default"
    jobline admin tenant list
    jobline admin project create --tenant acme web
    jobline admin user create --tenant acme alice
    jobline admin service-account create --tenant acme --project web ci --scopes READ,TRIGGER
    jobline admin key create --tenant acme --project web --user alice --name laptop --scopes READ
    jobline admin key create --tenant acme --service-account <id> --name ci --kind device_jobs
    jobline admin pat create --tenant acme --user alice --name foreman --scopes READ,TRIGGER
    jobline admin key revoke --tenant acme <key id>
    jobline admin service-account revoke --tenant acme <account id>   # its tokens too
    jobline admin signing-key rotate

The auth service's address is JOBLINE_AUTH_ADDR (or --auth-addr); the service credential is
JOBLINE_SERVICE_TOKEN, else `<JOBLINE_DATA_DIR>/service-token`. Secrets (keys, client secrets) are
printed once, on stdout; keep them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common import service_auth
from services.common.config import service_addr

KINDS = {"native": auth_pb2.KEY_KIND_NATIVE, "device_jobs": auth_pb2.KEY_KIND_DEVICE_JOBS}


def _scopes(text: str) -> list[str]:
    return [scope.strip().upper() for scope in text.split(",") if scope.strip()]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jobline admin", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--auth-addr", default=None, help="auth service gRPC address (default JOBLINE_AUTH_ADDR)")
    top.add_argument("--json", action="store_true", help="print the answers as JSON")
    things = top.add_subparsers(dest="thing", required=True)

    tenant = things.add_parser("tenant").add_subparsers(dest="action", required=True)
    create = tenant.add_parser("create")
    create.add_argument("name")
    create.add_argument("--default-project", default="default", help="'-' for none")
    tenant.add_parser("list")

    project = things.add_parser("project").add_subparsers(dest="action", required=True)
    create = project.add_parser("create")
    create.add_argument("--tenant", required=True)
    create.add_argument("id")
    create.add_argument("--name", default="")

    user = things.add_parser("user").add_subparsers(dest="action", required=True)
    create = user.add_parser("create")
    create.add_argument("--tenant", required=True)
    create.add_argument("login")

    account = things.add_parser("service-account").add_subparsers(dest="action", required=True)
    create = account.add_parser("create")
    create.add_argument("--tenant", required=True)
    create.add_argument("--project", default="")
    create.add_argument("name")
    create.add_argument("--scopes", default="READ,TRIGGER,WRITE")
    revoke = account.add_parser("revoke")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("id")

    for name in ("key", "pat"):
        group = things.add_parser(name).add_subparsers(dest="action", required=True)
        create = group.add_parser("create")
        create.add_argument("--tenant", required=True)
        create.add_argument("--project", default="")
        create.add_argument("--user", default="", help="the owner's login")
        if name == "key":
            create.add_argument("--service-account", default="", help="the owning service account's id")
            create.add_argument("--kind", choices=sorted(KINDS), default="native")
        create.add_argument("--name", required=True)
        create.add_argument("--scopes", default="READ,TRIGGER,WRITE")
        create.add_argument("--expires-in-days", type=float, default=None)
        revoke = group.add_parser("revoke")
        revoke.add_argument("--tenant", required=True)
        revoke.add_argument("id")

    signing = things.add_parser("signing-key").add_subparsers(dest="action", required=True)
    signing.add_parser("rotate")
    return top


def _request(args: argparse.Namespace) -> tuple[str, Message]:
    """The AuthAdminService method and request the arguments ask for."""
    thing, action = args.thing, args.action
    if (thing, action) == ("tenant", "create"):
        return "CreateTenant", auth_pb2.CreateTenantRequest(name=args.name, default_project_id=args.default_project)
    if (thing, action) == ("tenant", "list"):
        return "ListTenants", auth_pb2.ListTenantsRequest()
    if thing == "project":
        return "CreateProject", auth_pb2.CreateProjectRequest(tenant=args.tenant, id=args.id, name=args.name)
    if thing == "user":
        return "CreateUser", auth_pb2.CreateUserRequest(tenant=args.tenant, login=args.login)
    if thing in ("key", "pat", "service-account") and action == "revoke":
        return "RevokeCredential", auth_pb2.RevokeCredentialRequest(tenant=args.tenant, id=args.id)
    if thing == "service-account":
        return "CreateServiceAccount", auth_pb2.CreateServiceAccountRequest(
            tenant=args.tenant, project_id=args.project, name=args.name, scopes=_scopes(args.scopes))
    if thing in ("key", "pat"):
        kind = auth_pb2.KEY_KIND_PERSONAL_ACCESS_TOKEN if thing == "pat" else KINDS[args.kind]
        request = auth_pb2.IssueApiKeyRequest(
            tenant=args.tenant, project_id=args.project, user_login=args.user,
            service_account_id=getattr(args, "service_account", ""), name=args.name, scopes=_scopes(args.scopes),
            kind=kind)
        if args.expires_in_days is not None:
            request.expires_at.FromDatetime(datetime.now(UTC) + timedelta(days=args.expires_in_days))
        return "IssueApiKey", request
    return "RotateSigningKey", auth_pb2.RotateSigningKeyRequest()


def _print(reply: Message, as_json: bool) -> None:
    data = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        print(f"{key}: {value}")
    if data.get("key") or data.get("client_secret"):
        print("(the secret above is shown once: keep it)", file=sys.stderr)


async def call(addr: str, method: str, request: Message, token: str | None) -> Message:
    metadata = ((service_auth.METADATA_KEY, token),) if token else ()
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = auth_pb2_grpc.AuthAdminServiceStub(channel)
        return await getattr(stub, method)(request, metadata=metadata, timeout=10)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    method, request = _request(args)
    try:
        reply = asyncio.run(call(args.auth_addr or service_addr("auth"), method, request,
                                 service_auth.resolve(create=False)))
    except grpc.aio.AioRpcError as error:
        print(f"jobline admin: {error.code().name.lower()}: {error.details()}", file=sys.stderr)
        return 1
    _print(reply, args.json)
    return 0
