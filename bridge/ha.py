"""Warm standby: one coordination.k8s.io/v1 Lease per shard decides which replica runs its sources.

README "Scale-out", "Warm standby". The active replica holds the Lease and renews it
every `renew_seconds` (5 s); the standby runs everything but its sources and polls the
Lease as often. When the Lease expires (renewTime + leaseDurationSeconds passed) the
standby takes it with a PUT carrying the resourceVersion it read: a 409 means another
replica won, so it stays standby and polls again.

No doubled window: with every renew, and before a window is forwarded (Standby.publish),
the active replica writes its window ledger (the last forwarded window end per upstream,
bridge/context.py WindowLedger) into the Lease's annotations. The replica that takes over
merges them into its ledger before it starts its sources, so it forwards only later
windows; its sources fetch the last complete minute at once.

The Lease goes through the official `kubernetes` client's asyncio API (kubernetes.aio, the
`ha` extra), imported only when `ha.enabled`: the base install and a replica without a
standby do not carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge import telemetry
from bridge.clock import Clock, SystemClock
from bridge.context import WindowLedger
from bridge.schema import HAConfig

if TYPE_CHECKING:
    from kubernetes.aio.client import ApiClient, V1Lease

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: The Lease annotation holding the active replica's window ledger, as a JSON object {upstream: unix end}.
WINDOWS_ANNOTATION = "metrics-bridge.io/delivered-window-ends"
REQUEST_TIMEOUT_SECONDS = 5.0
INSTALL_HINT = "ha.enabled needs the kubernetes client: pip install 'metrics-bridge[ha]'"


class LeaseError(Exception):
    """The API server answered something other than success, 404 or 409, or could not be reached."""


def format_micro_time(t: datetime.datetime) -> str:
    """metav1.MicroTime as the API parses it (Go's RFC3339Micro): UTC with exactly 6 fractional digits."""
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micro_time(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, datetime.UTC)


def _api_client(configuration: Any) -> ApiClient:
    """The client's ApiClient, writing times as MicroTime.

    Its serializer writes a datetime with isoformat(), which drops the fractional digits when
    the microsecond is 0: the API server then refuses renewTime (400), once in a million renews.
    """
    from kubernetes.aio.client import ApiClient

    class MicroTimeApiClient(ApiClient):
        def sanitize_for_serialization(self, obj: Any) -> Any:
            if isinstance(obj, datetime.datetime):
                return format_micro_time(obj)
            return super().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]

    return MicroTimeApiClient(configuration)


