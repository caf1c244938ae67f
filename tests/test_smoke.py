def test_health_in_process(app):
    response = app.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "time": "2025-03-16T12:00:00Z"}


def test_health_over_http(http):
    response = http.get("/health")
    assert response.json()["time"] == "2025-03-16T12:00:00Z"
