"""The routing table: which service owns a path, most specific pattern first."""

import pytest

from kepler_gateway.routing import DEFAULT_TABLE, Route, RouteTable, pattern_regex
from kepler_kit.contracts import Service

NS = "/api/v1/namespaces/team-a"
APP = f"{NS}/apps/web"


@pytest.mark.parametrize(
    ("path", "service", "tag"),
    [
        ("/api/v1/namespaces", Service.APP, "namespaces"),
        ("/api/v1/namespaces/", Service.APP, "namespaces"),
        (NS, Service.APP, "namespaces"),
        (f"{NS}/events", Service.APP, "namespaces"),
        (f"{NS}/apps", Service.APP, "apps"),
        (APP, Service.APP, "apps"),
        (f"{APP}/deployments/3/rollback", Service.APP, "apps"),
        (f"{APP}/pods", Service.APP, "apps"),
        (f"{APP}/builds", Service.BUILD, "builds"),
        (f"{APP}/builds/42/logs", Service.BUILD, "builds"),
        (f"{APP}/pods/web-1/exec", Service.TERMINAL, "terminal"),
        (f"{APP}/pods/web-1/logs", Service.TERMINAL, "terminal"),
        (f"{APP}/logs", Service.TERMINAL, "terminal"),
        (f"{NS}/alerts", Service.ALERT, "alerts"),
        (f"{NS}/alerts/7/ack", Service.ALERT, "alerts"),
        (f"{NS}/alert-rules", Service.ALERT, "alerts"),
        (f"{NS}/silences/1", Service.ALERT, "alerts"),
        (f"{NS}/channels", Service.ALERT, "alerts"),
        ("/api/v1/webhooks/gitlab", Service.BUILD, "webhooks"),
        ("/api/v1/webhooks/github", Service.BUILD, "webhooks"),
        ("/api/v1/webhooks/jenkins", Service.BUILD, "webhooks"),
        ("/api/v1/webhooks/alertmanager", Service.ALERT, "webhooks"),
        ("/api/v1/events", Service.ALERT, "events"),
        ("/api/v1/events/stream", Service.ALERT, "events"),
        ("/api/v1/status/app-service", Service.APP, "system"),
        ("/api/v1/status/terminal-service", Service.TERMINAL, "system"),
        ("/api/v1/clusters", Service.APP, "clusters"),
        ("/api/v1/clusters/3/check", Service.APP, "clusters"),
        ("/api/v1/inbox", Service.ALERT, "inbox"),
        ("/api/v1/inbox/7/read", Service.ALERT, "inbox"),
        ("/api/v1/inbox/rules/x", Service.ALERT, "inbox"),
        ("/api/v1/announcements", Service.ALERT, "announcements"),
        ("/api/v1/announcements/x", Service.ALERT, "announcements"),
    ],
)
def test_owner_of_path(path: str, service: Service, tag: str) -> None:
    route = DEFAULT_TABLE.resolve(path)

    assert route is not None
    assert (route.service, route.tag) == (service, tag)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/status",
        "/api/v1/status/api-gateway",
        "/api/v1/namespacesX",
        "/api/v1/inboxes",
        "/api/v1/eventsX",
        "/api/v1/webhooks/bitbucket",
        "/api/v1/webhooks/github/extra",
        "/healthz",
        "/openapi.json",
        "/api/v2/namespaces",
    ],
)
def test_paths_the_gateway_answers_itself(path: str) -> None:
    assert DEFAULT_TABLE.resolve(path) is None


def test_a_segment_parameter_never_spans_slashes() -> None:
    table = RouteTable([Route("/a/{x}/b", Service.BUILD, "builds"), Route("/a/**", Service.APP, "apps")])

    assert table.resolve("/a/1/b") == Route("/a/{x}/b", Service.BUILD, "builds")
    assert table.resolve("/a/1/2/b") == Route("/a/**", Service.APP, "apps")


def test_earlier_routes_win() -> None:
    broad, narrow = Route("/x/**", Service.APP, "apps"), Route("/x/y", Service.BUILD, "builds")

    assert RouteTable([broad, narrow]).resolve("/x/y") == broad
    assert RouteTable([narrow, broad]).resolve("/x/y") == narrow


def test_patterns_are_literal_apart_from_parameters() -> None:
    assert pattern_regex("/a.b/{x}/**") == r"/a\.b/[^/]+(?:/.*)?"
    assert RouteTable([Route("/a.b", Service.APP, "apps")]).resolve("/aXb") is None
