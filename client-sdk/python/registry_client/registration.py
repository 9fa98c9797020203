"""The handle a service holds: one background agent per gateway, readiness, deregistration."""

from __future__ import annotations

import json
import logging
import time
from types import TracebackType
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union

from .agent import Agent
from .api import Failure, GatewayApi, NotFound, Ok, tls_context
from .backoff import Backoff
from .errors import GatewayError
from .state import Registered, RegistrationState

log = logging.getLogger("registry_client")


class Registration:
    """Registers ``address`` as a replica of ``service`` with every gateway in ``gateways``.

    :param gateways: one gateway URL (``"http://127.0.0.1:8080"``, or ``"https://..."`` for a
        gateway with a TLS listener) or several. The replica is
        registered with **each**, independently, as the Rust SDK does: with the gateway's in-process
        registry every gateway knows only what was registered with it.
    :param service: the service name, a DNS label (``orders``).
    :param address: ``http://host:port``: how the *gateway* reaches this replica.
    :param token: the gateway's ``auth.registration_token``, sent as ``Authorization: Bearer``.
    :param metadata: string labels shown in ``GET /registry`` (at most 64, each at most 1 KiB).
    :param protocol: ``"http"`` (default) or ``"grpc"`` (the replica speaks gRPC over h2c).
    :param grpc_services: for a gRPC replica, the full gRPC service names it serves.
    :param backoff: delays between failed attempts (default 0.1 s doubling to 5 s, jittered).
    :param request_timeout: time limit of each socket operation of a call to a gateway, in seconds.
    :param ca_file: a PEM file of CA certificates trusted for ``https://`` gateways on top of the
        platform's roots (``ssl.create_default_context(cafile=...)``); read here.

    Nothing happens until :meth:`start` (or ``with``). Invalid gateway URLs raise
    :class:`~registry_client.errors.InvalidGatewayUrl` here.
    """

    def __init__(
        self,
        gateways: Union[str, Iterable[str]],
        service: str,
        address: str,
        token: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        protocol: str = "http",
        grpc_services: Optional[Iterable[str]] = None,
        backoff: Backoff = Backoff(),
        request_timeout: float = 2.0,
        ca_file: Optional[str] = None,
    ) -> None:
        urls = [gateways] if isinstance(gateways, str) else list(gateways)
        if not urls:
            raise ValueError("at least one gateway URL is needed")
        if protocol not in ("http", "grpc"):
            raise ValueError(f'protocol must be "http" or "grpc", not {protocol!r}')
        self.service = service
        self.address = address
        self._request_timeout = request_timeout
        body: Dict[str, object] = {
            "service": service,
            "address": address,
            "protocol": protocol,
            "grpc_services": list(grpc_services or []),
            "metadata": dict(metadata or {}),
        }
        encoded = json.dumps(body).encode("utf-8")
        # One TLS context for every https:// gateway (the platform's roots are read once).
        tls = tls_context(ca_file) if any(u.startswith("https:") for u in urls) else None
        self._agents: List[Agent] = [
            Agent(GatewayApi(url, token, request_timeout, tls), service, encoded, backoff)
            for url in urls
        ]
        self._started = False
        self._stopped = False

    def start(self) -> "Registration":
        """Starts one daemon thread per gateway and returns once each made its first attempt.

        Waits at most about one ``request_timeout`` for those: never fails because a gateway is down
        (the threads keep trying; :meth:`states` shows how it goes). Returns ``self``.
        """
        if self._started:
            return self
        self._started = True
        for a in self._agents:
            a.start()
        for a in self._agents:
            a.wait(lambda _state, first_done: first_done, self._request_timeout + 0.1)
        return self

    def states(self) -> List[Tuple[str, RegistrationState]]:
        """The state with each gateway, in the order they were given."""
        return [(a.api.base, a.state) for a in self._agents]

    def is_registered(self) -> bool:
        """Whether at least one gateway routes to this replica now (for the service's readiness probe)."""
        return any(isinstance(a.state, Registered) for a in self._agents)

    def id(self) -> Optional[str]:
        """The replica id given by the first gateway that has one."""
        for a in self._agents:
            state = a.state
            if isinstance(state, Registered):
                return state.id
        return None

    def wait_registered(self, timeout: float) -> bool:
        """Waits until every gateway has registered this replica, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        for a in self._agents:
            left = max(0.0, deadline - time.monotonic())
            if not a.wait(lambda state, _first: isinstance(state, Registered), left):
                return False
        return True

    def deregister(self) -> None:
        """Stops the threads and removes the replica from every gateway that has it (``DELETE``).

        A gateway that no longer knows it (404) counts as done. Calling it again does nothing.
        Raises the first :class:`~registry_client.errors.GatewayError` when a gateway could not be
        told; the replica then drops off that gateway when its lease expires.
        """
        if self._stopped:
            return
        self._stopped = True
        first_error: Optional[GatewayError] = None
        for a in self._agents:
            replica_id = a.stop(self._request_timeout + 1.0)
            if replica_id is None:
                continue
            answer = a.api.deregister(self.service, replica_id)
            if isinstance(answer, (Ok, NotFound)):
                log.info("deregistered %s/%s from %s", self.service, replica_id, a.api.base)
                continue
            if isinstance(answer, Failure):
                error = answer.error
            else:  # Busy
                error = GatewayError(a.api.base, "busy; the lease will expire instead", 503)
            log.warning("deregistration from %s failed: %s; the lease will expire instead", a.api.base, error)
            if first_error is None:
                first_error = error
        if first_error is not None:
            raise first_error

    def __enter__(self) -> "Registration":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            self.deregister()
        except GatewayError as e:
            # Leaving the block must not hide the caller's own exception; the lease expires anyway.
            log.warning("%s", e)

    def __repr__(self) -> str:
        return f"Registration(service={self.service!r}, address={self.address!r}, states={self.states()!r})"


__all__ = ["Registration"]
