"""The background loop for one gateway: register (with backoff), heartbeat (with jitter), register again on 404."""

from __future__ import annotations

import logging
import random
import threading
from typing import Callable, Optional

from .api import Busy, Failure, GatewayApi, Lease, NotFound, Ok
from .backoff import Backoff, heartbeat_delay
from .state import Failed, Registered, Registering, RegistrationState, Stopped

log = logging.getLogger("registry_client")


class Agent:
    """Registers with one gateway and keeps the registration alive, in a daemon thread.

    The rules are the Rust SDK's (``client-sdk/src/agent.rs``):

    - registration failures are retried after ``Retry-After`` (on 429/503) or on ``backoff``;
      a 400 is final (:class:`~registry_client.state.Failed`);
    - heartbeats go every ``heartbeat_interval`` the gateway answered, each 0–20% early at random;
    - a heartbeat answered 404 means the gateway forgot the replica: register again at once;
    - a heartbeat that fails is retried on backoff (or ``Retry-After``), never later than the interval.
    """

    def __init__(
        self,
        api: GatewayApi,
        service: str,
        body: bytes,
        backoff: Backoff,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.api = api
        self._service = service
        self._body = body
        self._backoff = backoff
        self._rng = rng
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._state: RegistrationState = Registering()
        self._first_done = False
        self._thread = threading.Thread(
            target=self._run, name=f"registry-client {service} @ {api.base}", daemon=True
        )

    # ---- state shared with the caller -------------------------------------------------------------

    @property
    def state(self) -> RegistrationState:
        """The current state."""
        with self._changed:
            return self._state

    def _set(self, state: RegistrationState, first_done: bool = True) -> None:
        with self._changed:
            if isinstance(self._state, Stopped):
                return
            self._state = state
            self._first_done = self._first_done or first_done
            self._changed.notify_all()

    def wait(self, predicate: Callable[[RegistrationState, bool], bool], timeout: float) -> bool:
        """Waits until ``predicate(state, first_attempt_done)`` holds or ``timeout`` seconds pass."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._state, self._first_done), timeout)

    # ---- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the thread."""
        self._thread.start()

    def stop(self, timeout: float) -> Optional[str]:
        """Stops the thread (waiting up to ``timeout`` for a call in flight) and returns the replica id, if any."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with self._changed:
            replica_id = self._state.id if isinstance(self._state, Registered) else None
            self._state = Stopped()
            self._changed.notify_all()
        return replica_id

    def is_alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread.is_alive()

    # ---- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            lease = self._register()
            if lease is None:
                return
            log.info("registered %s with %s as %s", self._service, self.api.base, lease.id)
            self._set(Registered(lease.id, lease.heartbeat_interval, lease.lease_ttl))
            if not self._heartbeat_until_forgotten(lease):
                return
            log.warning("%s no longer knows %s/%s: registering again", self.api.base, self._service, lease.id)
            self._set(Registering(0, "heartbeat answered 404"))

    def _register(self) -> Optional[Lease]:
        """Registers, retrying until it works; ``None`` when stopped or refused for good."""
        attempts = 0
        while not self._stop.is_set():
            answer = self.api.register(self._body)
            wait: Optional[float] = None
            if isinstance(answer, Ok):
                return answer.value  # type: ignore[return-value]
            if isinstance(answer, Failure) and answer.error.status == 400:
                log.error("%s refused to register %s: %s", self.api.base, self._service, answer.error.message)
                self._set(Failed(answer.error.message))
                return None
            if isinstance(answer, Busy):
                error, wait = f"gateway {self.api.base} busy", answer.retry_after
            elif isinstance(answer, NotFound):
                error = f"POST {self.api.base}/register answered 404: is this a registry gateway?"
            else:
                error = str(answer.error)
            if wait is None:
                wait = self._backoff.delay(attempts, self._rng())
            attempts += 1
            if attempts == 1 or attempts % 10 == 0:
                log.warning(
                    "registering %s failed (%d attempts): %s; retrying in %.3fs",
                    self._service, attempts, error, wait,
                )
            self._set(Registering(attempts, error))
            if self._stop.wait(wait):
                return None
        return None

    def _heartbeat_until_forgotten(self, lease: Lease) -> bool:
        """Heartbeats until the gateway answers 404 (returns True) or the agent stops (returns False)."""
        interval = max(lease.heartbeat_interval, 0.001)
        failures = 0
        wait = heartbeat_delay(interval, self._rng())
        while not self._stop.wait(wait):
            answer = self.api.heartbeat(self._service, lease.id)
            if isinstance(answer, Ok):
                if failures:
                    log.info("heartbeats to %s flowing again", self.api.base)
                failures = 0
                wait = heartbeat_delay(interval, self._rng())
                continue
            if isinstance(answer, NotFound):
                return True
            after = answer.retry_after if isinstance(answer, Busy) else None
            if failures == 0:
                reason = "busy" if isinstance(answer, Busy) else str(answer.error)  # type: ignore[union-attr]
                log.warning("heartbeat to %s failed: %s; retrying", self.api.base, reason)
            wait = min(after if after is not None else self._backoff.delay(failures, self._rng()), interval)
            failures += 1
        return False
