"""Test harness: the real gateway binary, a real HTTP backend, and deadline-based waits."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def gateway_binary() -> Path:
    """``$REGISTRY_GATEWAY_BIN``, else ``target/debug/registry-gateway`` of this workspace."""
    path = Path(os.environ.get("REGISTRY_GATEWAY_BIN", ROOT / "target" / "debug" / "registry-gateway"))
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `cargo build --workspace --bins` first")
    return path


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Polls ``check`` every 20 ms until it holds; fails with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what}")
        time.sleep(0.02)


class Gateway:
    """A ``registry-gateway`` process with ``yaml`` config on ``listen`` (default: a free port).

    With ``ca_file`` the config sets ``tls:`` and the gateway is reached over ``https://``, its
    certificate checked against that CA."""

    def __init__(self, yaml: str = "", listen: str = "127.0.0.1:0", ca_file: Optional[str] = None) -> None:
        fd, self._config = tempfile.mkstemp(prefix="py-sdk-gateway-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(yaml if "workers:" in yaml else "workers: 1\n" + yaml)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env["GATEWAY_LOG"] = "info"
        self.proc = subprocess.Popen(
            [str(gateway_binary()), "--listen", listen, "--grpc-listen", "127.0.0.1:0", "--config", self._config],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        self.output: List[str] = []
        self._listening = threading.Event()
        self.url = ""
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for t in self._readers:
            t.start()
        if not self._listening.wait(30):
            self.stop()
            raise RuntimeError("gateway did not print 'listening on' within 30s:\n" + "\n".join(self.output))
        self.addr = self.url[len("http://") :]
        self._tls: Optional[ssl.SSLContext] = None
        if ca_file is not None:
            self.url = "https://" + self.addr
            self._tls = ssl.create_default_context(cafile=ca_file)

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            line = line.rstrip("\n")
            self.output.append(line)
            if "listening on http://" in line and not self.url:
                self.url = line.split("listening on ")[1].split()[0]
                self._listening.set()

    def stop(self) -> None:
        """Kills the process and waits for it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for t in self._readers:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        try:
            os.unlink(self._config)
        except FileNotFoundError:
            pass

    def request(
        self, method: str, path: str, body: Optional[dict] = None, token: Optional[str] = None
    ) -> Tuple[int, Dict[str, str], bytes]:
        """One request to the gateway; returns (status, lower-cased headers, body) for any status."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10, context=self._tls) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def replicas(self, service: str, token: Optional[str] = None) -> List[dict]:
        """The replicas of ``service`` in ``GET /registry``."""
        status, _, body = self.request("GET", "/registry", token=token)
        assert status == 200, (status, body)
        svc = json.loads(body)["services"].get(service)
        return svc["replicas"] if svc else []

    def ids(self, service: str, token: Optional[str] = None) -> List[str]:
        """The replica ids of ``service``."""
        return [r["id"] for r in self.replicas(service, token)]


class Backend:
    """A real HTTP server on 127.0.0.1:<free port> that answers every GET with its name and the path."""

    def __init__(self, name: str) -> None:
        self.paths: List[str] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                backend.paths.append(self.path)
                body = json.dumps({"backend": name, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self.server.shutdown()
        self.server.server_close()


class CountingServer:
    """A real HTTP server that answers every request with ``status`` and ``headers`` and records when."""

    def __init__(self, status: int, headers: Dict[str, str]) -> None:
        self.times: List[float] = []
        counting = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                counting.times.append(time.monotonic())
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b'{"error":"busy","message":"try later"}'
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self.server.shutdown()
        self.server.server_close()
