"""Retry timing: capped exponential backoff with equal jitter, jittered heartbeats, bounded Retry-After. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: Largest ``Retry-After`` honoured, in seconds; a longer one is cut to this, so a hostile or broken
#: answer cannot park the client for hours.
MAX_RETRY_AFTER: float = 60.0


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: retry ``n`` waits a random time in ``[c/2, c]`` with ``c = min(base·2ⁿ, max)``.

    The defaults (0.1 s doubling to 5 s) are the Rust SDK's.
    """

    base: float = 0.1
    """Upper bound of the first delay, in seconds."""
    max: float = 5.0
    """Largest delay, in seconds."""

    def delay(self, attempt: int, unit: float) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first); ``unit`` is random in ``[0, 1)``.

        "Equal jitter": half the window is fixed and half random, so a fleet spreads out but never
        retries in a tight loop.
        """
        ceiling = min(self.base * (2 ** min(max(attempt, 0), 30)), self.max)
        half = ceiling / 2
        return half + half * min(max(unit, 0.0), 1.0)


def heartbeat_delay(interval: float, unit: float) -> float:
    """The wait before the next heartbeat: ``interval`` minus up to 20% (``unit`` random in ``[0, 1)``).

    A fleet started together drifts apart, and no heartbeat is ever later than the interval the
    gateway sized the lease for.
    """
    return interval * (1.0 - 0.2 * min(max(unit, 0.0), 1.0))


def parse_retry_after(value: Optional[str], limit: float = MAX_RETRY_AFTER) -> Optional[float]:
    """A ``Retry-After`` header in whole seconds, capped at ``limit``; ``None`` when absent or not a number.

    HTTP dates are not understood (the Rust SDK does not either): the caller falls back to backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        return None
    return min(float(int(text)), limit)
