"""The auth service: config -> engine -> bootstrap -> server."""

from __future__ import annotations

from jobline.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common.clock import Clock
from services.common.config import Settings
from services.common.db import Database
from services.common.server import Registration

from .domain import Auth
from .servicer import AuthAdminServicer, AuthServicer
from .store import TABLES, AuthStore


def print_admin_key(key: str) -> None:
    """The bootstrap admin key, on stdout, the one time it exists in clear."""
    rule = "=" * 72
    print(f"\n{rule}\nJobline first start: created tenant 'default', project 'default', user 'admin'.\n"
          f"Admin API key (shown once): {key}\n{rule}\n", flush=True)


async def build(settings: Settings, *, clock: Clock | None = None) -> Registration:
    db = Database(settings.database_url, TABLES)
    await db.create_tables()
    store = AuthStore(db)
    auth = Auth(store, clock or Clock())
    await auth.signing.seal_stored()  # keys an older release stored in clear
    admin_key = await auth.bootstrap(settings.bootstrap_api_key)
    if admin_key is not None:
        print_admin_key(admin_key)
    servicer, admin = AuthServicer(auth), AuthAdminServicer(auth)
    return Registration(
        add_to_server=[lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server),
                       lambda server: auth_pb2_grpc.add_AuthAdminServiceServicer_to_server(admin, server)],
        service_names=[auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
                       auth_pb2.DESCRIPTOR.services_by_name["AuthAdminService"].full_name],
        on_start=[auth.usage.start],
        on_stop=[auth.usage.stop, db.close],
        handle=auth,
    )
