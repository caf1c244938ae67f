"""Access control: each request is classified and its credentials checked
before routing, so a caller without the right learns nothing about paths.

| class  | routes                                      | Cognito off            | Cognito on            |
| ------ | ------------------------------------------- | ---------------------- | --------------------- |
| public | `GET /health`, the OpenAPI document, the    | anyone                 | anyone                |
|        | dashboard's static files                    |                        |                       |
| agent  | node registration and departure, node file  | agent token            | agent token           |
|        | uploads, job events, metric ingestion       |                        |                       |
| read   | every other `GET`                           | anyone                 | a valid pool token    |
| admin  | every other `PUT`, `POST`, `DELETE`         | loopback or admin token| a pool admin          |

Missing or invalid credentials are 401 with `WWW-Authenticate`; valid ones
without the right are 403. A client is loopback by its socket address alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.cognito import CognitoVerifier, TokenError
from api.tokens import Tokens
from mmab_metrics.jobs import ID_PATTERN

PUBLIC, AGENT, READ, ADMIN = "public", "agent", "read", "admin"

_AGENT_ROUTES = (
    ("POST", re.compile(r"/api/v1/node/?")),
    ("DELETE", re.compile(r"/api/v1/node/.+")),
    ("POST", re.compile(r"/nodes/.+")),
    ("PUT", re.compile(r"/nodes/.+")),
    ("POST", re.compile(r"/api/v1/job/[^/]+/events/?")),
    ("POST", re.compile(r"/api/v1/metricValue(/.*)?")),
)
_PUBLIC_PATHS = re.compile(r"/health|/schema(/.*)?")


def classify(method: str, path: str) -> str:
    """Return the access class of a request."""
    if method in ("GET", "HEAD") and _PUBLIC_PATHS.fullmatch(path):
        return PUBLIC
    # The dashboard's own files are public: the page itself signs users in.
    if (
        method in ("GET", "HEAD")
        and not path.startswith(("/api/", "/nodes/"))
        and not path.endswith(".log")
    ):
        return PUBLIC
    for route_method, pattern in _AGENT_ROUTES:
        if method == route_method and pattern.fullmatch(path):
            return AGENT
    if method in ("GET", "HEAD", "OPTIONS"):
        return READ
    return ADMIN


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Decision:
    """The outcome of a check: `status` 0 lets the request through."""

    user: str
    status: int = 0
    message: str = ""
    challenge: str = ""


def _header(headers: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


def _node_user(headers: Mapping[bytes, bytes]) -> str:
    node_id = _header(headers, b"x-node-id")
    if node_id is None:
        return "agent:-"
    return f"agent:{node_id}" if ID_PATTERN.fullmatch(node_id) else "agent:?"


class Guard:
    def __init__(
        self,
        tokens: Tokens,
        cognito: CognitoVerifier,
        values: Any,
        now_ns: Any,
    ) -> None:
        self.tokens = tokens
        self.cognito = cognito
        self._values = values
        self._now_ns = now_ns

    def check(self, scope: Mapping[str, Any]) -> Decision:
        method = scope["method"]
        access = classify(method, scope["path"])
        headers = dict(scope.get("headers", ()))
        client = scope.get("client")
        loopback = is_loopback(client[0] if client else None)
        agent_token = _header(headers, b"x-agent-token")
        admin_token = _header(headers, b"x-admin-token")
        is_agent = self.tokens.is_agent(agent_token, self._now_ns())
        is_admin = self.tokens.is_admin(admin_token)
        cognito_on = bool(self._values()["security.cognito.enabled"])

        if access == PUBLIC:
            return Decision(self._plain_user(is_agent, is_admin, loopback, headers))
        if access == AGENT:
            if is_agent:
                return Decision(_node_user(headers))
            if is_admin or (agent_token is None and self._bearer(headers) is not None):
                return Decision("-", 403, "agent routes need the agent token", "")
            return Decision(
                "-",
                401,
                "missing or invalid agent token: send it in X-Agent-Token",
                'AgentToken realm="mmab-metrics"',
            )
        if cognito_on:
            return self._check_cognito(access, headers, is_agent or is_admin)
        if access == READ:
            return Decision(self._plain_user(is_agent, is_admin, loopback, headers))
        if is_admin:
            return Decision("admin-token")
        if loopback:
            return Decision("loopback")
        if is_agent:
            return Decision(
                _node_user(headers), 403, "the agent token cannot change settings"
            )
        return Decision(
            "-",
            401,
            "missing or invalid admin token: send it in X-Admin-Token, or call from "
            "the server's own host",
            'AdminToken realm="mmab-metrics"',
        )

    def _plain_user(
        self,
        is_agent: bool,
        is_admin: bool,
        loopback: bool,
        headers: Mapping[bytes, bytes],
    ) -> str:
        if is_admin:
            return "admin-token"
        if is_agent:
            return _node_user(headers)
        return "loopback" if loopback else "-"

    @staticmethod
    def _bearer(headers: Mapping[bytes, bytes]) -> str | None:
        value = _header(headers, b"authorization")
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _check_cognito(
        self, access: str, headers: Mapping[bytes, bytes], other_credential: bool
    ) -> Decision:
        challenge = 'Bearer realm="mmab-metrics"'
        token = self._bearer(headers)
        if token is None:
            if other_credential:
                return Decision(
                    "-", 403, "this route needs a Cognito token of the pool"
                )
            return Decision(
                "-", 401, "missing bearer token of the Cognito pool", challenge
            )
        try:
            identity = self.cognito.verify(token)
        except TokenError as exc:
            return Decision("-", 401, str(exc), challenge + ', error="invalid_token"')
        if access == ADMIN:
            admins = set(self._values()["security.cognito.adminGroups"])
            if not identity.groups & admins:
                return Decision(
                    identity.username, 403, "this route needs a member of adminGroups"
                )
        return Decision(identity.username)
