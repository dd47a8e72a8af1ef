# metrics-bridge container image.
#
# Stage 1 builds the wheel and installs it with its dependencies, at the
# versions the test suite ran with (constraints.txt), into a virtualenv;
# stage 2 is a clean slim image with only that virtualenv, so no compiler,
# pip cache or source tree ships. The image runs as a non-root user
# and works with a read-only root filesystem: mount a volume on
# /var/lib/metrics-bridge (disk spool) and a tmpfs on /tmp.
#
#   docker build -t metrics-bridge .
#   docker run --rm --read-only --tmpfs /tmp -p 9464:9464 metrics-bridge   # embedded demo
ARG PYTHON_VERSION=3.12

# The full (not slim) image for the build: its gcc compiles the optional C extension bridge._speedups into
# the wheel (README, "Libraries, and the parts written by hand"), and only the compiled module reaches the
# runtime stage (same Debian, same /usr/local/bin/python). Should it not compile, the wheel is made without
# it and the image runs the Python reference code.
FROM python:${PYTHON_VERSION}-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY bridge ./bridge
RUN pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt "$(ls /dist/*.whl)[ha]"

FROM python:${PYTHON_VERSION}-slim-bookworm
LABEL org.opencontainers.image.title="metrics-bridge" \
      org.opencontainers.image.description="Pull Prometheus-format metrics (Cerebras first), push them to OTLP and Datadog" \
      org.opencontainers.image.licenses="Apache-2.0"
# Fixed numeric ids so Kubernetes' runAsNonRoot can verify them without /etc/passwd.
RUN groupadd --system --gid 10001 bridge \
 && useradd --system --uid 10001 --gid bridge --home-dir /var/lib/metrics-bridge --no-create-home \
    --shell /usr/sbin/nologin bridge \
 && install -d -o bridge -g bridge -m 0750 /var/lib/metrics-bridge
COPY --from=build /opt/venv /opt/venv
# No .pyc writes at run time (read-only root), logs straight to the collector, JSON by default.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    METRICS_BRIDGE_LOG_FORMAT=json
WORKDIR /var/lib/metrics-bridge
VOLUME ["/var/lib/metrics-bridge"]
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["metrics-bridge"]
CMD ["run"]
