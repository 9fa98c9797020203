"""What the client knows about its registration with one gateway, for readiness probes and logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union


@dataclass(frozen=True)
class Registering:
    """Trying to register: ``attempts`` failed so far, and why the last one failed."""

    attempts: int = 0
    last_error: Optional[str] = None


@dataclass(frozen=True)
class Registered:
    """Registered and heartbeating."""

    id: str
    """The replica id the gateway gave."""
    heartbeat_interval: float
    """Heartbeat interval the gateway asked for, in seconds."""
    lease_ttl: float
    """Lease TTL on the gateway, in seconds."""


@dataclass(frozen=True)
class Failed:
    """The gateway refused the registration for a reason retrying cannot fix (a 400)."""

    reason: str


@dataclass(frozen=True)
class Stopped:
    """Deregistered on request."""


RegistrationState = Union[Registering, Registered, Failed, Stopped]
"""The registration's state with one gateway."""
