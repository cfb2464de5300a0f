"""Times in the admin read as on the dashboard: 2026-01-02 14:30:00 UTC."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
