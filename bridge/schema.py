"""The config models components build on: strict base models, delivery and telemetry settings, checks.

Split from the loader (bridge/config.py: YAML, interpolation, the registry), so a
source, sink or transform imports its base model from here without pulling in
the loader, which imports components through the registry: no import cycle.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import stat
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"not a valid regular expression: {reason}") from None
    return pattern


#: A regular expression from the config, compiled while validating: `validate` refuses what `run` would.
Regex = Annotated[str, AfterValidator(_compiles)]


class ComponentConfig(StrictModel):
    type: str


class SourceConfig(ComponentConfig):
    pass


class TransformConfig(ComponentConfig):
    pass


class DeliveryConfig(StrictModel):
    """Per-sink queue, retry and spool policy (bridge/delivery; README "Delivery and reliability")."""

    max_batches: int = Field(
        100_000, ge=1, description="queued payloads (one per source window) before the oldest is evicted"
    )
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="queued payload bytes held in memory before eviction (no spool)"
    )
    max_in_flight: int = Field(
        4,
        ge=1,
        le=64,
        description="requests sent at once (never two of one source's, so each source's windows stay in order)",
    )
    max_age_seconds: float | None = Field(
        None, gt=0, description="drop a payload whose window ended longer ago (sink default if unset: Datadog 3540)"
    )
    retry_initial_seconds: float = Field(1.0, gt=0, description="backoff ceiling after the first failure")
    retry_max_seconds: float = Field(60.0, gt=0, description="cap of the backoff and of any server-requested delay")
    drain_order: Literal["newest_first", "oldest_first"] = Field(
        "newest_first",
        description="after an outage: live data first, then backfill (newest_first); or in window order, for "
        "backends that refuse out-of-order samples (oldest_first)",
    )
    spool_path: str | None = Field(None, description="SQLite file that keeps unacknowledged payloads across restarts")
    spool_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="spooled payload bytes before the oldest is evicted (with a spool)"
    )


class SinkConfig(ComponentConfig):
    transforms: list[dict[str, Any]] = Field(default_factory=list)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?", re.ASCII)


class SeriesConfig(StrictModel):
    """The one bound on per-series memory (bridge/series/): each source's table, and the shared one."""

    max_series: int = Field(200_000, ge=1, description="series each table keeps (the least recently seen go first)")
    idle_seconds: float = Field(
        3600.0, gt=0, description="a series not seen for this long (in window time) is forgotten"
    )


class HAConfig(StrictModel):
    """Warm standby (README "Scale-out"): the replica holding the Lease runs the sources, the other waits.

    namespace and identity default from the pod's env (POD_NAMESPACE; POD_NAME, else HOSTNAME).
    """

    enabled: bool = False
    lease_name: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="the coordination.k8s.io/v1 Lease (default: <lease_prefix>-shard-<sharding index>)",
    )
    lease_prefix: str = Field(
        "metrics-bridge",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,230}[a-z0-9])?$",
        description="the default lease_name's prefix: one per release, so two releases never share a Lease",
    )
    namespace: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    identity: str | None = Field(None, min_length=1, max_length=253, description="this replica's holderIdentity")
    lease_duration_seconds: int = Field(15, ge=1, description="a Lease not renewed for this long is taken over")
    renew_seconds: float = Field(5.0, gt=0, description="the active replica renews, the standby polls, this often")
    api_url: str | None = Field(
        None,
        description="the API server (default: in-cluster, https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)",
    )

    @model_validator(mode="after")
    def _renew_within_duration(self) -> HAConfig:
        if self.renew_seconds >= self.lease_duration_seconds:
            raise ValueError("renew_seconds must be shorter than lease_duration_seconds")
        return self


class TelemetryConfig(StrictModel):
    listen: str | None = Field(
        None,
        description="host:port, [v6]:port or :port for /metrics, /healthz, /readyz (e.g. 0.0.0.0:9464); "
        "off if unset; port 0 picks a free port (logged)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"

    @field_validator("listen")
    @classmethod
    def _listen_address(cls, listen: str | None) -> str | None:
        """What the health server will bind: an IP literal or a host name, and a port that exists."""
        if listen is None:
            return None
        host, _, port = listen.rpartition(":")
        if not (port.isascii() and port.isdigit() and int(port) <= 65535):
            raise ValueError(f"{listen!r} needs a port 0..65535 after the last colon (host:port, [v6]:port or :port)")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            _ip_literal(host, ipaddress.IPv6Address, listen)
        elif ":" in host:
            raise ValueError(f"{listen!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
        elif host.replace(".", "").isdigit():
            _ip_literal(host, ipaddress.IPv4Address, listen)
        elif host and not (len(host) <= 253 and _HOSTNAME.fullmatch(host)):
            raise ValueError(f"{listen!r}: {host!r} is not an IP address or a host name")
        return listen


def _ip_literal(host: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address], listen: str) -> None:
    try:
        kind(host)
    except ValueError:
        raise ValueError(
            f"{listen!r}: {host!r} is not an IP{'v6' if kind is ipaddress.IPv6Address else 'v4'} address"
        ) from None


# ---------------------------------------------------------------- files
def not_a_regular_file(path: str, limit: int | None = None) -> str | None:
    """Why `path` cannot be read as a config value (None if it can): a FIFO would block, /dev/zero never ends."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    except ValueError:
        return "the path contains a NUL character"
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "a special file")
        return f"is {kind}, not a regular file"
    if limit is not None and info.st_size > limit:
        return f"is larger than {limit // 1024} KiB"
    return None


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def _no_password() -> str:
    raise ValueError("is encrypted: the bridge needs an unencrypted key")


def check_tls_files(ca: str | None, cert: str | None, key: str | None, *, keys: tuple[str, str, str]) -> None:
    """Load TLS files as a connection will (CA bundle, client certificate, its key); ValueError naming the setting.

    So `validate` refuses a missing, unreadable or malformed PEM file that `run`
    would only trip over when it connects. `keys` are the settings' names in messages.
    """
    if not (ca or cert or key):
        return
    ca_key, cert_key, key_key = keys
    if key and not cert:
        raise ValueError(f"{key_key} needs {cert_key} (the certificate that goes with the key)")
    for setting, path in ((ca_key, ca), (cert_key, cert), (key_key, key)):
        reason = not_a_regular_file(path) if path else None
        if reason:
            raise ValueError(f"{setting} {path}: {reason}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if ca:
            context.load_verify_locations(cafile=ca)
    except OSError as exc:
        raise ValueError(f"{ca_key} {ca}: {_tls_reason(exc)}") from None
    try:
        if cert:
            context.load_cert_chain(cert, key, password=_no_password)
    except (OSError, ValueError) as exc:
        if key:
            raise ValueError(f"{cert_key} {cert} with {key_key} {key}: {_tls_reason(exc)}") from None
        hint = f" (without {key_key}, the {cert_key} must hold the private key too)"
        raise ValueError(f"{cert_key} {cert}: {_tls_reason(exc)}{hint}") from None


def _tls_reason(exc: OSError | ValueError) -> str:
    # e.g. NO_CERTIFICATE_OR_CRL_FOUND, KEY_VALUES_MISMATCH; "[SSL] PEM lib (_ssl.c:N)"
    if isinstance(exc, ssl.SSLError):
        detail = exc.reason or re.sub(r"\[\w+\]\s*|\s*\(_ssl\.c:\d+\)", "", str(exc))
        return f"not usable PEM ({detail.lower().replace('_', ' ')})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
