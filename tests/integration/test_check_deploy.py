"""`manage.py check --deploy` passes with the HTTPS switch on, and warns without it."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

# Each of these is a deployment check the switch exists to satisfy.
SECURITY_WARNINGS = ["security.W004", "security.W008", "security.W012", "security.W016"]


def deploy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A production-like environment: a long random secret key, DEBUG off, its own data dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "REINDEXER_", "DJANGO_")) and k != "DATABASE_URL"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="reindexer.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="reindexer.example.org",
        REINDEXER_DATA_DIR=str(tmp_path / "data"),
        **extra,
    )
    return env


def check_deploy(manage: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*manage, "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("switch", ["REINDEXER_HTTPS", "DJANGO_SECURE"])
def test_check_deploy__passes_with_the_https_switch_on(
    manage: list[str], tmp_path: Path, switch: str
) -> None:
    result = check_deploy(manage, deploy_env(tmp_path, **{switch: "1"}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy__without_the_switch_reports_the_security_warnings(
    manage: list[str], tmp_path: Path
) -> None:
    result = check_deploy(manage, deploy_env(tmp_path))
    assert result.returncode != 0
    for warning in SECURITY_WARNINGS:
        assert warning in result.stderr


def test_check_deploy__with_the_switch_but_debug_on_still_fails(
    manage: list[str], tmp_path: Path
) -> None:
    result = check_deploy(manage, deploy_env(tmp_path, REINDEXER_HTTPS="1", DJANGO_DEBUG="1"))
    assert result.returncode != 0
    assert "security.W018" in result.stderr
