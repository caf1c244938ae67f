"""Who may call what: tokens, loopback, Cognito bearer tokens, and the settings."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from api.app import create_asgi
from api.tokens import GRACE_NS, write_token
from mmab_metrics.timecodec import parse_time
from tests.conftest import ServerProcess, credential_headers

NOW = "2025-03-16T12:00:00Z"
NOW_S = parse_time(NOW) // 1_000_000_000
POOL = "us-west-2_TestPool"
CLIENT = "client-123"
NODE = {"id": "node-1", "hostName": "h"}


def call(
    app, method, path, *, client=("10.1.2.3", 40000), headers=None, json_body=None
):
    """Send one request through the real app from a chosen socket address."""

    async def run():
        transport = httpx.ASGITransport(
            app=create_asgi(app.services, schedule=False), client=client
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="http://server"
        ) as http:
            return await http.request(
                method, path, headers=headers or {}, json=json_body
            )

    return asyncio.run(run())


@pytest.fixture
def tokens(app):
    return credential_headers(app.services.data_dir)


def test_token_files_are_private(app):
    for name in ("agent.token", "admin.token"):
        mode = (app.services.data_dir / name).stat().st_mode & 0o777
        assert mode == 0o600


def test_reads_open_without_cognito(app):
    response = call(app, "GET", "/api/v1/config")
    assert response.status_code == 200


def test_admin_change_needs_token_off_loopback(app, tokens):
    body = {"kvMap": {"node.ttl": "6m"}}
    denied = call(app, "PUT", "/api/v1/configKV", json_body=body)
    assert denied.status_code == 401
    assert denied.headers["WWW-Authenticate"].startswith("AdminToken")
    assert denied.json()["statusCode"] == 401
    assert app.services.config.get("node.ttl") == 5 * 60 * 10**9
    allowed = call(
        app,
        "PUT",
        "/api/v1/configKV",
        json_body=body,
        headers={"X-Admin-Token": tokens["X-Admin-Token"]},
    )
    assert allowed.status_code == 200


def test_forwarded_for_does_not_make_loopback(app):
    response = call(
        app,
        "PUT",
        "/api/v1/configKV",
        json_body={"kvMap": {"node.ttl": "6m"}},
        headers={"X-Forwarded-For": "127.0.0.1"},
    )
    assert response.status_code == 401


def test_loopback_may_change_settings(app):
    response = call(
        app,
        "PUT",
        "/api/v1/configKV",
        client=("127.0.0.1", 40000),
        json_body={"kvMap": {"node.ttl": "6m"}},
    )
    assert response.status_code == 200


def test_agent_token_is_not_admin(app, tokens):
    response = call(
        app,
        "PUT",
        "/api/v1/configKV",
        json_body={"kvMap": {"node.ttl": "6m"}},
        headers={"X-Agent-Token": tokens["X-Agent-Token"]},
    )
    assert response.status_code == 403


def test_agent_write_needs_agent_token(app, tokens):
    missing = call(app, "POST", "/api/v1/node", client=("127.0.0.1", 1), json_body=NODE)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("AgentToken")
    wrong = call(
        app, "POST", "/api/v1/node", json_body=NODE, headers={"X-Agent-Token": "nope"}
    )
    assert wrong.status_code == 401
    admin = call(
        app,
        "POST",
        "/api/v1/node",
        json_body=NODE,
        headers={"X-Admin-Token": tokens["X-Admin-Token"]},
    )
    assert admin.status_code == 403
    assert app.services.nodes.get("node-1") is None
    agent = call(
        app,
        "POST",
        "/api/v1/node",
        json_body=NODE,
        headers={"X-Agent-Token": tokens["X-Agent-Token"]},
    )
    assert agent.status_code == 200


def test_credentials_before_route(app):
    remote = call(app, "POST", "/api/v1/no-such-route", json_body={})
    assert remote.status_code == 401
    local = call(
        app, "POST", "/api/v1/no-such-route", client=("127.0.0.1", 1), json_body={}
    )
    assert local.status_code == 404


def test_rotated_agent_token_keeps_old_one_ten_minutes(app, tokens):
    old = tokens["X-Agent-Token"]
    new = write_token(app.services.data_dir / "agent.token")
    app.sweep()
    start = app.clock.now_ns()
    for token, expected in ((old, 200), (new, 200)):
        response = call(
            app,
            "POST",
            "/api/v1/node",
            json_body=NODE,
            headers={"X-Agent-Token": token},
        )
        assert response.status_code == expected
    app.clock.set(start + GRACE_NS - 1)
    response = call(
        app, "POST", "/api/v1/node", json_body=NODE, headers={"X-Agent-Token": old}
    )
    assert response.status_code == 200
    app.clock.set(start + GRACE_NS)
    response = call(
        app, "POST", "/api/v1/node", json_body=NODE, headers={"X-Agent-Token": old}
    )
    assert response.status_code == 401


def test_tokens_never_logged(app, tokens):
    call(
        app,
        "POST",
        "/api/v1/node",
        json_body=NODE,
        headers={"X-Agent-Token": "secret-x"},
    )
    call(app, "POST", "/api/v1/node", json_body=NODE, headers=tokens)
    logs = app.services.data_dir / "logs"
    text = "".join(p.read_text() for p in logs.iterdir())
    assert tokens["X-Agent-Token"] not in text
    assert tokens["X-Admin-Token"] not in text
    assert "secret-x" not in text


# ----------------------------------------------------------- Cognito pool --


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def pool() -> Iterator[dict]:
    """A JWKS of a key pair made here, served on 127.0.0.1."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "RSA",
                "kid": "key-1",
                "alg": "RS256",
                "use": "sig",
                "n": _b64(numbers.n),
                "e": _b64(numbers.e),
            }
        ]
    }
    body = json.dumps(jwks).encode()
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {
        "key": key,
        "other": other,
        "url": f"http://127.0.0.1:{server.server_address[1]}/jwks.json",
        "hits": hits,
    }
    server.shutdown()


