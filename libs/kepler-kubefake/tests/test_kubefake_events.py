"""Events through both API groups, in the two shapes real components write them, expiring after an hour."""

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from kepler_kubefake import KubeFake

Manifest = dict[str, Any]
MakeDeployment = Callable[..., Manifest]
Apply = Callable[..., Awaitable[Any]]


async def get_json(fake: KubeFake, path: str) -> Manifest:
    async with aiohttp.ClientSession() as http, http.get(fake.url + path) as response:
        assert response.status == 200
        body: Manifest = json.loads(await response.read())
        return body


def by_reason(items: list[Manifest], reason: str) -> Manifest:
    return next(e for e in items if e["reason"] == reason)


class TestEventsApiGroup:
    async def test_recorded_events_are_served_by_both_groups(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """One stored Event, two serialisations (pkg/apis/events/v1/conversion.go). The scheduler writes
        through events.k8s.io (client-go/tools/events: eventTime, action, null first/lastTimestamp); the
        kubelet through core/v1 (client-go/tools/record: firstTimestamp, count, no eventTime)."""
        await apply(make_deployment(replicas=1))
        await fake.wait_for(lambda: {"Scheduled", "Started"} <= {e["reason"] for e in fake.objects("Event")})

        v1 = await get_json(fake, f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
        core = await get_json(fake, f"/api/v1/namespaces/{namespace}/events")

        assert (v1["apiVersion"], v1["kind"], core["apiVersion"]) == ("events.k8s.io/v1", "EventList", "v1")
        scheduled, started = by_reason(v1["items"], "Scheduled"), by_reason(v1["items"], "Started")
        assert scheduled["eventTime"]
        assert scheduled["action"] == "Binding"
        assert scheduled["reportingController"] == "default-scheduler"
        assert scheduled["regarding"]["kind"] == "Pod"
        assert "deprecatedFirstTimestamp" not in scheduled
        assert started["eventTime"] is None
        assert started["deprecatedCount"] == 1
        assert started["deprecatedFirstTimestamp"]
        assert started["note"] == by_reason(core["items"], "Started")["message"]
        core_scheduled = by_reason(core["items"], "Scheduled")
        assert core_scheduled["firstTimestamp"] is None
        assert core_scheduled["eventTime"]
        assert core_scheduled["involvedObject"] == scheduled["regarding"]

    async def test_an_event_written_as_events_v1_reads_back_as_core(
        self, api: ApiClient, namespace: str
    ) -> None:
        """What the newer components do: create through events.k8s.io/v1, read by older clients as core."""
        event = client.EventsV1Event(
            metadata=client.V1ObjectMeta(name="web.1"),
            event_time=datetime(2026, 1, 1, tzinfo=UTC),
            reason="Scheduled",
            note="Successfully assigned",
            action="Binding",
            type="Normal",
            reporting_controller="default-scheduler",
            reporting_instance="default-scheduler-1",
            regarding=client.V1ObjectReference(kind="Pod", name="web", namespace=namespace),
        )

        await client.EventsV1Api(api).create_namespaced_event(namespace, event)
        read = await client.CoreV1Api(api).read_namespaced_event("web.1", namespace)
        listed = await client.EventsV1Api(api).list_namespaced_event(namespace)

        assert (read.message, read.involved_object.name, read.reporting_component) == (
            "Successfully assigned",
            "web",
            "default-scheduler",
        )
        assert [e.note for e in listed.items] == ["Successfully assigned"]

    async def test_a_missing_event_is_named_by_its_group(self, api: ApiClient, namespace: str) -> None:
        with pytest.raises(ApiException) as missing:
            await client.EventsV1Api(api).read_namespaced_event("nothing", namespace)

        assert (
            json.loads(missing.value.body or b"{}")["message"] == 'events.events.k8s.io "nothing" not found'
        )

    async def test_the_group_is_discoverable(self, api: ApiClient) -> None:
        resources = await client.EventsV1Api(api).get_api_resources()

        assert [r.name for r in resources.resources] == ["events"]


class TestEventTtl:
    async def test_events_expire_an_hour_after_their_last_write(
        self, make_deployment: MakeDeployment
    ) -> None:
        """The apiserver stores events with a lease of `--event-ttl` (1 h, pkg/kubeapiserver/options), so
        etcd drops them an hour after their last update."""
        async with KubeFake.start(time_scale=0.0002) as fake:  # an hour is 0.72 real seconds
            fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
            fake.create(make_deployment(replicas=1))
            await fake.wait_for(lambda: bool(fake.objects("Event", "team-a")))

            await fake.wait_for(lambda: not fake.objects("Event", "team-a"), within=5)
