"""The Python client against the real gateway binary and a real HTTP backend, on OS-chosen ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path

from harness import Backend, CountingServer, Gateway, eventually
from registry_client import Backoff, Failed, GatewayError, InvalidGatewayUrl, Registered, Registering, Registration

# A short lease, heartbeats well inside it, and self-preservation off, so a lapsed lease shows.
SHORT_LEASE = "lease: { ttl: 1s, heartbeat_interval: 200ms, preservation_ratio: 1 }\n"
FAST = Backoff(base=0.02, max=0.3)


def _deregister_quietly(r: Registration) -> None:
    """Cleanup: the gateway may already be gone, and then its lease just expires."""
    try:
        r.deregister()
    except GatewayError:
        pass


class AgainstGateway(unittest.TestCase):
    def setUp(self) -> None:
        self.backend = Backend("py-1")
        self.addCleanup(self.backend.stop)

    def gateway(self, yaml: str = SHORT_LEASE, listen: str = "127.0.0.1:0") -> Gateway:
        gw = Gateway(yaml, listen)
        self.addCleanup(gw.stop)
        return gw

    def registration(self, gateways, service: str = "pyorders", **kw) -> Registration:  # type: ignore[no-untyped-def]
        kw.setdefault("backoff", FAST)
        r = Registration(gateways, service, self.backend.url, **kw)
        self.addCleanup(_deregister_quietly, r)
        return r

    @unittest.skipUnless(
        os.environ.get("REGISTRY_TEST_TLS_CA"), "needs the certificates tests/tests/python_sdk.rs makes"
    )
    def test_registers_over_https_with_a_ca_file(self) -> None:
        ca = os.environ["REGISTRY_TEST_TLS_CA"]
        cert, key = os.environ["REGISTRY_TEST_TLS_CERT"], os.environ["REGISTRY_TEST_TLS_KEY"]
        gw = Gateway(SHORT_LEASE + f"tls: {{ cert_file: {cert}, key_file: {key} }}\n", ca_file=ca)
        self.addCleanup(gw.stop)
        self.assertTrue(gw.url.startswith("https://"), gw.url)
        # Without the CA the gateway's certificate does not verify: never registered, and it says why.
        untrusted = self.registration(gw.url, service="pytls", request_timeout=1.0).start()
        eventually(
            lambda: isinstance(untrusted.states()[0][1], Registering)
            and "CERTIFICATE_VERIFY_FAILED" in (untrusted.states()[0][1].last_error or ""),
            "a certificate verification error",
        )
        self.assertFalse(untrusted.is_registered())
        untrusted.deregister()  # never registered: only stops its thread
        self.assertEqual(gw.ids("pytls"), [])
        # With it: registered, heartbeating past the lease TTL, routed, deregistered.
        r = self.registration(gw.url, service="pytls", ca_file=ca).start()
        self.assertTrue(r.wait_registered(10), r)
        # Two lease TTLs: only heartbeats over TLS keep it, never lapsed.
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            replicas = {x["id"]: x for x in gw.replicas("pytls")}
            self.assertIn(r.id(), replicas)
            self.assertLess(replicas[r.id()]["last_heartbeat_ms_ago"], 1000, replicas[r.id()])
            time.sleep(0.05)
        status, _, body = gw.request("GET", "/pytls/secure")
        self.assertEqual(status, 200, body)
        r.deregister()
        self.assertEqual(gw.ids("pytls"), [])

    def test_registers_routes_and_deregisters(self) -> None:
        gw = self.gateway()
        r = self.registration(gw.url, metadata={"version": "1.4.2"}).start()
        self.assertTrue(r.wait_registered(10), r)
        replicas = gw.replicas("pyorders")
        self.assertEqual([x["id"] for x in replicas], [r.id()])
        self.assertEqual(replicas[0]["address"], self.backend.url)
        self.assertEqual(replicas[0]["metadata"], {"version": "1.4.2"})
        status, _, body = gw.request("GET", "/pyorders/items?limit=5")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"backend": "py-1", "path": "/items?limit=5"})
        self.assertEqual(self.backend.paths, ["/items?limit=5"])
        r.deregister()
        self.assertEqual(gw.ids("pyorders"), [])
        self.assertFalse(r.is_registered())
        status, _, _ = gw.request("GET", "/pyorders/items")
        self.assertNotEqual(status, 200)

    def test_context_manager_deregisters_and_stops_the_thread(self) -> None:
        gw = self.gateway()
        before = {t.name for t in threading.enumerate()}
        with Registration([gw.url], "pyctx", self.backend.url, backoff=FAST) as r:
            self.assertTrue(r.wait_registered(10), r)
            self.assertEqual(gw.ids("pyctx"), [r.id()])
            self.assertIn("registry-client pyctx @ " + gw.url, {t.name for t in threading.enumerate()})
        self.assertEqual(gw.ids("pyctx"), [])
        self.assertEqual({t.name for t in threading.enumerate()} - before, set())

    def test_a_service_process_deregisters_on_sigterm(self) -> None:
        # A real service process as the README shows it: start, then deregister from its SIGTERM handler.
        # A long lease, so only the deregistration can make the replica disappear.
        gw = self.gateway("lease: { ttl: 60s, heartbeat_interval: 5s }\n")
        package = str(Path(__file__).resolve().parents[1])
        script = (
            "import signal, sys, time\n"
            f"sys.path.insert(0, {package!r})\n"
            "from registry_client import Registration\n"
            f"r = Registration([{gw.url!r}], 'pysig', {self.backend.url!r}).start()\n"
            "assert r.wait_registered(10), r.states()\n"
            "def stop(*_):\n"
            "    r.deregister()\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "print('registered', r.id(), flush=True)\n"
            "while True:\n"
            "    time.sleep(0.05)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        assert proc.stdout is not None
        line = proc.stdout.readline()
        self.assertTrue(line.startswith("registered "), line)
        rid = line.split()[1]
        self.assertEqual(gw.ids("pysig"), [rid])
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=15), 0)
        proc.stdout.close()
        self.assertEqual(gw.ids("pysig"), [])

    def test_heartbeats_keep_it_past_the_lease_ttl(self) -> None:
        gw = self.gateway()
        r = self.registration(gw.url).start()
        self.assertTrue(r.wait_registered(10), r)
        first = r.id()
        state = r.states()[0][1]
        self.assertEqual(state, Registered(first, 0.2, 1.0))  # type: ignore[arg-type]
        # A replica registered by hand, with no heartbeats, shows the lease really is 1 s.
        status, _, body = gw.request(
            "POST", "/register", {"service": "pyorders", "address": "http://127.0.0.1:9"}
        )
        self.assertEqual(status, 201, body)
        silent = json.loads(body)["id"]
        eventually(lambda: silent not in gw.ids("pyorders"), "the silent replica's lease expires", 15)
        # Three TTLs later the heartbeating one is still there, with the same id, never lapsed.
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            replicas = {x["id"]: x for x in gw.replicas("pyorders")}
            self.assertIn(first, replicas)
            self.assertLess(replicas[first]["last_heartbeat_ms_ago"], 1000, replicas[first])
            self.assertFalse(replicas[first]["preserved"])
            time.sleep(0.05)
        self.assertEqual(r.id(), first)

    def test_registers_again_when_the_gateway_forgets_it(self) -> None:
        gw = self.gateway()
        r = self.registration(gw.url).start()
        self.assertTrue(r.wait_registered(10), r)
        first = r.id()
        status, _, _ = gw.request("DELETE", f"/registry/pyorders/{first}")
        self.assertEqual(status, 204)
        eventually(lambda: r.id() not in (None, first), "a new id after the next heartbeat's 404")
        eventually(lambda: gw.ids("pyorders") == [r.id()], "the new id is listed")

    def test_registers_again_with_a_restarted_gateway(self) -> None:
        gw = self.gateway()
        r = self.registration(gw.url).start()
        self.assertTrue(r.wait_registered(10), r)
        first = r.id()
        gw.stop()
        restarted = self.gateway(listen=gw.addr)
        self.assertEqual(restarted.url, gw.url)
        eventually(lambda: r.id() not in (None, first), "registered again with the restarted gateway")
        eventually(lambda: restarted.ids("pyorders") == [r.id()], "listed by the restarted gateway")
        r.deregister()
        self.assertEqual(restarted.ids("pyorders"), [])

    def test_token_required(self) -> None:
        gw = self.gateway(SHORT_LEASE + "auth: { registration_token: s3cret }\n")
        without = self.registration(gw.url, service="pyanon").start()
        with_token = self.registration(gw.url, token="s3cret").start()
        self.assertTrue(with_token.wait_registered(10), with_token)
        self.assertEqual(gw.ids("pyorders", token="s3cret"), [with_token.id()])
        # Without: never registered; the state names the 401 and the gateway's sentence.
        eventually(
            lambda: isinstance(without.states()[0][1], Registering) and without.states()[0][1].attempts >= 2,
            "attempts without a token keep failing",
        )
        state = without.states()[0][1]
        self.assertFalse(without.is_registered())
        self.assertIn("answered 401", state.last_error)  # type: ignore[union-attr]
        self.assertIn("missing or invalid bearer token", state.last_error)  # type: ignore[union-attr]
        self.assertEqual(gw.ids("pyanon", token="s3cret"), [])
        with_token.deregister()
        self.assertEqual(gw.ids("pyorders", token="s3cret"), [])

    def test_registers_with_every_gateway(self) -> None:
        a, b = self.gateway(), self.gateway()
        r = self.registration([a.url, b.url]).start()
        self.assertTrue(r.wait_registered(10), r)
        ids = [s.id for _, s in r.states()]  # type: ignore[union-attr]
        self.assertEqual(a.ids("pyorders"), [ids[0]])
        self.assertEqual(b.ids("pyorders"), [ids[1]])
        r.deregister()
        self.assertEqual((a.ids("pyorders"), b.ids("pyorders")), ([], []))

    def test_a_bad_registration_gives_up(self) -> None:
        gw = self.gateway()
        r = self.registration(gw.url, service="Not_A_Label").start()
        eventually(lambda: isinstance(r.states()[0][1], Failed), "a 400 is final")
        self.assertIn("service name must be a DNS label", r.states()[0][1].reason)  # type: ignore[union-attr]
        eventually(lambda: not r._agents[0].is_alive(), "the thread ends")
        self.assertRaises(InvalidGatewayUrl, Registration, "ftp://127.0.0.1:1", "x", self.backend.url)

    def test_backs_off_while_the_gateway_is_down(self) -> None:
        gw = self.gateway()
        down = gw.url
        gw.stop()  # nothing listens there now: every attempt is refused at once
        started = time.monotonic()
        r = self.registration(down, backoff=Backoff(base=0.05, max=0.4)).start()

        def attempts() -> int:
            state = r.states()[0][1]
            return state.attempts if isinstance(state, Registering) else -1

        # It keeps trying (never gives up) ...
        eventually(lambda: attempts() >= 8, "8 failed attempts", 30)
        elapsed = time.monotonic() - started
        # ... but no faster than the backoff allows: 7 waits of at least 25+50+100+200+200+200+200 ms
        # (half of each capped ceiling). A busy loop would make thousands of attempts in that time.
        self.assertGreaterEqual(elapsed, 0.95, f"8 attempts in {elapsed:.3f}s")
        state = r.states()[0][1]
        self.assertIn("unreachable", state.last_error)  # type: ignore[union-attr]
        self.assertFalse(r.is_registered())

    def test_honours_retry_after(self) -> None:
        busy = CountingServer(503, {"Retry-After": "1", "Content-Type": "application/json"})
        self.addCleanup(busy.stop)
        r = self.registration(busy.url, backoff=Backoff(base=0.01, max=0.02)).start()
        eventually(lambda: len(busy.times) >= 3, "three attempts", 15)
        gaps = [b - a for a, b in zip(busy.times, busy.times[1:])]
        # Backoff alone would retry within 20 ms; Retry-After: 1 makes each wait a second.
        self.assertTrue(all(g >= 0.9 for g in gaps), gaps)
        self.assertIn("busy", r.states()[0][1].last_error)  # type: ignore[union-attr]


if __name__ == "__main__":
    unittest.main()
