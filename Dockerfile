# databricks-exporter images. The default target `exporter` is the exporter alone; the target `simulator` is the
# simulated workspace that docker-compose.yml runs beside it (package databricks_sim with its DuckDB and sqlglot).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package build needs, so editing tests or dashboards does not rebuild these layers.
COPY pyproject.toml README.md /src/
COPY exporter /src/exporter
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin exporter \
    && mkdir -p /var/lib/databricks-exporter && chown exporter:exporter /var/lib/databricks-exporter
WORKDIR /var/lib/databricks-exporter
ENTRYPOINT ["databricks-exporter"]


FROM base AS simulator
COPY simulator /src/simulator
RUN pip install '/src[simulator]' && rm -rf /src
# The simulator writes its throwaway CA here, for the exporter to trust (a named volume inherits the ownership).
VOLUME /var/lib/databricks-exporter
USER 10001:10001
EXPOSE 8080 8443
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/.well-known/databricks-config', timeout=4)"]
CMD ["simulate", "--listen", "0.0.0.0:8080"]


FROM base AS exporter
# An empty simulator/ folder: the package build looks there, and the exporter's image carries no simulator.
RUN mkdir -p /src/simulator && pip install /src && rm -rf /src
# The state file (cursors and counters) lives here by default ($STATE_DIRECTORY/state.json); a named volume mounted
# on it inherits the ownership.
ENV STATE_DIRECTORY=/var/lib/databricks-exporter
VOLUME /var/lib/databricks-exporter
USER 10001:10001
EXPOSE 9977

# The slim image has no curl; the standard library is enough. /healthz answers as soon as the server listens.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9977/healthz', timeout=4).status != 200)"]

CMD ["serve", "--log.format", "json"]
