# larpix-monitor exporter: watches a data directory, serves /metrics and plots.
#   docker build -t larpix-monitor .
#   docker run -v /path/to/data:/data:ro -p 8470:8470 larpix-monitor
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

RUN useradd --system --uid 10001 --user-group --no-create-home larpix \
    && mkdir -p /data /plots \
    && chown larpix:larpix /plots

WORKDIR /opt/larpix-monitor
COPY pyproject.toml README.md ./
COPY exporter ./exporter
COPY plotters ./plotters
RUN pip install . && rm -rf /opt/larpix-monitor/build

USER larpix
WORKDIR /plots
EXPOSE 8470
VOLUME ["/plots"]

# slim images have no curl: ask /healthz with the Python that is there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8470/healthz', timeout=4)"]

ENTRYPOINT ["larpix-monitor"]
CMD ["serve", "-i", "/data", "-o", "/plots", "--host", "0.0.0.0", "--port", "8470"]
