"""ASGI entry point (daphne): HTTP to Django (traced), websockets to the dashboard's consumers."""

from __future__ import annotations

import logging
import os
import socket

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reindexer.settings")

from django.core.asgi import get_asgi_application  # noqa: E402
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware  # noqa: E402

from reindexer import conf, telemetry  # noqa: E402

# Before the handler is built: the instrumentor adds its middleware to settings.MIDDLEWARE.
telemetry.instrument_django()
django_application = get_asgi_application()

# Consumers import models, so only once Django is set up.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402
from reindexer.alerts.dispatcher import start_dispatcher  # noqa: E402
from reindexer.progress import crosses_processes  # noqa: E402

logger = logging.getLogger(__name__)

application = ProtocolTypeRouter(
    {
        "http": OpenTelemetryMiddleware(django_application),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)


def _log_live_update_mode() -> None:
    layer = get_channel_layer()
    if crosses_processes(layer):
        logger.info(
            "live updates: %s carries the worker's progress across processes",
            type(layer).__name__,
        )
    else:
        logger.info(
            "live updates: in-memory channel layer (no REDIS_URL); it does not cross processes, "
            "so the web process relays progress by polling the database (dashboard.relay)"
        )


_log_live_update_mode()

# The web process sends alerts too, beside the workers' dispatchers (they share the outbox, and
# each delivery is claimed by one): a job whose only worker died is still reported stalled, and
# a Swap or Discard clicked here is announced without waiting for a worker.
if conf.get().web_alerts:
    start_dispatcher(f"web-{socket.gethostname()}-{os.getpid()}")
