"""Routes for the Cognito settings, and the file of their AWS credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from litestar import Request, Response, delete, get, put
from loguru import logger

from api.cognito import region_of
from api.errors import ApiError
from api.responses import json_response, read_json, services_of
from mmab_metrics.config import ConfigError, apply_kv

CREDENTIALS_FILE = "cognito-credentials.json"
_FIELDS = {
    "enabled": "security.cognito.enabled",
    "userPoolID": "security.cognito.userPoolID",
    "identityPoolID": "security.cognito.identityPoolID",
    "clientID": "security.cognito.clientID",
    "adminGroups": "security.cognito.adminGroups",
}
_CREDENTIAL_FIELDS = ("accessKey", "secretKey", "token")


def credentials_path(data_dir: Path) -> Path:
    return data_dir / CREDENTIALS_FILE


def _write_credentials(path: Path, credentials: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(credentials, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _settings(request: Request[Any, Any, Any]) -> dict[str, Any]:
    services = services_of(request)
    values = services.config.values
    pool = values["security.cognito.userPoolID"]
    return {
        "enabled": values["security.cognito.enabled"],
        "region": region_of(pool),
        "userPoolID": pool,
        "identityPoolID": values["security.cognito.identityPoolID"],
        "clientID": values["security.cognito.clientID"],
        "adminGroups": list(values["security.cognito.adminGroups"]),
        "hasCredentials": credentials_path(services.data_dir).exists(),
    }


@get("/api/v1/security/cognito", sync_to_thread=False)
def get_cognito(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(_settings(request))


def _as_text(name: str, value: Any) -> str:
    """Turn a typed field into the string form that configKV parses."""
    if name == "enabled":
        if not isinstance(value, bool):
            raise ApiError(400, f"invalid `{name}`: expected true or false", field=name)
        return "true" if value else "false"
    if name == "adminGroups":
        if not isinstance(value, list) or not all(
            isinstance(g, str) and "," not in g for g in value
        ):
            raise ApiError(
                400, f"invalid `{name}`: expected a list of group names", field=name
            )
        return ",".join(value)
    if not isinstance(value, str):
        raise ApiError(400, f"invalid `{name}`: expected a string", field=name)
    return value


@put("/api/v1/security/cognito")
async def put_cognito(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid body: expected a JSON object", field="body")
    allowed = {*_FIELDS, "region", *_CREDENTIAL_FIELDS}
    for name in body:
        if name not in allowed:
            raise ApiError(400, f"unknown field `{name}`", field=name)
    kv = {_FIELDS[name]: _as_text(name, body[name]) for name in _FIELDS if name in body}
    pool = kv.get(
        "security.cognito.userPoolID",
        services.config.get("security.cognito.userPoolID"),
    )
    region = body.get("region")
    if region is not None and (
        not isinstance(region, str) or region != region_of(pool)
    ):
        raise ApiError(
            400,
            f"invalid `region` {region!r}: it must be the prefix of `userPoolID` "
            f"{pool!r} ({region_of(pool)!r})",
            field="region",
        )
    credentials = {name: body[name] for name in _CREDENTIAL_FIELDS if name in body}
    for name, value in credentials.items():
        if not isinstance(value, str) or not value:
            raise ApiError(
                400, f"invalid `{name}`: expected a non-empty string", field=name
            )
    if credentials and not {"accessKey", "secretKey"} <= set(credentials):
        raise ApiError(
            400, "`accessKey` and `secretKey` must be given together", field="accessKey"
        )
    try:
        services.config.update(lambda values: apply_kv(values, kv))
    except ConfigError as exc:
        raise ApiError(400, exc.message, field=exc.key) from None
    if credentials:
        _write_credentials(credentials_path(services.data_dir), credentials)
    logger.bind(
        enabled=services.config.get("security.cognito.enabled"),
        credentials="stored" if credentials else "unchanged",
    ).info("Cognito settings changed")
    return json_response(_settings(request))


@delete("/api/v1/security/cognito", status_code=204)
async def delete_cognito(request: Request[Any, Any, Any]) -> None:
    services = services_of(request)
    services.config.update(
        lambda values: apply_kv(values, {"security.cognito.enabled": "false"})
    )
    credentials_path(services.data_dir).unlink(missing_ok=True)
    logger.info("Cognito turned off and its credentials deleted")


ROUTES = [get_cognito, put_cognito, delete_cognito]
