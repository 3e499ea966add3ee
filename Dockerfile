# medic container image: medic run, non-root, config in /etc/medic, state in /var/lib/medic.
# Build: docker build -t medic .
# Run:   docker run -v ./medic.yml:/etc/medic/medic.yml:ro -v medic-data:/var/lib/medic \
#          -v ./token:/run/secrets/medic/token:ro -p 9847:9847 medic

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN python -m venv /opt/medic \
    && /opt/medic/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 medic \
    && useradd --system --uid 10001 --gid medic --home-dir /var/lib/medic \
       --shell /usr/sbin/nologin medic \
    && install -d -o medic -g medic -m 0750 /var/lib/medic \
    && install -d -m 0755 /etc/medic
COPY --from=build /opt/medic /opt/medic
COPY deploy/medic.yml /etc/medic/medic.yml
# Listens on all interfaces, so server.auth is required: the example config reads the
# bearer token from /run/secrets/medic/token (a Docker or Kubernetes secret).
ENV PATH=/opt/medic/bin:$PATH \
    MEDIC_CONFIG=/etc/medic/medic.yml \
    MEDIC_DATA_DIR=/var/lib/medic \
    MEDIC_LISTEN=0.0.0.0:9847 \
    PYTHONUNBUFFERED=1
USER 10001:10001
VOLUME ["/var/lib/medic"]
EXPOSE 9847
# python, not curl: the slim image has no curl, and medic's own interpreter is right here.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9847/-/healthy', timeout=2).status != 200)"]
ENTRYPOINT ["medic", "run"]
