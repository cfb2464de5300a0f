from django.apps import AppConfig


class ReindexerConfig(AppConfig):
    name = "reindexer"
    verbose_name = "Reindexer"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from reindexer import admin_alerts  # noqa: F401 - registers the webhooks' admin
        from reindexer.alerts import signals

        signals.connect()
