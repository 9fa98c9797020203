"""Client for the registry gateway: register a service replica, heartbeat in the background, register
again when the gateway forgets it, deregister on shutdown. Standard library only.

>>> from registry_client import Registration
>>> with Registration(["http://127.0.0.1:8080"], "orders", "http://127.0.0.1:9001") as r:  # doctest: +SKIP
...     serve_forever()  # r.is_registered() for a readiness probe

The rules are those of the Rust SDK (``client-sdk``): heartbeats at the interval the gateway answered,
each 0–20% early at random; failures retried with capped exponential backoff and jitter (0.1 s doubling
to 5 s), or after ``Retry-After`` on 429/503 (at most 60 s); a heartbeat answered 404 registers again at
once; a 400 gives up (``Failed``); a 401 keeps retrying with the error in the state.
"""

from .backoff import Backoff, heartbeat_delay, parse_retry_after
from .errors import GatewayError, InvalidGatewayUrl, RegistryClientError
from .registration import Registration
from .state import Failed, Registered, Registering, RegistrationState, Stopped

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "Failed",
    "GatewayError",
    "InvalidGatewayUrl",
    "Registered",
    "Registering",
    "Registration",
    "RegistrationState",
    "RegistryClientError",
    "Stopped",
    "heartbeat_delay",
    "parse_retry_after",
]
