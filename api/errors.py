"""Errors as JSON `{"statusCode": N, "message": "..."}`, and request body reading.

Domain and storage errors know nothing of HTTP; handlers turn them into
`ApiError`, and the exception handlers here are the only place that renders
an error response.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from loguru import logger

JSON = "application/json"
_JSON_TYPES = ("application/json", "application/problem+json")
# A JSON escape of a UTF-16 surrogate code unit, paired or not.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# Deepest nesting of arrays and objects accepted in a JSON body. Job events
# keep unknown fields as sent, and canonicalising, storing and re-reading
# them recurses once or twice per level, so this stays far below Python's
# recursion limit (1000) at any stack depth a request runs at.
MAX_JSON_DEPTH = 64


class ApiError(Exception):
    """An error response: status, message, and detail fields such as `field`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **detail: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.detail = {k: v for k, v in detail.items() if v is not None}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **detail: Any
) -> Response[bytes]:
    body = {"statusCode": status, "message": message, **detail}
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=JSON,
        headers=headers or {},
    )


def handle_api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    return error_response(exc.status, exc.message, exc.headers, **exc.detail)


def handle_http_exception(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[bytes]:
    status = exc.status_code
    if status == 404:
        message = f"not found: {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    headers = dict(exc.headers or {})
    return error_response(status, message, headers)


def handle_unexpected(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[bytes]:
    logger.opt(exception=exc).bind(method=request.method, path=request.url.path).error(
        "request failed"
    )
    return error_response(
        HTTP_500_INTERNAL_SERVER_ERROR, "internal server error; see the server log"
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}


async def read_body(
    request: Request[Any, Any, Any], limit: int, limit_name: str
) -> bytes:
    """Read the request body, rejecting it with 413 past `limit` bytes."""
    declared = request.headers.get("content-length")
    too_large = ApiError(
        413,
        f"request body too large: the limit is {limit} bytes (`{limit_name}`)",
        limit=limit_name,
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def parse_json(body: bytes, content_type: str | None) -> Any:
    """Decode a JSON body strictly: no NaN, no Infinity, no numbers out of range,
    no nesting deeper than MAX_JSON_DEPTH.

    Strings with an unpaired UTF-16 surrogate are rejected too, because they
    cannot be encoded as UTF-8 into a response, a log or `config.json`.
    """
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in _JSON_TYPES and media != "*/*":
            raise ApiError(
                415,
                f"unsupported content type {content_type!r}: send application/json",
            )
    if not body.strip():
        raise ApiError(
            400, "missing request body: expected a JSON object", field="body"
        )
    try:
        value = json.loads(
            body, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"invalid JSON body: {exc}", field="body") from None
    if _too_deep(body, value):
        raise ApiError(
            400,
            f"invalid JSON body: arrays and objects nested deeper than "
            f"{MAX_JSON_DEPTH} levels",
            field="body",
        )
    if _may_contain_surrogates(body) and _contains_surrogate(value):
        raise ApiError(
            400,
            "invalid JSON body: a string contains an unpaired UTF-16 surrogate, "
            "which is not valid Unicode text",
            field="body",
        )
    return value


def _too_deep(body: bytes, value: Any) -> bool:
    """Tell whether `value` nests arrays and objects deeper than MAX_JSON_DEPTH.

    A body with at most MAX_JSON_DEPTH brackets cannot be that deep, so the
    walk over the decoded value runs only for larger bodies.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list)
        )
    return False


def _may_contain_surrogates(body: bytes) -> bool:
    """Tell whether decoded strings of `body` could contain an unpaired surrogate.

    json.loads turns a `\\ud800` escape without its pair, and surrogates
    encoded in the bytes, into strings that cannot be encoded as UTF-8 again,
    so storing or echoing them fails. This scan of the bytes is fast, and the
    slower walk over the decoded value runs only when it returns True.
    """
    if _SURROGATE_ESCAPE.search(body):
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _contains_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
