# llm-sse-proxy in a container: slim, non-root, a health check on /healthz.
#   docker build -t llm-sse-proxy .
#   docker run --init -p 8080:8080 llm-sse-proxy                    # the built-in offline mock
#   docker run --init -p 8080:8080 -v "$PWD/config.yaml:/home/proxy/config.yaml:ro" \
#              -e OPENAI_API_KEY -e PROXY_KEYS -e PROXY_TOKEN_SECRET llm-sse-proxy
# The proxy handles SIGTERM itself, even as PID 1 (tests/test_container.py): `docker stop` gives open
# streams server.shutdown_grace seconds, then ends them with a `shutdown` terminate. --init (tini) is
# only needed to reap the worker processes of --workers.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY proxy proxy
COPY adapters adapters
COPY mock_upstream mock_upstream
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 proxy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER proxy
WORKDIR /home/proxy
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["llm-sse-proxy"]
# All interfaces, so the published port reaches it: turn auth on (deploy/replicas.yaml shows how).
CMD ["--host", "0.0.0.0", "--port", "8080"]