def token(pool, *, groups=("admin",), key=None, kid="key-1", alg="RS256", **claims):
    payload = {
        "iss": f"https://cognito-idp.us-west-2.amazonaws.com/{POOL}",
        "token_use": "id",
        "aud": CLIENT,
        "cognito:username": "alice",
        "cognito:groups": list(groups),
        "iat": NOW_S - 10,
        "nbf": NOW_S - 10,
        "exp": NOW_S + 3600,
        **claims,
    }
    return jwt.encode(payload, key or pool["key"], algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def cognito_server(tmp_path_factory, pool) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("cognito"), now=NOW).start()
    with server.client() as http:
        response = http.put(
            "/api/v1/configKV",
            json={
                "kvMap": {
                    "security.cognito.userPoolID": POOL,
                    "security.cognito.clientID": CLIENT,
                    "security.cognito.jwksURL": pool["url"],
                    "security.cognito.enabled": "true",
                }
            },
        )
        assert response.status_code == 200, response.text
    yield server
    server.stop()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_cognito_read_needs_token(cognito_server):
    with cognito_server.client(auth=False) as http:
        response = http.get("/api/v1/config")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_cognito_health_stays_open(cognito_server):
    with cognito_server.client(auth=False) as http:
        assert http.get("/health").status_code == 200


def test_cognito_user_reads_but_cannot_change(cognito_server, pool):
    user = bearer(token(pool, groups=("readers",)))
    with cognito_server.client(auth=False) as http:
        assert http.get("/api/v1/config", headers=user).status_code == 200
        change = http.put(
            "/api/v1/configKV", headers=user, json={"kvMap": {"node.ttl": "6m"}}
        )
        assert change.status_code == 403


def test_cognito_admin_changes(cognito_server, pool):
    admin = bearer(token(pool))
    with cognito_server.client(auth=False) as http:
        change = http.put(
            "/api/v1/configKV", headers=admin, json={"kvMap": {"node.ttl": "7m"}}
        )
        assert change.status_code == 200
        assert change.json()["node"]["ttl"] == "7m0s"


