"""Format overrides (FORMAT_MODULE_PATH): the locale's formats win over settings.DATETIME_FORMAT."""
