"""Warm standby: one coordination.k8s.io/v1 Lease per shard decides which replica runs its sources.

README "Scale-out", "Warm standby". The active replica holds the Lease and renews it
every `renew_seconds` (5 s); the standby runs everything but its sources and polls the
Lease as often. When the Lease expires (renewTime + leaseDurationSeconds passed) the
standby takes it with a PUT carrying the resourceVersion it read: a 409 means another
replica won, so it stays standby and polls again.

No doubled window: with every renew, and at once after a window is forwarded, the
active replica writes its window ledger (the last forwarded window end per upstream,
bridge/context.py WindowLedger) into the Lease's annotations. The replica that takes over
merges them into its ledger before it starts its sources, so it forwards only later
windows; its sources fetch the last complete minute at once.

Talks to the API server with httpx (a dependency already), not the `kubernetes` client:
four REST calls on one object do not justify a second HTTP stack and its dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bridge.clock import Clock, SystemClock
from bridge.context import WindowLedger
from bridge.schema import HAConfig

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: The Lease annotation holding the active replica's window ledger, as a JSON object {upstream: unix end}.
WINDOWS_ANNOTATION = "metrics-bridge.io/delivered-window-ends"
REQUEST_TIMEOUT_SECONDS = 5.0


class LeaseError(Exception):
    """The API server answered something other than success, 404 or 409."""


def format_micro_time(t: float) -> str:
    """metav1.MicroTime as the API stores it: RFC 3339 in UTC with 6 fractional digits."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str) -> float:
    """RFC 3339 (any number of fractional digits, Z or an offset) as unix seconds."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if "." in value:  # fromisoformat before 3.11 wanted exactly 3 or 6 digits: normalise to 6
        head, _, rest = value.partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        value = f"{head}.{(digits + '000000')[:6]}{rest[len(digits) :]}"
    return datetime.datetime.fromisoformat(value).timestamp()


class LeaseClient:
    """GET, POST and PUT of one Lease; 404 and 409 are answers (None), anything else raises LeaseError."""

    def __init__(
        self, base_url: str, namespace: str, name: str, *, token_file: Path | None = None, verify: str | bool = True
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.token_file = token_file
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), verify=verify, timeout=REQUEST_TIMEOUT_SECONDS)

    def _headers(self) -> dict[str, str]:
        """The service account token, re-read at every call: the kubelet rotates a projected token (about hourly)."""
        if self.token_file is None or not self.token_file.exists():
            return {}
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise LeaseError(f"service account token {self.token_file}: {exc.strerror}") from exc
        return {"Authorization": f"Bearer {token}"} if token else {}

    @classmethod
    def in_cluster(cls, config: HAConfig) -> LeaseClient:
        """From the config: the in-cluster API server, token and CA unless `api_url` names another server."""
        assert config.namespace is not None and config.lease_name is not None
        token_file = SERVICE_ACCOUNT / "token"
        if config.api_url:
            return cls(config.api_url, config.namespace, config.lease_name, token_file=token_file)
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise LeaseError("ha: not in a cluster ($KUBERNETES_SERVICE_HOST is empty) and no ha.api_url")
        host = f"[{host}]" if ":" in host else host
        ca = SERVICE_ACCOUNT / "ca.crt"
        return cls(
            f"https://{host}:{port}",
            config.namespace,
            config.lease_name,
            token_file=token_file,
            verify=str(ca) if ca.exists() else True,
        )

    async def get(self) -> dict[str, Any] | None:
        return await self._call("GET", f"{self.collection}/{self.name}")

    async def create(self, lease: dict[str, Any]) -> dict[str, Any] | None:
        return await self._call("POST", self.collection, lease)

    async def replace(self, lease: dict[str, Any]) -> dict[str, Any] | None:
        return await self._call("PUT", f"{self.collection}/{self.name}", lease)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        try:
            response = await self.client.request(method, path, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise LeaseError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (404, 409):
            return None
        if response.status_code >= 300:
            raise LeaseError(f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}")
        result = response.json()
        if not isinstance(result, dict):
            raise LeaseError(f"{method} {path}: not a JSON object")
        return result

    async def close(self) -> None:
        await self.client.aclose()


class LeaseElector:
    """One replica's view of the Lease: acquire, renew, notice expiry, give way on a 409."""

    def __init__(self, client: LeaseClient, identity: str, duration_seconds: int, clock: Clock | None = None) -> None:
        self.client = client
        self.identity = identity
        self.duration_seconds = duration_seconds
        self.clock: Clock = clock or SystemClock()
        #: the annotations of the Lease as last read (a taking-over replica's window history)
        self.observed_annotations: dict[str, str] = {}
        self.holder: str | None = None

    def expired(self, spec: dict[str, Any], now: float) -> bool:
        """No holder, no renewTime, or renewTime + leaseDurationSeconds has passed."""
        if not spec.get("holderIdentity") or not spec.get("renewTime"):
            return True
        try:
            renewed = parse_micro_time(str(spec["renewTime"]))
        except ValueError:
            return True
        return now >= renewed + float(spec.get("leaseDurationSeconds") or self.duration_seconds)

    async def try_acquire_or_renew(self, annotations: dict[str, str] | None = None) -> bool:
        """True when this replica holds the Lease afterwards; `annotations` are written only by the holder."""
        lease = await self.client.get()
        now = self.clock.now()
        stamp = format_micro_time(now)
        if lease is None:
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.client.name, "namespace": self.client.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self.duration_seconds,
                    "acquireTime": stamp,
                    "renewTime": stamp,
                    "leaseTransitions": 0,
                },
            }
            if annotations:
                body["metadata"]["annotations"] = dict(annotations)
            self.observed_annotations = {}
            created = await self.client.create(body)  # None: 409, another replica created it first
            self.holder = self.identity if created is not None else None
            return created is not None
        metadata = lease.get("metadata") or {}
        spec = lease.get("spec") or {}
        self.observed_annotations = dict(metadata.get("annotations") or {})
        self.holder = spec.get("holderIdentity")
        ours = self.holder == self.identity
        if not ours and not self.expired(spec, now):
            return False
        updated = copy.deepcopy(lease)
        new_spec = updated.setdefault("spec", {})
        new_spec["holderIdentity"] = self.identity
        new_spec["leaseDurationSeconds"] = self.duration_seconds
        new_spec["renewTime"] = stamp
        if not ours:
            new_spec["acquireTime"] = stamp
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        if annotations:
            updated.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
        replaced = await self.client.replace(updated)  # carries the resourceVersion read: 409 if it moved
        if replaced is None:
            self.holder = None
            return False
        self.holder = self.identity
        return True

    async def release(self) -> None:
        """On a clean stop: clear the holder so the standby takes over at its next poll, not after expiry."""
        lease = await self.client.get()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        updated = copy.deepcopy(lease)
        updated["spec"]["holderIdentity"] = None
        await self.client.replace(updated)


