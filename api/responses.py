"""Small helpers shared by the route modules."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response

from api.errors import JSON, ApiError, parse_json, read_body
from api.services import Services
from mmab_metrics.timecodec import TimeFormatError, parse_query_time

_MB = 1024 * 1024


def services_of(request: Request[Any, Any, Any]) -> Services:
    return request.app.state.services


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(content),
        status_code=status,
        media_type=JSON,
        headers=headers or {},
    )


def raw_json_response(
    text: str | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    body = text.encode() if isinstance(text, str) else text
    return Response(
        content=body, status_code=status, media_type=JSON, headers=headers or {}
    )


async def read_json(request: Request[Any, Any, Any]) -> Any:
    """Read and decode a JSON body within `security.limits.maxBodyMB`."""
    limit_mb = services_of(request).config.get("security.limits.maxBodyMB")
    body = await read_body(request, limit_mb * _MB, "security.limits.maxBodyMB")
    return parse_json(body, request.headers.get("content-type"))


def query_value(request: Request[Any, Any, Any], name: str) -> str | None:
    """Return a query parameter, rejecting it when it is given more than once."""
    values = request.query_params.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(
            400, f"query parameter `{name}` is given more than once", field=name
        )
    return values[0]


def query_time(request: Request[Any, Any, Any], name: str) -> int | None:
    """Return a timestamp query parameter as nanoseconds, or None when absent."""
    text = query_value(request, name)
    if text is None:
        return None
    try:
        return parse_query_time(text)
    except TimeFormatError as exc:
        raise ApiError(
            400, f"invalid `{name}`: {exc}", field=name, value=text
        ) from None


def query_int(request: Request[Any, Any, Any], name: str) -> int | None:
    text = query_value(request, name)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ApiError(
            400,
            f"invalid `{name}` {text!r}: expected a whole number from 0 to 999999999999",
            field=name,
            value=text,
        )
    return int(text)


def query_bool(request: Request[Any, Any, Any], name: str) -> bool:
    text = query_value(request, name)
    if text is None or text in ("false", "0"):
        return False
    if text in ("true", "1", ""):
        return True
    raise ApiError(
        400,
        f"invalid `{name}` {text!r}: expected true or false",
        field=name,
        value=text,
    )
