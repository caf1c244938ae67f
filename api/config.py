"""Routes for the configuration: the whole document, configKV, ckpt and log settings."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, put
from loguru import logger

from api.errors import ApiError
from api.responses import json_response, read_json, services_of
from mmab_metrics.config import Change, ConfigError, apply_kv, apply_typed, section

_LOG_KEYS = ("level", "maxSizeMB", "maxBackups", "fileName")


def _update(request: Request[Any, Any, Any], change: Any) -> Change:
    try:
        return services_of(request).config.update(change)
    except ConfigError as exc:
        logger.bind(key=exc.key).info("configuration change rejected: {}", exc.message)
        raise ApiError(400, exc.message, field=exc.key) from None


def _restart_headers(result: Change) -> dict[str, str]:
    if not result.restart_required:
        return {}
    return {"X-Restart-Required": ",".join(result.restart_required)}


@get("/api/v1/config", sync_to_thread=False)
def get_config(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(services_of(request).config.document())


@put("/api/v1/configKV")
async def put_config_kv(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("kvMap") is None:
        raise ApiError(
            400,
            'missing `kvMap`: expected {"kvMap": {"<dotted.key>": "<value>"}}',
            field="kvMap",
        )
    kv_map = body["kvMap"]
    result = _update(request, lambda values: apply_kv(values, kv_map))
    document = services_of(request).config.document()
    return json_response(document, headers=_restart_headers(result))


@put("/api/v1/ckptConfig")
async def put_ckpt_config(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await read_json(request)
    _update(request, lambda values: apply_typed(values, "ckpt", body))
    return json_response(section(services_of(request).config.values, "ckpt"))


def _log_config(request: Request[Any, Any, Any]) -> dict[str, Any]:
    values = services_of(request).config.values
    return {name: values[f"log.{name}"] for name in _LOG_KEYS}


@get("/api/v1/log/config", sync_to_thread=False)
def get_log_config(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(_log_config(request))


@put("/api/v1/log/config")
async def put_log_config(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await read_json(request)
    _update(request, lambda values: apply_typed(values, "log", body))
    return json_response(_log_config(request))


ROUTES = [get_config, put_config_kv, put_ckpt_config, get_log_config, put_log_config]
