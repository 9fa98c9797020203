"""The client's errors."""

from __future__ import annotations

from typing import Optional


class RegistryClientError(Exception):
    """Base class of every error this package raises."""


class InvalidGatewayUrl(RegistryClientError, ValueError):
    """A gateway URL is not ``http://host:port`` or ``https://host:port``."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid gateway URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


class GatewayError(RegistryClientError):
    """A gateway could not be reached, refused a call, or answered something unexpected.

    ``status`` is the HTTP status, or ``None`` when there was no answer.
    """

    def __init__(self, gateway: str, message: str, status: Optional[int] = None) -> None:
        if status is None:
            text = f"gateway {gateway}: {message}"
        else:
            text = f"gateway {gateway} answered {status}: {message}"
        super().__init__(text)
        self.gateway = gateway
        self.status = status
        self.message = message
