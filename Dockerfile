# crm-service image: `docker build -t crm-service .`
# The build stage installs the locked dependencies (hash-checked) and then the package itself
# without dependencies (non-editable; the wheel carries the migrations) into a virtualenv; the
# runtime stage copies only that virtualenv and runs as a non-root user. The base image is
# pinned to an exact release, so a rebuild gets the same Python and Debian.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /build
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
RUN /opt/venv/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user so orchestrators can verify it is not root. The working directory is
# where the embedded default keeps ./var/ (SQLite); mount a volume there to keep it, or
# set CRM_DATABASE_URL to use PostgreSQL.
RUN groupadd --system --gid 10001 crm \
 && useradd --system --uid 10001 --gid crm --home-dir /srv/crm --shell /usr/sbin/nologin crm \
 && mkdir -p /srv/crm/var \
 && chown -R crm:crm /srv/crm
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/crm
USER 10001:10001
EXPOSE 8000
# slim has no curl; /healthz checks the process only, /readyz is for the load balancer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
CMD ["crm-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