def test_cognito_access_token_accepted(cognito_server, pool):
    access = token(pool, token_use="access", client_id=CLIENT, aud=None)
    with cognito_server.client(auth=False) as http:
        assert http.get("/api/v1/config", headers=bearer(access)).status_code == 200


def _tampered(pool) -> str:
    head, payload, signature = token(pool, groups=("readers",)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["cognito:groups"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


def _unsigned(pool) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"key-1"}').rstrip(b"=")
    good = token(pool).split(".")[1]
    return f"{header.decode()}.{good}."


def _hs256_with_public_key(pool) -> str:
    from cryptography.hazmat.primitives import serialization

    public = (
        pool["key"]
        .public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"key-1","typ":"JWT"}')
    body = token(pool).split(".")[1]
    import hashlib
    import hmac

    signing = header.rstrip(b"=") + b"." + body.encode()
    mac = hmac.new(public, signing, hashlib.sha256).digest()
    return signing.decode() + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


BAD_TOKENS = {
    "expired": lambda p: token(p, exp=NOW_S - 61, iat=NOW_S - 7200, nbf=NOW_S - 7200),
    "not yet valid": lambda p: token(p, nbf=NOW_S + 61),
    "wrong key": lambda p: token(p, key=p["other"]),
    "unknown key id": lambda p: token(p, kid="key-9"),
    "wrong issuer": lambda p: token(
        p, iss="https://cognito-idp.us-west-2.amazonaws.com/x"
    ),
    "wrong audience": lambda p: token(p, aud="another-client"),
    "wrong token use": lambda p: token(p, token_use="refresh"),
    "alg none": _unsigned,
    "hs256 with public key": _hs256_with_public_key,
    "tampered payload": _tampered,
    "garbage": lambda p: "not-a-jwt",
}


@pytest.mark.parametrize("name", list(BAD_TOKENS))
def test_cognito_bad_token_rejected(cognito_server, pool, name):
    value = BAD_TOKENS[name](pool)
    with cognito_server.client(auth=False) as http:
        read = http.get("/api/v1/config", headers=bearer(value))
        change = http.put(
            "/api/v1/configKV",
            headers=bearer(value),
            json={"kvMap": {"node.ttl": "9m"}},
        )
        assert read.status_code == 401
        assert change.status_code == 401
        assert value not in read.text
    stored = json.loads((cognito_server.data_dir / "config.json").read_text())
    assert stored["node"]["ttl"] != "9m0s"


def test_cognito_agents_keep_their_token(cognito_server):
    with cognito_server.client() as http:
        response = http.post("/api/v1/node", json=NODE)
    assert response.status_code == 200


# ---------------------------------------------------------- the settings --


def test_cognito_settings_round_trip(server, http):
    response = http.put(
        "/api/v1/security/cognito",
        json={
            "userPoolID": POOL,
            "region": "us-west-2",
            "clientID": CLIENT,
            "adminGroups": ["admin", "ops"],
            "accessKey": "AKIAEXAMPLE",
            "secretKey": "very-secret-key",
        },
    )
    assert response.status_code == 200
    assert response.json() == {
        "enabled": False,
        "region": "us-west-2",
        "userPoolID": POOL,
        "identityPoolID": "",
        "clientID": CLIENT,
        "adminGroups": ["admin", "ops"],
        "hasCredentials": True,
    }
    assert "very-secret-key" not in response.text
    path = server.data_dir / "cognito-credentials.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert "very-secret-key" not in http.get("/mmab.log").text
    assert http.delete("/api/v1/security/cognito").status_code == 204
    assert not path.exists()
    assert http.get("/api/v1/security/cognito").json()["hasCredentials"] is False


def test_cognito_region_must_match_pool(http):
    response = http.put(
        "/api/v1/security/cognito", json={"userPoolID": POOL, "region": "eu-west-1"}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "region"
    assert http.get("/api/v1/security/cognito").json()["userPoolID"] == ""


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmab_metrics.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def test_cognito_off_needs_stopped_server(server, http):
    http.put("/api/v1/configKV", json={"kvMap": {"security.cognito.enabled": "true"}})
    running = run_cli("cognito-off", "--data-dir", str(server.data_dir))
    assert running.returncode == 1
    assert "is running" in running.stderr
    server.stop()
    stopped = run_cli("cognito-off", "--data-dir", str(server.data_dir))
    assert stopped.returncode == 0
    stored = json.loads((server.data_dir / "config.json").read_text())
    assert stored["security"]["cognito"]["enabled"] is False


def test_rotate_agent_token_command(server):
    before = (server.data_dir / "agent.token").read_text()
    result = run_cli("rotate-agent-token", "--data-dir", str(server.data_dir))
    assert result.returncode == 0
    after = (server.data_dir / "agent.token").read_text()
    assert after != before
    assert Path(server.data_dir / "agent.token").stat().st_mode & 0o777 == 0o600


def test_point_cap_names_limit_and_interval(app):
    app.client.put(
        "/api/v1/configKV", json={"kvMap": {"security.limits.maxPoints": "2"}}
    )
    points = [{"time": f"2025-03-16T10:0{i}:00Z", "value": i} for i in range(5)]
    stored = app.client.post(
        "/api/v1/metricValue/queue-q1/jobSubmitted", json={"points": points}
    )
    assert stored.status_code == 200
    params = {
        "interval": "1m",
        "start": "2025-03-16T10:00:00Z",
        "end": "2025-03-16T10:05:00Z",
    }
    response = app.client.get(
        "/api/v1/metricValue/queue-q1/jobSubmitted", params=params
    )
    assert response.status_code == 400
    error = response.json()
    assert error["limit"] == "security.limits.maxPoints"
    assert error["suggestedInterval"] == "3m0s"
    params["interval"] = error["suggestedInterval"]
    fits = app.client.get("/api/v1/metricValue/queue-q1/jobSubmitted", params=params)
    assert fits.status_code == 200
    assert len(fits.json()["points"]) <= 2


def test_jwks_refetched_at_most_once_a_minute(pool):
    from api.cognito import CognitoVerifier, TokenError
    from mmab_metrics.clock import Clock

    values = {
        "security.cognito.userPoolID": POOL,
        "security.cognito.clientID": CLIENT,
        "security.cognito.jwksURL": pool["url"].replace("jwks.json", "rate.json"),
    }
    clock = Clock(parse_time(NOW), frozen=True)
    verifier = CognitoVerifier(lambda: values, clock)

    def fetches() -> int:
        return sum(path == "/rate.json" for path in pool["hits"])

    assert verifier.verify(token(pool)).username == "alice"
    assert fetches() == 1
    for _ in range(3):
        with pytest.raises(TokenError):
            verifier.verify(token(pool, kid="key-unknown"))
    assert fetches() == 1
    clock.advance(60 * 1_000_000_000)
    with pytest.raises(TokenError):
        verifier.verify(token(pool, kid="key-unknown"))
    assert fetches() == 2
    assert verifier.verify(token(pool)).username == "alice"
    assert fetches() == 2


def test_requests_past_max_in_flight_get_503(app, tokens):
    app.client.put(
        "/api/v1/configKV", json={"kvMap": {"security.limits.maxInFlight": "1"}}
    )
    app.client.post("/api/v1/node", json=NODE)
    asgi = create_asgi(app.services, schedule=False)

    async def run():
        release = asyncio.Event()

        async def slow_body():
            yield b"first line\n"
            await release.wait()
            yield b"last line\n"

        transport = httpx.ASGITransport(app=asgi, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://server"
        ) as http:
            upload = asyncio.create_task(
                http.post(
                    "/nodes/node-1/var/log/slow.log",
                    content=slow_body(),
                    headers=tokens,
                )
            )
            await asyncio.sleep(0.05)
            busy = await http.get("/health")
            release.set()
            return busy, await upload

    busy, upload = asyncio.run(run())
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert busy.json()["statusCode"] == 503
    assert upload.status_code == 204


def test_dashboard_files_are_public(cognito_server):
    web = cognito_server.data_dir / "mmabWeb"
    (web / "assets").mkdir(parents=True, exist_ok=True)
    (web / "index.html").write_text("<html>dashboard</html>")
    (web / "assets" / "app.js").write_text("console.log('app')")
    (cognito_server.data_dir / "outside.txt").write_text("SECRET-3")
    with cognito_server.client(auth=False) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.text == "<html>dashboard</html>"
        assert page.headers["content-type"].startswith("text/html")
        script = client.get("/assets/app.js")
        assert script.status_code == 200
        assert client.get("/assets/missing.js").status_code == 404
        assert client.get("/schema/openapi.json").status_code == 200
        assert client.get("/mmab.log").status_code == 401
        assert client.get("/api/v1/job").status_code == 401
    url = httpx.URL(cognito_server.url)
    for target in (
        "/..%2foutside.txt",
        "/assets/../../outside.txt",
        "/%2e%2e/outside.txt",
    ):
        connection = http.client.HTTPConnection(url.host, url.port, timeout=30)
        try:
            connection.request("GET", target)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 404
        assert b"SECRET-3" not in body


AGENT_ROUTES = [
    ("POST", "/api/v1/node"),
    ("DELETE", "/api/v1/node/node-9"),
    ("POST", "/nodes/node-9/var/log/a.log"),
    ("PUT", "/nodes/node-9/var/log/a.log"),
    ("POST", "/api/v1/job/job-9/events"),
    ("POST", "/api/v1/metricValue/queue-a/jobSubmitted"),
    ("POST", "/api/v1/metricValue"),
]
READ_ROUTES = [
    ("GET", "/api/v1/config"),
    ("GET", "/api/v1/log/config"),
    ("GET", "/api/v1/node"),
    ("GET", "/api/v1/nodes/node-9/files"),
    ("GET", "/api/v1/job"),
    ("GET", "/api/v1/job/job-9"),
    ("GET", "/api/v1/metric"),
    ("GET", "/api/v1/metricValue/queue-a/jobSubmitted"),
    ("GET", "/api/v1/metrics/summary"),
    ("GET", "/api/v1/security/cognito"),
    ("GET", "/mmab.log"),
    ("GET", "/mmab-access.log"),
    ("GET", "/nodes/node-9/var/log/a.log"),
]
ADMIN_ROUTES = [
    ("PUT", "/api/v1/configKV"),
    ("PUT", "/api/v1/ckptConfig"),
    ("PUT", "/api/v1/log/config"),
    ("PUT", "/api/v1/metricDef/metricDef-custom"),
    ("PUT", "/api/v1/security/cognito"),
    ("DELETE", "/api/v1/security/cognito"),
    ("POST", "/api/v1/metrics/rollup"),
]


@pytest.mark.parametrize(("method", "path"), AGENT_ROUTES)
def test_route_table_agent(app, tokens, method, path):
    for headers in ({}, {"X-Admin-Token": tokens["X-Admin-Token"]}):
        response = call(app, method, path, headers=headers)
        assert response.status_code == (403 if headers else 401), (method, path)
    allowed = call(
        app, method, path, headers={"X-Agent-Token": tokens["X-Agent-Token"]}
    )
    assert allowed.status_code not in (401, 403)
    assert allowed.status_code < 500


@pytest.mark.parametrize(("method", "path"), READ_ROUTES)
def test_route_table_read(app, method, path):
    response = call(app, method, path)
    assert response.status_code in (200, 404)
    assert response.headers["content-type"].startswith(("application/json", "text/"))


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_route_table_admin(app, tokens, method, path):
    assert call(app, method, path, json_body={}).status_code == 401
    agent = call(
        app,
        method,
        path,
        json_body={},
        headers={"X-Agent-Token": tokens["X-Agent-Token"]},
    )
    assert agent.status_code == 403
    admin = call(
        app,
        method,
        path,
        json_body={},
        headers={"X-Admin-Token": tokens["X-Admin-Token"]},
    )
    assert admin.status_code not in (401, 403)
    assert admin.status_code < 500
