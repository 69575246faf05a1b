"""Keep secrets out of uvicorn's access log: a logging filter that redacts them from the
request line it logs (``GET /path?query``).

Tokens belong in the ``Authorization`` header, which uvicorn never logs; a client may still put
one in the query string (``?token=...``). The filter replaces the value of every query parameter
whose name says it holds a secret (:data:`SECRET_PARAMS`, any case), and every configured token
wherever it appears in the line, with ``***``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlencode

ACCESS_LOGGER = "uvicorn.access"
SECRET_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "bearer",
        "auth",
        "authorization",
        "api_key",
        "apikey",
        "key",
        "secret",
        "password",
        "signature",
        "sig",
    }
)
MASK = "***"


def redact_path(path: str, tokens: Iterable[str] = ()) -> str:
    """``path`` (with its query string) with secrets masked."""
    for token in tokens:
        if token:
            path = path.replace(token, MASK).replace(quote(token, safe=""), MASK)
    base, sep, query = path.partition("?")
    if not sep:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k.lower() in SECRET_PARAMS for k, _ in pairs):
        return path
    masked = [(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs]
    return base + "?" + urlencode(masked, safe="*")


class RedactSecrets(logging.Filter):
    """Masks secrets in the path argument of uvicorn's access-log records."""

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        super().__init__()
        # longest first, so that a token containing another is masked whole
        self.tokens = sorted({t for t in tokens if t}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2], self.tokens), *args[3:])
        else:  # another format: mask the formatted message
            record.msg, record.args = _mask_all(record.getMessage(), self.tokens), None
        return True


def _mask_all(text: str, tokens: Iterable[str]) -> str:
    for token in tokens:
        text = text.replace(token, MASK)
    return re.sub(
        r"([?&](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=)[^&\s\"]*",
        r"\1" + MASK,
        text,
        flags=re.IGNORECASE,
    )


def install(tokens: Iterable[str]) -> None:
    """Attach the filter to uvicorn's access logger (replacing one installed before)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    for old in [f for f in logger.filters if isinstance(f, RedactSecrets)]:
        logger.removeFilter(old)
    logger.addFilter(RedactSecrets(tokens))
