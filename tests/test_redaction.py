"""Credentials are masked wherever a command line, a URL or a setting is shown."""
from __future__ import annotations

import pytest

from harness.redaction import redact


@pytest.mark.parametrize("text,secret", [
    ("harness run erm --storage postgresql://u:SECRET@127.0.0.1:5432/db --out o", "SECRET"),
    ("mysql+pymysql://root:p@SECRET@db:3306/x", "p@SECRET"),  # an unencoded @ in the password
    ("cannot open storage 'postgresql://u:SECRET@h/d': connection refused", "SECRET"),
    ("host=h user=u password=SECRET dbname=d", "SECRET"),
    ("postgresql://h/db?sslpassword=SECRET&sslmode=require", "SECRET"),
    ("PGPASSWORD=SECRET harness worker", "SECRET"),
    ('{"password": "SECRET"}', "SECRET"),
])
def test_a_credential_is_masked(text, secret):
    out = redact(text)
    assert secret not in out and "***" in out


@pytest.mark.parametrize("text", [
    "postgresql://u@127.0.0.1:5432/db", "sqlite:///results/a.db", "results/run/optuna.journal",
    "https://example.org:8080/x", "FATAL: password authentication failed for user \"u\"",
])
def test_text_without_a_credential_is_unchanged(text):
    assert redact(text) == text
