"""Credentials never reach a result, a log or a message: :func:`redact` masks them in any text.

Masked: the password of every URL that carries one (``postgresql://user:PASSWORD@host/db``, also
inside a longer text such as a command line or an exception message), and the value of every
``password=...``/``password: ...`` style setting (libpq keyword strings, query parameters such as
``?sslpassword=``, ``PGPASSWORD=`` in an environment dump). Provenance, the command line's error
path, the runner's and the worker's messages all go through it.
"""
from __future__ import annotations

import re

MASK = "***"

# scheme://user:PASSWORD@ — the password runs to the last "@" of the word, so an unencoded "@" in it
# is masked too; a URL without a password (scheme://user@host) is left alone.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)(?P<secret>[^\s'\"]*)@")
_SETTING = re.compile(r"(?i)(?P<head>\b[\w-]*(?:password|passwd|pwd)['\"]?\s*[=:]\s*['\"]?)(?P<secret>[^\s'\"&;,]+)")


def redact(text: str) -> str:
    """``text`` with every credential replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@" if m["secret"] else m[0], text)
    return _SETTING.sub(lambda m: m["head"] + MASK, text)

