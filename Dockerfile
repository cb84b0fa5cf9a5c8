# databricks-exporter: the exporter (and, with `simulate`, the simulated workspace docker-compose.yml runs).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package build needs, so editing tests or dashboards does not rebuild this layer.
COPY pyproject.toml README.md /src/
COPY exporter /src/exporter
RUN pip install /src && rm -rf /src \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin exporter \
    && mkdir -p /var/lib/databricks-exporter && chown exporter:exporter /var/lib/databricks-exporter

# The state file (cursors and counters) lives here; a named volume mounted on it inherits the ownership.
VOLUME /var/lib/databricks-exporter
WORKDIR /var/lib/databricks-exporter
USER 10001:10001
EXPOSE 9977

# The slim image has no curl; the standard library is enough. /healthz answers as soon as the server listens.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9977/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["databricks-exporter"]
CMD ["serve", "--log.format", "json"]
