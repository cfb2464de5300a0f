from django.apps import AppConfig


class ReindexerConfig(AppConfig):
    name = "reindexer"
    verbose_name = "Reindexer"
    default_auto_field = "django.db.models.BigAutoField"