def window_annotations(ledger: WindowLedger) -> dict[str, str]:
    return {WINDOWS_ANNOTATION: json.dumps(ledger.snapshot(), sort_keys=True)}


def window_ends(annotations: dict[str, str]) -> dict[str, float]:
    """The ledger a previous holder wrote; an unreadable annotation is logged and yields nothing."""
    raw = annotations.get(WINDOWS_ANNOTATION)
    if raw is None:
        return {}
    try:
        ends = json.loads(raw)
    except ValueError:
        ends = None
    if not isinstance(ends, dict):
        log.warning("Lease annotation %s is not a JSON object; taking over without window history", WINDOWS_ANNOTATION)
        return {}
    return ends


class Standby:
    """The loop that makes this replica active or standby: calls `activate` and `deactivate` on changes."""

    def __init__(
        self,
        config: HAConfig,
        elector: LeaseElector,
        ledger: WindowLedger,
        activate: Callable[[], Awaitable[None]],
        deactivate: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config
        self.elector = elector
        self.ledger = ledger
        self.activate = activate
        self.deactivate = deactivate
        self.active = False
        self._last_renew: float | None = None
        self._announced = False
        self._wake = asyncio.Event()
        ledger.listeners.append(self._ledger_changed)

    def _ledger_changed(self) -> None:
        if self.active:
            self._wake.set()  # write the new window end into the Lease now, not at the next renew

    async def run(self) -> None:
        clock = self.elector.clock
        while True:
            self._wake.clear()
            try:
                await self.step(clock.now())
            except Exception:  # a bug (or a Lease shaped unlike the API's): logged, and the loop goes on
                log.exception("ha: Lease %s: renew or poll failed", self.config.lease_name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.renew_seconds)

    async def step(self, now: float) -> None:
        """One renew (active) or poll (standby)."""
        try:
            held = await self.elector.try_acquire_or_renew(window_annotations(self.ledger) if self.active else None)
        except LeaseError as exc:
            log.warning("ha: Lease %s: %s", self.config.lease_name, exc)
            # Keep running through a short outage, but stop before the Lease can expire for the others.
            deadline = self.config.lease_duration_seconds - self.config.renew_seconds
            if self.active and self._last_renew is not None and now - self._last_renew >= deadline:
                await self._step_down("the Lease could not be renewed in time")
            return
        if held:
            self._last_renew = now
            if not self.active:
                self.ledger.merge(window_ends(self.elector.observed_annotations))
                self.active = True
                log.info(
                    "ha: %s holds Lease %s/%s: active, starting sources",
                    self.elector.identity,
                    self.config.namespace,
                    self.config.lease_name,
                )
                await self.activate()
        elif self.active:
            await self._step_down(f"{self.elector.holder or 'another replica'} holds the Lease")
        elif not self._announced:
            self._announced = True
            log.info("ha: %s is standby (Lease held by %s)", self.elector.identity, self.elector.holder)

    async def _step_down(self, why: str) -> None:
        log.warning("ha: %s: standby, stopping sources", why)
        self.active = False
        await self.deactivate()
