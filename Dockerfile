# Reindexer: one image for the web process (the default command) and the workers.
#
#   docker build -t reindexer .                                   # EXTRAS: pgvector by default
#   docker build -t reindexer --build-arg EXTRAS=pgvector,milvus,pdf .
#   docker run --rm --env-file reindexer.env reindexer python manage.py migrate --noinput
#   docker run -d --env-file reindexer.env -p 127.0.0.1:8000:8000 reindexer          # daphne
#   docker run -d --env-file reindexer.env --stop-timeout 120 reindexer \
#       python manage.py reindex_worker                                              # a worker
#
# See docs/deploy.md ("Containers") for a compose file.
FROM python:3.11-slim

# Extras of pyproject.toml: pgvector, milvus, pdf; minilm pins torch==2.13.0, which PyPI serves
# as a large CUDA build for Linux.
ARG EXTRAS=pgvector

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REINDEXER_DATA_DIR=/var/lib/reindexer

RUN groupadd --system reindexer \
    && useradd --system --gid reindexer --home-dir /var/lib/reindexer --no-create-home \
       --shell /usr/sbin/nologin reindexer

WORKDIR /app
COPY . .
# Editable: the settings find templates/ and static/ beside the package (BASE_DIR), in /app.
RUN pip install -e ".[${EXTRAS}]"

# The static files into $REINDEXER_DATA_DIR/staticfiles (whitenoise also serves them from the
# apps when a volume hides this copy). A throwaway key, so that no secret is written into the
# image; the real one comes from DJANGO_SECRET_KEY at run time.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && rm -f /var/lib/reindexer/secret_key \
    && chown -R reindexer:reindexer /var/lib/reindexer

USER reindexer
EXPOSE 8000
# SIGTERM (docker stop): daphne closes its connections; a worker finishes its batch and hands
# its job back, so give workers a stop timeout above one batch's duration.
STOPSIGNAL SIGTERM
CMD ["daphne", "--bind", "0.0.0.0", "--port", "8000", "--proxy-headers", "reindexer.asgi:application"]
