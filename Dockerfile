# mirror's image: `mirror daemon` for an ECS service, or any mirror command.
#   docker build -t mirror .
#   docker build --build-arg BASE_IMAGE=<account>.dkr.ecr.<region>.amazonaws.com/mirror/docker-hub/library/python:3.12-slim-bookworm -t mirror .
# BASE_IMAGE lets you build from your own mirror instead of Docker Hub; pin it by digest
# for a reproducible image. The dependencies come from requirements.lock, every one
# pinned and hash-checked (regenerate it with `bash .ci/lock`).
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /opt/mirror \
    && /opt/mirror/bin/pip install --no-compile --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE NOTICE ./
COPY mirror ./mirror
RUN /opt/mirror/bin/pip install --no-compile --no-deps --no-build-isolation . \
    && /opt/mirror/bin/python -m compileall -q /opt/mirror

FROM ${BASE_IMAGE}
ENV PATH=/opt/mirror/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MIRROR_CONFIG=/etc/mirror/mirror.yaml
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mirror
COPY --from=build /opt/mirror /opt/mirror
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["mirror", "health"]
ENTRYPOINT ["mirror"]
CMD ["daemon"]
