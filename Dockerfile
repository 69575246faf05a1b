# distillguard: the scoring service (and, with another command, the demo traffic feeder).
#   docker build -t distillguard .
#   docker run -p 8000:8000 -e DISTILLGUARD_INGEST_TOKENS=... -e DISTILLGUARD_READ_TOKENS=... distillguard
# With no model at $DISTILLGUARD_MODEL_PATH, deploy/entrypoint.sh trains one on a generated
# scenario first. docker-compose.yml runs it with Prometheus and Grafana.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DISTILLGUARD_MODEL_PATH=/var/lib/distillguard/model.joblib \
    DISTILLGUARD_SNAPSHOT_PATH=/var/lib/distillguard/state

WORKDIR /app

# the package first (its dependencies are the slow layer), the deploy scripts after
COPY pyproject.toml README.md ./
COPY detector ./detector
COPY service ./service
COPY synthetic_logs ./synthetic_logs
RUN pip install .
# compile the numba fingerprint kernel into the image's cache (otherwise ~4 s at first start)
RUN cd / && python -c "from detector.fingerprints import fingerprint_events as f; \
from detector.io.schema import empty_events as e; f(e().clear(1)).collect()"

COPY deploy/entrypoint.sh deploy/feeder.py ./deploy/
RUN chmod 0755 deploy/entrypoint.sh \
    && groupadd --system --gid 10001 distillguard \
    && useradd --system --uid 10001 --gid distillguard --home-dir /var/lib/distillguard \
       --create-home --shell /usr/sbin/nologin distillguard \
    && mkdir -p /var/lib/distillguard/state \
    && chown -R distillguard:distillguard /var/lib/distillguard

USER distillguard
VOLUME ["/var/lib/distillguard"]
EXPOSE 8000

# liveness: /healthz answers while the process serves (readiness is /readyz); a first start
# trains the model before serving, hence the long start period
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["serve"]
