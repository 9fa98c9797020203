"""The timing rules, as exact sequences (no IO)."""

import unittest

import harness  # noqa: F401 - puts registry_client on sys.path
from registry_client import Backoff, heartbeat_delay, parse_retry_after


class BackoffTest(unittest.TestCase):
    def test_doubles_up_to_the_cap_with_equal_jitter(self) -> None:
        b = Backoff(base=0.1, max=5.0)
        # attempt:    0    1    2    3    4    5    6    7
        # ceiling s: 0.1  0.2  0.4  0.8  1.6  3.2  5.0  5.0
        for n, ceiling in enumerate([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]):
            self.assertAlmostEqual(b.delay(n, 0.0), ceiling / 2, msg=f"attempt {n} low")
            self.assertAlmostEqual(b.delay(n, 1.0), ceiling, msg=f"attempt {n} high")
        self.assertEqual(b.delay(1000, 1.0), 5.0)

    def test_heartbeats_come_early_never_late(self) -> None:
        self.assertEqual(heartbeat_delay(5.0, 0.0), 5.0)
        self.assertAlmostEqual(heartbeat_delay(5.0, 1.0), 4.0)
        self.assertAlmostEqual(heartbeat_delay(5.0, 0.5), 4.5)

    def test_retry_after_is_whole_seconds_and_bounded(self) -> None:
        self.assertEqual(parse_retry_after("2"), 2.0)
        self.assertEqual(parse_retry_after(" 3 "), 3.0)
        self.assertEqual(parse_retry_after("86400"), 60.0)
        for bad in (None, "", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "²"):
            self.assertIsNone(parse_retry_after(bad), bad)


if __name__ == "__main__":
    unittest.main()
