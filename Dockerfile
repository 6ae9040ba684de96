# syntax=docker/dockerfile:1
# One image for every natter process: `natter gateway`, `natter operator`,
# `natter bridge twitch ...`. Runs as a non-root user on a read-only root
# filesystem (all it writes is /tmp, an emptyDir in the chart).

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/natter
COPY pyproject.toml README.md ./
COPY src ./src
COPY operator ./operator
# A regular (not editable) install; pip byte-compiles it, so nothing needs
# writing at run time.
RUN /opt/natter/bin/pip install --no-cache-dir . \
    && /opt/natter/bin/natter --help > /dev/null

FROM python:${PYTHON_VERSION}-slim-bookworm
LABEL org.opencontainers.image.title="natter" \
      org.opencontainers.image.description="Clustered real-time chat on NATS JetStream" \
      org.opencontainers.image.source="https://github.com/natter/natter" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/natter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    NATTER_HOST=0.0.0.0 \
    NATTER_PORT=8080 \
    NATTER_LOG_FORMAT=json
COPY --from=build /opt/natter /opt/natter
# A numeric user, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["natter"]
CMD ["gateway"]
