# The hitline image: CLI, Celery workers and Flower (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HITLINE_DATA_DIR=/data

WORKDIR /app
# .dockerignore keeps tests, virtualenvs, data and secrets out of the build context
COPY . .
RUN pip install . \
 && useradd --create-home --uid 10001 --user-group hitline \
 && mkdir -p /data \
 && chown hitline:hitline /data

USER hitline
VOLUME ["/data"]
CMD ["hitline", "--help"]
