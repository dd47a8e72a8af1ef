"""metrics-bridge: pull Prometheus-format metrics, push them to OTLP and Datadog with their meaning intact."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metrics-bridge")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"
