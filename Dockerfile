# syntax=docker/dockerfile:1
# The aigov container image.
#   docker build -t aigov .
#   docker run -p 8080:8080 -v aigov-home:/var/lib/aigov aigov
# Configuration: AIGOV_* environment variables, or config.toml / policy.toml in the mounted home
# (/var/lib/aigov). The daemon runs as an unprivileged user (uid 10001) and serves on 0.0.0.0:8080.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: the aigov wheel, its dependencies' wheels, and a virtual environment made from them --------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md CHANGELOG.md ./
COPY aigov_cli ./aigov_cli
COPY daemon ./daemon
# Optional parts installed in the image: the Redis rate limiter and Sentry reports (add the
# PostgreSQL extra here once the build has one).
ARG AIGOV_EXTRAS=redis,sentry
# uvloop is what `aigov serve` runs on when it is installed: a faster event loop.
ARG UVLOOP_VERSION=0.21.0
RUN pip wheel --wheel-dir /wheels ".[${AIGOV_EXTRAS}]" "uvloop==${UVLOOP_VERSION}" \
 && python -m venv /opt/aigov \
 && /opt/aigov/bin/pip install --no-index --find-links /wheels "aigov[${AIGOV_EXTRAS}]" "uvloop==${UVLOOP_VERSION}" \
 && /opt/aigov/bin/aigov --version

# -- runtime: the virtual environment, a non-root user and its home -----------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="aigov" \
      org.opencontainers.image.description="A governance checkpoint for calls to AI models" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 aigov \
 && useradd --system --uid 10001 --gid aigov --home-dir /var/lib/aigov --no-create-home \
            --shell /usr/sbin/nologin aigov \
 && install -d -o aigov -g aigov -m 0700 /var/lib/aigov
COPY --from=build /opt/aigov /opt/aigov
COPY deploy/docker/healthcheck.py /opt/aigov/healthcheck.py
ENV PATH=/opt/aigov/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AIGOV_HOME=/var/lib/aigov
USER 10001:10001
WORKDIR /var/lib/aigov
VOLUME ["/var/lib/aigov"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/aigov/healthcheck.py"]
# SIGTERM: stop accepting, finish in-flight requests, write every queued decision, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["aigov"]
CMD ["serve", "--host", "0.0.0.0", "--workers", "auto"]
