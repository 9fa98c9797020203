"""The gateway's HTTP registration API: one call each, its answer classified once."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

from .backoff import parse_retry_after
from .errors import GatewayError, InvalidGatewayUrl


@dataclass(frozen=True)
class Ok:
    """It worked; ``value`` is the decoded answer, if any."""

    value: object = None


@dataclass(frozen=True)
class NotFound:
    """The gateway does not know this replica (it restarted, or evicted or deregistered it): 404."""


@dataclass(frozen=True)
class Busy:
    """Come back later: 429 or 503, with the ``Retry-After`` in seconds if one was sent."""

    retry_after: Optional[float]


@dataclass(frozen=True)
class Failure:
    """Anything else: no answer, another status, or an answer that could not be read."""

    error: GatewayError


Answer = Union[Ok, NotFound, Busy, Failure]
"""What a gateway answered."""


@dataclass(frozen=True)
class Lease:
    """The gateway's answer to ``POST /register``."""

    id: str
    heartbeat_interval: float
    lease_ttl: float


def parse_gateway(url: str) -> Tuple[str, str, int, str]:
    """Validates ``http(s)://host:port[/prefix]``: returns (base URL without trailing slash, host, port, path prefix)."""
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError as e:
        raise InvalidGatewayUrl(url, str(e)) from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidGatewayUrl(url, "the scheme must be http or https")
    if not parsed.hostname:
        raise InvalidGatewayUrl(url, "a host is needed")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise InvalidGatewayUrl(url, "no user info, query or fragment")
    prefix = parsed.path.rstrip("/")
    default_port = 443 if parsed.scheme == "https" else 80
    return url.rstrip("/"), parsed.hostname, port or default_port, prefix


def tls_context(ca_file: Optional[str]) -> ssl.SSLContext:
    """What an ``https://`` gateway's certificate is checked against: the platform's roots plus
    ``ca_file`` (PEM), host name included. Raises ``OSError``/``ssl.SSLError`` on an unusable file."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


class GatewayApi:
    """One gateway's registration API (``POST /register``, ``PUT .../heartbeat``, ``DELETE``)."""

    def __init__(
        self,
        url: str,
        token: Optional[str],
        timeout: float,
        tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.base, self._host, self._port, self._prefix = parse_gateway(url)
        self._token = token
        self._timeout = timeout
        self._tls = tls if self.base.startswith("https:") else None
        if self.base.startswith("https:") and self._tls is None:
            self._tls = tls_context(None)

    def _call(self, method: str, path: str, body: Optional[bytes]) -> Tuple[int, Dict[str, str], bytes]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        conn: http.client.HTTPConnection
        if self._tls is not None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.request(method, self._prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def _exchange(self, method: str, path: str, body: Optional[bytes] = None) -> Answer:
        try:
            status, headers, data = self._call(method, path, body)
        except (OSError, http.client.HTTPException, socket.timeout) as e:
            return Failure(GatewayError(self.base, f"unreachable: {e or type(e).__name__}"))
        if 200 <= status < 300:
            return Ok(data)
        if status == 404:
            return NotFound()
        if status in (429, 503):
            return Busy(parse_retry_after(headers.get("retry-after")))
        message = data.decode("utf-8", "replace")
        try:
            decoded = json.loads(data)
            if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
                message = decoded["message"]
        except ValueError:
            pass
        return Failure(GatewayError(self.base, message, status))

    def register(self, body: bytes) -> Answer:
        """``POST /register``; on success ``Ok(Lease)``."""
        answer = self._exchange("POST", "/register", body)
        if not isinstance(answer, Ok):
            return answer
        try:
            decoded = json.loads(answer.value)  # type: ignore[arg-type]
            lease = Lease(
                id=str(decoded["id"]),
                heartbeat_interval=int(decoded["heartbeat_interval_ms"]) / 1000.0,
                lease_ttl=int(decoded["lease_ttl_ms"]) / 1000.0,
            )
        except (ValueError, KeyError, TypeError) as e:
            return Failure(GatewayError(self.base, f"unexpected answer to POST /register: {e!r}"))
        return Ok(lease)

    def heartbeat(self, service: str, replica_id: str) -> Answer:
        """``PUT /registry/{service}/{id}/heartbeat``."""
        return self._exchange("PUT", f"{_replica_path(service, replica_id)}/heartbeat")

    def deregister(self, service: str, replica_id: str) -> Answer:
        """``DELETE /registry/{service}/{id}``."""
        return self._exchange("DELETE", _replica_path(service, replica_id))


def _replica_path(service: str, replica_id: str) -> str:
    quote = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    return f"/registry/{quote(service)}/{quote(replica_id)}"
