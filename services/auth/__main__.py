from services.common import server

from .app import build

server.run("auth", build)
