"""Node liveness, departures and log file cleanup, in-process with the clock pinned."""

from __future__ import annotations

from mmab_metrics.durations import HOUR, MINUTE
from mmab_metrics.timecodec import format_time, parse_time

T0 = "2025-03-16T12:00:00Z"
TTL = 5 * MINUTE  # the default `node.ttl`
CLEAN = 12 * HOUR  # the default `node.cleanLogInterval`


def at(offset_ns: int) -> str:
    """Return T0 + `offset_ns` as RFC3339Nano."""
    return format_time(parse_time(T0) + offset_ns)


def register(app, node_id: str) -> None:
    response = app.client.post("/api/v1/node", json={"id": node_id})
    assert response.status_code == 200, response.text


def live(app) -> dict[str, dict]:
    return {row["id"]: row for row in app.client.get("/api/v1/node").json()}


def finished(app) -> dict[str, dict]:
    rows = app.client.get("/api/v1/node?finished=true").json()
    return {row["id"]: row for row in rows}


def set_config(app, key: str, value: str) -> None:
    response = app.client.put("/api/v1/configKV", json={"kvMap": {key: value}})
    assert response.status_code == 200, response.text


def upload(app, node_id: str, path: str, data: bytes) -> None:
    response = app.client.put(f"/nodes/{node_id}/{path}", content=data)
    assert response.status_code == 204, response.text


def files(app, node_id: str) -> list[str]:
    return app.client.get(f"/api/v1/nodes/{node_id}/files").json()


# Liveness by `node.ttl`


def test_heartbeat_is_receipt_time(app):
    app.set_now(at(1_500_000_123))
    register(app, "n1")
    assert live(app)["n1"]["lastHeartbeat"] == "2025-03-16T12:00:01.500000123Z"


def test_live_just_before_ttl(app):
    register(app, "n1")
    app.set_now(at(TTL - 1))
    app.sweep()
    assert "n1" in live(app)
    assert "n1" not in finished(app)


def test_finished_at_exactly_ttl(app):
    register(app, "n1")
    app.set_now(at(TTL))
    assert "n1" not in live(app)
    assert finished(app)["n1"]["finishedAt"] == at(TTL)


def test_finished_keeps_last_heartbeat(app):
    register(app, "n1")
    app.set_now(at(TTL + HOUR))
    row = finished(app)["n1"]
    assert row["lastHeartbeat"] == T0
    assert row["finishedAt"] == at(TTL)


def test_sweep_reports_ttl_finish(app):
    register(app, "n1")
    app.set_now(at(TTL - 1))
    assert app.sweep().nodes_finished == []
    app.set_now(at(TTL))
    assert app.sweep().nodes_finished == ["n1"]


def test_sweep_reports_finish_once(app):
    register(app, "n1")
    app.set_now(at(TTL))
    app.sweep()
    app.set_now(at(TTL + MINUTE))
    assert app.sweep().nodes_finished == []


def test_heartbeat_extends_life(app):
    register(app, "n1")
    app.set_now(at(4 * MINUTE))
    register(app, "n1")
    app.set_now(at(4 * MINUTE + TTL - 1))
    assert live(app)["n1"]["lastHeartbeat"] == at(4 * MINUTE)
    app.set_now(at(4 * MINUTE + TTL))
    assert finished(app)["n1"]["finishedAt"] == at(4 * MINUTE + TTL)


def test_heartbeat_revives_ttl_finished(app):
    register(app, "n1")
    app.set_now(at(HOUR))
    assert "n1" in finished(app)
    register(app, "n1")
    assert live(app)["n1"]["lastHeartbeat"] == at(HOUR)
    assert "n1" not in finished(app)


def test_ttl_decrease_at_once(app):
    register(app, "n1")
    app.set_now(at(2 * MINUTE))
    set_config(app, "node.ttl", "1m")
    assert "n1" not in live(app)
    assert finished(app)["n1"]["finishedAt"] == at(MINUTE)


def test_ttl_increase_at_once(app):
    register(app, "n1")
    app.set_now(at(7 * MINUTE))
    assert "n1" not in live(app)
    set_config(app, "node.ttl", "10m")
    assert "n1" in live(app)
    app.set_now(at(10 * MINUTE))
    assert finished(app)["n1"]["finishedAt"] == at(10 * MINUTE)


def test_ttl_zero_finishes_at_once(app):
    set_config(app, "node.ttl", "0s")
    register(app, "n1")
    assert "n1" not in live(app)
    assert finished(app)["n1"]["finishedAt"] == T0


# Departures


def test_left_node_finished_at_departure(app):
    register(app, "n1")
    app.set_now(at(MINUTE + 7))
    assert app.client.delete("/api/v1/node/n1").status_code == 204
    assert "n1" not in live(app)
    assert finished(app)["n1"]["finishedAt"] == at(MINUTE + 7)


def test_left_node_keeps_heartbeat(app):
    register(app, "n1")
    app.set_now(at(MINUTE))
    app.client.delete("/api/v1/node/n1")
    assert finished(app)["n1"]["lastHeartbeat"] == T0


def test_second_departure_keeps_first(app):
    register(app, "n1")
    app.set_now(at(MINUTE))
    app.client.delete("/api/v1/node/n1")
    app.set_now(at(2 * MINUTE))
    assert app.client.delete("/api/v1/node/n1").status_code == 204
    assert finished(app)["n1"]["finishedAt"] == at(MINUTE)


