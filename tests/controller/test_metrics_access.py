"""/metrics is for the scraper only: its token, or an allowed address; with neither set, loopback only.

The room reaches the controller's port; before this anyone there could read
the node and command counts and make the controller query its database on
every request.
"""

from __future__ import annotations

import pytest

from controller.app import create_app
from controller.settings import ConfigurationError, settings_for_tests

ROOM = {"REMOTE_ADDR": "192.0.2.10"}


@pytest.fixture
def make_client(tmp_path, database_url):
    apps = []

    def make(**overrides):
        app = create_app(settings_for_tests(tmp_path / f"data{len(apps)}", database_url=database_url, **overrides))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["labfleet"].heartbeats.close()
        app.extensions["labfleet"].db.dispose()


def test_without_settings_only_loopback_may_scrape(make_client):
    client = make_client()
    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"}).status_code == 200
    refused = client.get("/metrics", environ_base=ROOM)
    assert refused.status_code == 403
    assert refused.json["error"] == "forbidden" and "labfleet_nodes" not in refused.get_data(as_text=True)


def test_a_scrape_token_is_needed_from_everywhere_once_set(make_client):
    client = make_client(metrics_token="scrape-secret-123")
    assert client.get("/metrics", environ_base=ROOM).status_code == 401
    assert client.get("/metrics").status_code == 401  # loopback too: the token is the rule now
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"}, environ_base=ROOM)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    right = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"}, environ_base=ROOM)
    assert right.status_code == 200 and "labfleet_nodes" in right.get_data(as_text=True)


def test_an_allow_list_of_addresses_scrapes_without_a_token(make_client):
    client = make_client(metrics_allow="10.9.0.0/24, 2001:db8::5")
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.9.0.44"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::5"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.9.1.44"}).status_code == 403
    assert client.get("/metrics").status_code == 403  # loopback is not on this list
    # Token or list: either lets a scraper in.
    both = make_client(metrics_allow="10.9.0.0/24", metrics_token="t0k3n")
    assert both.get("/metrics", environ_base={"REMOTE_ADDR": "10.9.0.44"}).status_code == 200
    assert both.get("/metrics", headers={"Authorization": "Bearer t0k3n"}, environ_base=ROOM).status_code == 200
    assert both.get("/metrics", environ_base=ROOM).status_code == 401


def test_a_malformed_allow_list_stops_the_controller_at_start(tmp_path):
    with pytest.raises(ConfigurationError, match="METRICS_ALLOW"):
        settings_for_tests(tmp_path, metrics_allow="10.0.0.0/33")


def test_the_openapi_document_stays_public(make_client):
    response = make_client().get("/api/openapi.json", environ_base=ROOM)
    assert response.status_code == 200 and "/api/v1/nodes" in response.json["paths"]
