"""The device agent: one stream to the runs service, commands run as local processes."""

from .fleet import Fleet
from .runtime import Agent

__all__ = ["Agent", "Fleet"]