def test_departure_after_ttl_keeps_ttl(app):
    register(app, "n1")
    app.set_now(at(HOUR))
    assert app.client.delete("/api/v1/node/n1").status_code == 204
    assert finished(app)["n1"]["finishedAt"] == at(TTL)


def test_departure_survives_ttl_increase(app):
    register(app, "n1")
    app.set_now(at(MINUTE))
    app.client.delete("/api/v1/node/n1")
    set_config(app, "node.ttl", "1h")
    assert "n1" not in live(app)
    assert finished(app)["n1"]["finishedAt"] == at(MINUTE)


def test_sweep_reports_departure(app):
    register(app, "n1")
    app.set_now(at(MINUTE))
    app.client.delete("/api/v1/node/n1")
    assert app.sweep().nodes_finished == ["n1"]


def test_reregister_after_departure(app):
    register(app, "n1")
    app.set_now(at(MINUTE))
    app.client.delete("/api/v1/node/n1")
    app.set_now(at(HOUR))
    register(app, "n1")
    assert live(app)["n1"]["lastHeartbeat"] == at(HOUR)
    assert "n1" not in finished(app)
    app.set_now(at(HOUR + TTL))
    assert finished(app)["n1"]["finishedAt"] == at(HOUR + TTL)


def test_reregistered_node_keeps_files(app):
    register(app, "n1")
    upload(app, "n1", "var/log/agent.log", b"history\n")
    app.set_now(at(MINUTE))
    app.client.delete("/api/v1/node/n1")
    app.set_now(at(HOUR))
    register(app, "n1")
    assert files(app, "n1") == ["/nodes/n1/var/log/agent.log"]


# Log file cleanup, `node.cleanLogInterval` after a node finished


def test_files_kept_until_clean_interval(app):
    register(app, "n1")
    upload(app, "n1", "agent.log", b"log\n")
    app.set_now(at(MINUTE))
    app.client.delete("/api/v1/node/n1")
    app.set_now(at(MINUTE + CLEAN - 1))
    assert app.sweep().node_files_deleted == []
    assert files(app, "n1") == ["/nodes/n1/agent.log"]
    assert app.client.get("/nodes/n1/agent.log").content == b"log\n"


def test_files_deleted_at_clean_interval(app):
    register(app, "n1")
    upload(app, "n1", "agent.log", b"log\n")
    app.set_now(at(MINUTE))
    app.client.delete("/api/v1/node/n1")
    app.set_now(at(MINUTE + CLEAN))
    assert app.sweep().node_files_deleted == ["n1"]
    assert files(app, "n1") == []
    assert app.client.get("/nodes/n1/agent.log").status_code == 404


def test_files_folder_removed(app):
    register(app, "n1")
    upload(app, "n1", "var/log/agent.log", b"log\n")
    app.client.delete("/api/v1/node/n1")
    app.set_now(at(CLEAN))
    app.sweep()
    assert not (app.services.data_dir / "nodes" / "n1").exists()


def test_ttl_finished_files_kept_before(app):
    register(app, "n1")
    upload(app, "n1", "agent.log", b"log\n")
    app.set_now(at(TTL + CLEAN - 1))
    app.sweep()
    assert files(app, "n1") == ["/nodes/n1/agent.log"]


def test_ttl_finished_files_deleted(app):
    register(app, "n1")
    upload(app, "n1", "agent.log", b"log\n")
    app.set_now(at(TTL + CLEAN))
    assert app.sweep().node_files_deleted == ["n1"]
    assert files(app, "n1") == []


def test_live_node_files_kept(app):
    register(app, "n1")
    upload(app, "n1", "agent.log", b"log\n")
    for hour in range(1, 25):
        app.set_now(at(hour * HOUR))
        register(app, "n1")
        app.sweep()
    assert files(app, "n1") == ["/nodes/n1/agent.log"]


def test_revived_node_files_kept(app):
    # Finished at T0 + TTL; back before any sweep ran past the interval.
    register(app, "n1")
    upload(app, "n1", "agent.log", b"log\n")
    app.set_now(at(TTL + CLEAN + HOUR))
    register(app, "n1")
    assert app.sweep().node_files_deleted == []
    assert files(app, "n1") == ["/nodes/n1/agent.log"]


def test_cleanup_only_finished_nodes(app):
    register(app, "gone")
    register(app, "stays")
    upload(app, "gone", "a.log", b"a\n")
    upload(app, "stays", "b.log", b"b\n")
    app.client.delete("/api/v1/node/gone")
    app.set_now(at(CLEAN))
    register(app, "stays")
    assert app.sweep().node_files_deleted == ["gone"]
    assert files(app, "stays") == ["/nodes/stays/b.log"]


def test_clean_interval_change(app):
    set_config(app, "node.cleanLogInterval", "1h")
    register(app, "n1")
    upload(app, "n1", "agent.log", b"log\n")
    app.client.delete("/api/v1/node/n1")
    app.set_now(at(HOUR - 1))
    assert app.sweep().node_files_deleted == []
    app.set_now(at(HOUR))
    assert app.sweep().node_files_deleted == ["n1"]


def test_node_listed_after_cleanup(app):
    register(app, "n1")
    upload(app, "n1", "agent.log", b"log\n")
    app.client.delete("/api/v1/node/n1")
    app.set_now(at(CLEAN))
    app.sweep()
    assert finished(app)["n1"]["finishedAt"] == T0
    response = app.client.get("/api/v1/nodes/n1/files")
    assert response.status_code == 200
    assert response.json() == []