class LeaseClient:
    """GET, POST and PUT of one Lease (CoordinationV1Api); 404 and 409 are answers (None), anything else LeaseError."""

    def __init__(self, api_client: ApiClient, namespace: str, name: str) -> None:
        from kubernetes.aio.client import CoordinationV1Api

        self.name = name
        self.namespace = namespace
        self.api_client = api_client
        self.api = CoordinationV1Api(api_client)

    @classmethod
    async def from_config(
        cls, config: HAConfig, service_account: Path = SERVICE_ACCOUNT, environ: dict[str, str] | None = None
    ) -> LeaseClient:
        """`api_url` when set (e.g. `kubectl proxy`); else in-cluster (the service account's token, re-read
        by the client every minute as the kubelet rotates it, and CA); else the kubeconfig."""
        assert config.namespace is not None and config.lease_name is not None
        try:
            from kubernetes.aio import config as kube_config
            from kubernetes.aio.client import Configuration
        except ImportError as exc:
            raise LeaseError(INSTALL_HINT) from exc
        configuration = Configuration()
        environ = dict(os.environ) if environ is None else environ
        try:
            if config.api_url:
                configuration.host = config.api_url.rstrip("/")
            elif environ.get("KUBERNETES_SERVICE_HOST"):
                kube_config.incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
                    str(service_account / "token"), str(service_account / "ca.crt"), environ=environ
                ).load_and_set(configuration)
            else:
                await kube_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except kube_config.ConfigException as exc:
            raise LeaseError(f"ha: no ha.api_url, and neither in a cluster nor a usable kubeconfig: {exc}") from exc
        return cls(_api_client(configuration), config.namespace, config.lease_name)

    async def get(self) -> V1Lease | None:
        return await self._call("GET", self.api.read_namespaced_lease(self.name, self.namespace, **_TIMEOUT))

    async def create(self, lease: V1Lease) -> V1Lease | None:
        return await self._call("POST", self.api.create_namespaced_lease(self.namespace, lease, **_TIMEOUT))

    async def replace(self, lease: V1Lease) -> V1Lease | None:
        return await self._call("PUT", self.api.replace_namespaced_lease(self.name, self.namespace, lease, **_TIMEOUT))

    async def _call(self, method: str, call: Awaitable[V1Lease]) -> V1Lease | None:
        import aiohttp
        from kubernetes.aio.client import ApiException

        where = f"{method} lease {self.namespace}/{self.name}"
        try:
            return await call
        except ApiException as exc:
            if exc.status in (404, 409):
                return None
            raise LeaseError(f"{where}: HTTP {exc.status} {exc.reason}: {str(exc.body or '')[:200]}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise LeaseError(f"{where}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self.api_client.close()  # type: ignore[no-untyped-call]


_TIMEOUT: dict[str, Any] = {"_request_timeout": REQUEST_TIMEOUT_SECONDS}


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

    def expired(self, lease: V1Lease, now: float) -> bool:
        """No holder, no renewTime, or renewTime + leaseDurationSeconds has passed."""
        spec = lease.spec
        if spec is None or not spec.holder_identity or spec.renew_time is None:
            return True
        return now >= spec.renew_time.timestamp() + float(spec.lease_duration_seconds or self.duration_seconds)

    async def try_acquire_or_renew(self, annotations: dict[str, str] | None = None) -> bool:
        """True when this replica holds the Lease afterwards; `annotations` are written only by the holder."""
        from kubernetes.aio.client import V1Lease, V1LeaseSpec, V1ObjectMeta

        lease = await self.client.get()
        now = self.clock.now()
        stamp = micro_time(now)
        if lease is None:
            self.observed_annotations = {}
            created = await self.client.create(  # None: 409, another replica created it first
                V1Lease(
                    api_version="coordination.k8s.io/v1",
                    kind="Lease",
                    metadata=V1ObjectMeta(
                        name=self.client.name, namespace=self.client.namespace, annotations=dict(annotations or {})
                    ),
                    spec=V1LeaseSpec(
                        holder_identity=self.identity,
                        lease_duration_seconds=self.duration_seconds,
                        acquire_time=stamp,
                        renew_time=stamp,
                        lease_transitions=0,
                    ),
                )
            )
            self.holder = self.identity if created is not None else None
            return created is not None
        metadata = lease.metadata or V1ObjectMeta()
        spec = lease.spec or V1LeaseSpec()
        self.observed_annotations = dict(metadata.annotations or {})
        self.holder = spec.holder_identity
        ours = self.holder == self.identity
        if not ours and not self.expired(lease, now):
            return False
        updated = lease.model_copy(deep=True)
        new_spec = updated.spec = updated.spec or V1LeaseSpec()
        new_spec.holder_identity = self.identity
        new_spec.lease_duration_seconds = self.duration_seconds
        new_spec.renew_time = stamp
        if not ours:
            new_spec.acquire_time = stamp
            new_spec.lease_transitions = (spec.lease_transitions or 0) + 1
        if annotations:
            updated.metadata = updated.metadata or V1ObjectMeta()
            updated.metadata.annotations = {**(updated.metadata.annotations or {}), **annotations}
        replaced = await self.client.replace(updated)  # carries the resourceVersion read: 409 if it moved
        if replaced is None:
            self.holder = None
            return False
        self.holder = self.identity
        return True

    async def release(self) -> None:
        """On a clean stop: clear the holder so the standby takes over at its next poll, not after expiry."""
        lease = await self.client.get()
        if lease is None or lease.spec is None or lease.spec.holder_identity != self.identity:
            return
        updated = lease.model_copy(deep=True)
        assert updated.spec is not None
        updated.spec.holder_identity = None
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
        #: one Lease write at a time: two of this replica's own PUTs at once would 409 each other
        self._writing = asyncio.Lock()
        self._recorded = 0  # windows recorded so far, and how many of them the Lease holds
        self._written = 0
        self._publish_failing = False  # one warning per bad spell, not one per window
        ledger.publisher = self.publish
        telemetry.HA_ACTIVE.labels(config.lease_name).set(0)

    async def publish(self) -> None:
        """Write the window ledger into the Lease before the window just recorded is forwarded.

        A replica killed before this write never forwarded the window, and the one taking over
        fetches it; after it, the one taking over knows it was forwarded: once either way.
        Windows recorded together share one write. A write that fails or takes longer than
        `renew_seconds` is logged and the window forwarded anyway (the next renew writes it);
        losing the Lease is left to the renew loop, which stops the sources.
        """
        if not self.active:
            return
        self._recorded += 1
        wanted = self._recorded
        try:
            async with asyncio.timeout(self.config.renew_seconds), self._writing:
                if self._written >= wanted or not self.active:
                    return
                covered = self._recorded
                held = await self.elector.try_acquire_or_renew(window_annotations(self.ledger))
                self._written = covered
        except (LeaseError, TimeoutError) as exc:
            telemetry.HA_LEASE_ERRORS.labels(self.config.lease_name).inc()
            if not self._publish_failing:
                self._publish_failing = True
                log.warning(
                    "ha: Lease %s: window ends not written before forwarding (%s); forwarding anyway until it works",
                    self.config.lease_name,
                    exc or type(exc).__name__,
                )
            return
        self._publish_failing = False
        if held:
            self._last_renew = self.elector.clock.now()
        else:
            self._wake.set()  # another replica holds it now: the renew loop steps down at once

    async def run(self) -> None:
        clock = self.elector.clock
        while True:
            self._wake.clear()
            try:
                async with self._writing:
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
            telemetry.HA_LEASE_ERRORS.labels(self.config.lease_name).inc()
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
                telemetry.HA_ACTIVE.labels(self.config.lease_name).set(1)
                telemetry.HA_TRANSITIONS.labels(self.config.lease_name, "active").inc()
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
        telemetry.HA_ACTIVE.labels(self.config.lease_name).set(0)
        telemetry.HA_TRANSITIONS.labels(self.config.lease_name, "standby").inc()
        await self.deactivate()
