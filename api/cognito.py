"""Verification of Amazon Cognito tokens: RS256 JWTs signed by the pool's JWKS.

Expiry is checked against the server clock, not by PyJWT, so that a server
started with `--now` judges tokens at its own time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from loguru import logger

from mmab_metrics.clock import Clock

SKEW_NS = 60 * 1_000_000_000
REFETCH_NS = 60 * 1_000_000_000
FETCH_TIMEOUT_S = 5.0


class TokenError(ValueError):
    """A token that is missing, malformed, badly signed, expired or for another pool."""


@dataclass(frozen=True)
class Identity:
    username: str
    groups: frozenset[str]


def region_of(user_pool_id: str) -> str:
    """Return the region prefix of a pool id such as `us-west-2_AbCdEf`."""
    return user_pool_id.split("_", 1)[0] if "_" in user_pool_id else ""


def issuer_of(user_pool_id: str) -> str:
    return f"https://cognito-idp.{region_of(user_pool_id)}.amazonaws.com/{user_pool_id}"


def jwks_url_of(values: Mapping[str, Any]) -> str:
    explicit = values["security.cognito.jwksURL"]
    if explicit:
        return explicit
    return issuer_of(values["security.cognito.userPoolID"]) + "/.well-known/jwks.json"


class CognitoVerifier:
    """Checks bearer tokens against the configured pool, caching its JWKS."""

    def __init__(
        self,
        values: Callable[[], Mapping[str, Any]],
        clock: Clock,
        fetch: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self._values = values
        self._clock = clock
        self._fetch = fetch or _fetch_jwks
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._url = ""
        self._fetched_ns: int | None = None

    def _key(self, kid: str, url: str) -> Any:
        now = self._clock.now_ns()
        with self._lock:
            if url != self._url:
                self._keys, self._url, self._fetched_ns = {}, url, None
            key = self._keys.get(kid)
            due = self._fetched_ns is None or now - self._fetched_ns >= REFETCH_NS
            if key is not None or not due:
                return key
            self._fetched_ns = now
        try:
            document = self._fetch(url)
            keys = {
                item["kid"]: jwt.PyJWK(item, algorithm="RS256").key
                for item in document.get("keys", [])
                if isinstance(item, dict)
                and item.get("kid")
                and item.get("kty") == "RSA"
            }
        except (
            httpx.HTTPError,
            ValueError,
            KeyError,
            TypeError,
            jwt.PyJWKError,
        ) as exc:
            logger.bind(url=url, error=str(exc)).warning(
                "cannot fetch the Cognito JWKS"
            )
            return None
        with self._lock:
            self._keys = keys
            logger.bind(url=url, keys=len(keys)).info("fetched the Cognito JWKS")
            return keys.get(kid)

    def verify(self, token: str) -> Identity:
        values = self._values()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from None
        if header.get("alg") != "RS256":
            raise TokenError("token is not signed with RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token has no key id")
        key = self._key(kid, jwks_url_of(values))
        if key is None:
            raise TokenError("token is signed by a key the pool does not publish")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        self._check_claims(claims, values)
        groups = claims.get("cognito:groups") or []
        if not isinstance(groups, list):
            groups = []
        username = claims.get("cognito:username") or claims.get("username") or "?"
        return Identity(
            str(username), frozenset(g for g in groups if isinstance(g, str))
        )

    def _check_claims(self, claims: dict[str, Any], values: Mapping[str, Any]) -> None:
        now_s = self._clock.now_ns() / 1e9
        skew_s = SKEW_NS / 1e9
        if claims.get("iss") != issuer_of(values["security.cognito.userPoolID"]):
            raise TokenError("token is from another issuer")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenError("token has no expiry")
        if now_s > exp + skew_s:
            raise TokenError("token has expired")
        if (
            isinstance(nbf, int | float)
            and not isinstance(nbf, bool)
            and now_s < nbf - skew_s
        ):
            raise TokenError("token is not valid yet")
        use = claims.get("token_use")
        client = values["security.cognito.clientID"]
        if use == "id":
            audience = claims.get("aud")
            if audience != client and not (
                isinstance(audience, list) and client in audience
            ):
                raise TokenError("token is for another client")
        elif use == "access":
            if claims.get("client_id") != client:
                raise TokenError("token is for another client")
        else:
            raise TokenError("token is neither an id nor an access token")


def _fetch_jwks(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=FETCH_TIMEOUT_S, follow_redirects=False)
    response.raise_for_status()
    document = json.loads(response.content)
    if not isinstance(document, dict):
        raise ValueError("JWKS is not a JSON object")
    return document
