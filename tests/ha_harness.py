"""The warm standby's test harness: a stand-in for the Kubernetes Lease endpoints, and real replicas.

Used by tests/test_ha.py and bench/bench_takeover.py. No Kubernetes API server can run on the
test machines, so the bridge talks to LeaseStandIn: a small loopback stand-in for the
coordination.k8s.io/v1 Lease endpoints. It is NOT an API server; it enforces only the API's
rules that matter to a leader election: a write carrying a resourceVersion that is not the
current one answers 409 Conflict (and so does a PUT without one), a missing Lease answers 404
and is created by POST (a second POST answers 409 AlreadyExists), every write gets a new
resourceVersion, renewTime / acquireTime must be written as the API parses a MicroTime (Go's
RFC3339Micro: exactly 6 fractional digits, else 400) and are stored as it stores them (UTC),
holderIdentity as given, and, when given a token, a request without it answers 401. The
bridge reaches it through the official `kubernetes` client, as in a cluster.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bridge.serverthread import ServerThread
from tests.servers import serve_tls

CLI = [sys.executable, "-m", "bridge.cli"]
LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([a-z0-9-]+)/leases(?:/([a-z0-9.-]+))?$")
#: What Go's time.Parse(RFC3339Micro, ...) accepts: 6 fractional digits, Z or an offset.
RFC3339_MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "message": message,
    }


def _micro_time(value: object) -> str:
    """Parse as the API server does (RFC3339Micro) and store as it does (UTC); ValueError if not such a time."""
    if not isinstance(value, str) or not RFC3339_MICRO.match(value):
        raise ValueError(f"{value!r} is not an RFC3339Micro time")
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseStandIn(ServerThread):
    """Stand-in for the Lease endpoints (see the module docstring): GET, POST, PUT, and what they enforce."""

    thread_name = "lease-stand-in"

    def __init__(self, tls: tuple[str, str] | None = None, token: str | None = None) -> None:
        self.tls = tls
        #: when set, a request without `Authorization: Bearer <token>` answers 401 (a service account's token)
        self.token = token
        self.authorizations: set[str] = set()
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.version = 0
        self.conflicts = 0
        self.history: list[tuple[float, str | None]] = []  # (when, holderIdentity) after every write
        #: called with the stored Lease before a PUT is checked (a test's "another replica wrote meanwhile")
        self.before_put: Callable[[dict[str, Any]], None] | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def _make_server(self) -> ThreadingHTTPServer:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(*self._authorized() or stand_in.handle("GET", self.path, None))

            def do_POST(self) -> None:
                self._answer(*self._authorized() or stand_in.handle("POST", self.path, self._body()))

            def do_PUT(self) -> None:
                self._answer(*self._authorized() or stand_in.handle("PUT", self.path, self._body()))

            def _authorized(self) -> tuple[int, dict[str, Any]] | None:
                """None when the request may go on; 401 (as the API server) without the expected bearer token."""
                authorization = self.headers.get("Authorization") or ""
                stand_in.authorizations.add(authorization)
                scheme, _, token = authorization.partition(" ")
                if stand_in.token is None or (scheme.lower() == "bearer" and token == stand_in.token):
                    return None
                return 401, _status(401, "Unauthorized", "Unauthorized")

            def _body(self) -> Any:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    return json.loads(raw)
                except ValueError:
                    return None

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serve_tls(server, self.tls)
        return server

    def handle(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        match = LEASES.match(path.split("?", 1)[0])
        if match is None:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        namespace, name = match.groups()
        with self.lock:
            if method == "GET" and name is not None:
                lease = self.leases.get((namespace, name))
                if lease is None:
                    return 404, _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
                return 200, json.loads(json.dumps(lease))
            if not isinstance(body, dict) or body.get("kind", "Lease") != "Lease":
                return 400, _status(400, "BadRequest", "expected a Lease")
            metadata = body.get("metadata") or {}
            if method == "POST" and name is None:
                name = metadata.get("name")
                if not isinstance(name, str):
                    return 422, _status(422, "Invalid", "metadata.name: Required value")
                if (namespace, name) in self.leases:
                    self.conflicts += 1
                    return 409, _status(409, "AlreadyExists", f'leases.coordination.k8s.io "{name}" already exists')
                return self._store(namespace, name, body, created=True)
            if method == "PUT" and name is not None:
                current = self.leases.get((namespace, name))
                if current is None:
                    return 404, _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
                if metadata.get("name") != name:
                    return 400, _status(400, "BadRequest", "the name of the object does not match the URL")
                if self.before_put is not None:
                    self.before_put(current)
                    current = self.leases[(namespace, name)]
                if metadata.get("resourceVersion") != current["metadata"]["resourceVersion"]:
                    self.conflicts += 1
                    return 409, _status(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": the object has been '
                        "modified; please apply your changes to the latest version and try again",
                    )
                return self._store(namespace, name, body, created=False)
            return 405, _status(405, "MethodNotAllowed", f"{method} is not supported here")

    def _store(self, namespace: str, name: str, body: dict[str, Any], *, created: bool) -> tuple[int, dict[str, Any]]:
        spec = dict(body.get("spec") or {})
        for key in ("acquireTime", "renewTime"):
            if spec.get(key) is not None:
                try:
                    spec[key] = _micro_time(spec[key])
                except ValueError:
                    return 400, _status(400, "BadRequest", f"spec.{key}: not an RFC3339Micro time")
        duration = spec.get("leaseDurationSeconds")
        if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0):
            return 422, _status(422, "Invalid", "spec.leaseDurationSeconds: must be a positive int32")
        self.version += 1
        metadata = dict(body.get("metadata") or {})
        metadata.update(name=name, namespace=namespace, resourceVersion=str(self.version))
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        self.leases[(namespace, name)] = lease
        self.history.append((time.monotonic(), spec.get("holderIdentity")))
        return (201 if created else 200), json.loads(json.dumps(lease))

    def holder(self, namespace: str = "ns", name: str = "lease") -> str | None:
        with self.lock:
            lease = self.leases.get((namespace, name))
            return None if lease is None else lease["spec"].get("holderIdentity")


# ---------------------------------------------------------------- real replicas
def windows(path: Path) -> Counter[int]:
    """Window ends (ns) a jsonl sink wrote, each counted once however many points it holds."""
    if not path.exists():
        return Counter()
    ends: set[int] = set()
    for line in path.read_text().splitlines():
        try:
            ends.add(json.loads(line)["end_ns"])
        except ValueError:  # a line still being written
            continue
    return Counter(ends)


def start_replica(
    name: str,
    directory: Path,
    simulator_url: str,
    stand_in: LeaseStandIn,
    lease_seconds: float,
    renew_seconds: float,
) -> subprocess.Popen[bytes]:
    """`metrics-bridge run` as pod `name`: one cerebras source on the simulator, a jsonl sink `<name>.jsonl`,
    ha on the stand-in's Lease `ns/lease`. Its log goes to `<name>.log` (appended: a restarted replica)."""
    config = directory / f"{name}.yaml"
    config.write_text(
        "sources:\n  cerebras:\n    type: cerebras\n    organization_id: org_ha\n"
        f"    base_url: {simulator_url.rsplit('/', 1)[0]}\n    offset_seconds: 1\n"
        f"sinks:\n  out:\n    type: jsonl\n    path: {directory / f'{name}.jsonl'}\n"
        f"ha:\n  enabled: true\n  lease_name: lease\n  api_url: {stand_in.url}\n"
        f"  lease_duration_seconds: {lease_seconds:g}\n  renew_seconds: {renew_seconds:g}\n"
    )
    env = {**os.environ, "POD_NAME": name, "POD_NAMESPACE": "ns", "CEREBRAS_API_KEY": "sim-key"}
    with (directory / f"{name}.log").open("ab") as log:
        return subprocess.Popen([*CLI, "run", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=log, env=env)
