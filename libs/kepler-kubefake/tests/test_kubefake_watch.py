"""Watches through `kubernetes_asyncio.watch.Watch`: resume, bookmarks, 410 Gone and dropped connections."""

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from kepler_kubefake import DropWatch, KubeFake, WatchGone

Manifest = dict[str, Any]


def configmap(name: str, labels: dict[str, str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}), data={"value": "1"}
    )


async def collect(api: ApiClient, namespace: str, count: int, **kwargs: Any) -> list[tuple[str, str]]:
    """The first `count` events of a config map watch, as (type, name)."""
    core = client.CoreV1Api(api)
    seen: list[tuple[str, str]] = []
    async with watch.Watch() as w:
        async for event in w.stream(core.list_namespaced_config_map, namespace, **kwargs):
            seen.append((event["type"], event["raw_object"]["metadata"].get("name", "")))
            if len(seen) == count:
                break
    return seen


async def follow(api: ApiClient, namespace: str, since: str, seen: list[tuple[str, str]]) -> None:
    """Record (name, resourceVersion) of every event until the stream ends, as a resuming client would."""
    core = client.CoreV1Api(api)
    async with watch.Watch() as w:
        async for event in w.stream(
            core.list_namespaced_config_map, namespace, resource_version=since, timeout_seconds=2
        ):
            meta = event["raw_object"]["metadata"]
            seen.append((meta["name"], meta["resourceVersion"]))


class TestWatch:
    async def test_watch_from_a_list_resumes_exactly_after_it(self, api: ApiClient, namespace: str) -> None:
        core = client.CoreV1Api(api)
        await core.create_namespaced_config_map(namespace, configmap("before"))
        listed = await core.list_namespaced_config_map(namespace)
        await core.create_namespaced_config_map(namespace, configmap("after"))
        await core.patch_namespaced_config_map("after", namespace, {"data": {"value": "2"}})
        await core.delete_namespaced_config_map("before", namespace)

        events = await collect(
            api, namespace, 3, resource_version=listed.metadata.resource_version, timeout_seconds=2
        )

        assert events == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]

    async def test_without_resource_version_current_objects_come_first(
        self, api: ApiClient, namespace: str
    ) -> None:
        await client.CoreV1Api(api).create_namespaced_config_map(namespace, configmap("existing"))

        events = await collect(api, namespace, 1, timeout_seconds=2)

        assert events == [("ADDED", "existing")]

    async def test_objects_leaving_a_selector_are_deleted_for_that_watch(
        self, api: ApiClient, namespace: str
    ) -> None:
        core = client.CoreV1Api(api)
        await core.create_namespaced_config_map(namespace, configmap("web", {"app": "web"}))
        listed = await core.list_namespaced_config_map(namespace, label_selector="app=web")
        await core.patch_namespaced_config_map("web", namespace, {"metadata": {"labels": {"app": "db"}}})

        events = await collect(
            api,
            namespace,
            1,
            label_selector="app=web",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=2,
        )

        assert events == [("DELETED", "web")]

    async def test_bookmarks_carry_the_current_resource_version(
        self, fake: KubeFake, api: ApiClient, namespace: str
    ) -> None:
        listed = await client.CoreV1Api(api).list_namespaced_config_map(namespace)

        events = await collect(
            api,
            namespace,
            1,
            resource_version=listed.metadata.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=2,
        )

        assert events == [("BOOKMARK", "")]

    async def test_timeout_seconds_ends_the_stream(self, api: ApiClient, namespace: str) -> None:
        events = await asyncio.wait_for(
            collect(api, namespace, 99, resource_version="1", timeout_seconds=0.2), 2
        )

        assert events == []


class TestGone:
    @pytest.mark.parametrize("as_event", [True, False])
    async def test_injected_410_then_relist_and_watch(
        self, fake: KubeFake, api: ApiClient, namespace: str, as_event: bool
    ) -> None:
        core = client.CoreV1Api(api)
        fake.inject(WatchGone(as_event=as_event))

        with pytest.raises(ApiException) as gone:
            await collect(api, namespace, 1, resource_version="1", timeout_seconds=1)
        listed = await core.list_namespaced_config_map(namespace)
        await core.create_namespaced_config_map(namespace, configmap("fresh"))
        events = await collect(
            api, namespace, 1, resource_version=listed.metadata.resource_version, timeout_seconds=2
        )

        assert gone.value.status == 410
        assert events == [("ADDED", "fresh")]

    async def test_a_compacted_resource_version_is_gone(
        self, fake: KubeFake, api: ApiClient, namespace: str
    ) -> None:
        listed = await client.CoreV1Api(api).list_namespaced_config_map(namespace)
        await client.CoreV1Api(api).create_namespaced_config_map(namespace, configmap("x"))
        fake.compact()

        with pytest.raises(ApiException) as gone:
            await collect(
                api, namespace, 1, resource_version=listed.metadata.resource_version, timeout_seconds=1
            )

        assert gone.value.status == 410
        assert "too old resource version" in str(gone.value.reason)

    async def test_a_bounded_history_forgets_old_versions(self) -> None:
        async with (
            KubeFake.start(history_size=3, gone_mode="http") as small,
            ApiClient(client.Configuration(host=small.url)) as small_api,
        ):
            core = client.CoreV1Api(small_api)
            listed = await core.list_namespaced_config_map("default")
            for i in range(5):
                await core.create_namespaced_config_map("default", configmap(f"c{i}"))

            with pytest.raises(ApiException) as gone:
                await collect(small_api, "default", 1, resource_version=listed.metadata.resource_version)

        assert gone.value.status == 410


class TestDisconnect:
    async def test_abrupt_drop_then_resume_from_last_seen_version(
        self, fake: KubeFake, api: ApiClient, namespace: str
    ) -> None:
        core = client.CoreV1Api(api)
        listed = await core.list_namespaced_config_map(namespace)
        for name in ("a", "b", "c"):
            await core.create_namespaced_config_map(namespace, configmap(name))
        fake.inject(DropWatch(after_events=1))

        seen: list[tuple[str, str]] = []
        with pytest.raises(aiohttp.ClientPayloadError):
            await follow(api, namespace, listed.metadata.resource_version, seen)
        resumed = await collect(api, namespace, 2, resource_version=seen[-1][1], timeout_seconds=2)

        assert [name for name, _ in seen] == ["a"]
        assert resumed == [("ADDED", "b"), ("ADDED", "c")]

    async def test_clean_close_ends_a_bounded_watch(
        self, fake: KubeFake, api: ApiClient, namespace: str
    ) -> None:
        await client.CoreV1Api(api).create_namespaced_config_map(namespace, configmap("a"))
        fake.inject(DropWatch(after_events=1, abrupt=False))

        events = await collect(api, namespace, 99, timeout_seconds=5)

        assert events == [("ADDED", "a")]

    async def test_a_client_leaving_mid_watch_ends_it_quietly(
        self, fake: KubeFake, api: ApiClient, namespace: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        await collect(api, namespace, 1, resource_version="1", allow_watch_bookmarks=True, timeout_seconds=5)
        [watch_request] = [r for r in fake.requests if r.query.get("watch")]

        # The server notices at its next bookmark write; nothing signals a finished request, so poll.
        async with asyncio.timeout(3):
            while not watch_request.status:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        assert watch_request.status == 200
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def raw_watch(fake: KubeFake, namespace: str, resource_version: str) -> tuple[int, list[Manifest]]:
    """One watch request read to its end, as (HTTP status, events)."""
    url = f"{fake.url}/api/v1/namespaces/{namespace}/configmaps"
    query = {"watch": "true", "resourceVersion": resource_version, "timeoutSeconds": "1"}
    async with aiohttp.ClientSession() as http, http.get(url, params=query) as response:
        lines = (await response.read()).decode().splitlines()
    return response.status, [json.loads(line) for line in lines if line]


class TestWatchWindow:
    async def test_events_older_than_the_window_are_expired_as_an_error_event(self) -> None:
        """The watch cache keeps events ~75 s (`eventFreshDuration` in
        staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go) and answers an older
        resourceVersion with HTTP 200 and one ERROR event carrying 410 Expired (`newErrWatcher`)."""
        async with (
            KubeFake.start(time_scale=0.002) as fake,  # a 75 s window is 0.15 real seconds
            ApiClient(client.Configuration(host=fake.url)) as api,
        ):
            core = client.CoreV1Api(api)
            listed = await core.list_namespaced_config_map("default")
            await core.create_namespaced_config_map("default", configmap("old"))
            await asyncio.sleep(0.2)
            await core.create_namespaced_config_map("default", configmap("new"))  # evicts "old"

            code, events = await raw_watch(fake, "default", listed.metadata.resource_version)

        assert code == 200
        [error] = events
        assert error["type"] == "ERROR"
        assert error["object"]["code"] == 410
        assert error["object"]["reason"] == "Expired"
        assert error["object"]["message"].startswith("too old resource version: ")

    async def test_a_quiet_resource_still_resumes_from_its_last_event(self) -> None:
        """Events leave the cache only when newer ones of the same resource arrive
        (`watchCache.updateCache`), so a watch from the latest version of a quiet kind works."""
        async with (
            KubeFake.start(time_scale=0.002) as fake,
            ApiClient(client.Configuration(host=fake.url)) as api,
        ):
            core = client.CoreV1Api(api)
            await core.create_namespaced_config_map("default", configmap("only"))
            listed = await core.list_namespaced_config_map("default")
            await asyncio.sleep(0.2)
            await core.create_namespaced_secret(
                "default", client.V1Secret(metadata=client.V1ObjectMeta(name="s"))
            )

            events = await collect(
                api,
                "default",
                1,
                resource_version=listed.metadata.resource_version,
                allow_watch_bookmarks=True,
            )

        assert events == [("BOOKMARK", "")]

    async def test_gone_mode_http_answers_410_on_the_request(self) -> None:
        """The explicit option: HTTP 410 on the watch request itself (older apiservers, etcd-direct
        watches)."""
        async with KubeFake.start(gone_mode="http") as fake:
            fake.compact()
            code, events = await raw_watch(fake, "default", "1")

        assert code == 410
        assert events[0]["reason"] == "Expired"

    async def test_a_resource_version_from_the_future_times_out(self) -> None:
        """`waitUntilFreshAndBlock` (staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go) waits
        3 s for the cache to reach the version, then `storage.NewTooLargeResourceVersionError`: 504 Timeout
        with cause ResourceVersionTooLarge, delivered as an ERROR event."""
        async with KubeFake.start(time_scale=0.01) as fake:
            ahead = str(fake.store.revision + 100)
            code, events = await raw_watch(fake, "default", ahead)

        assert code == 200
        [error] = events
        status = error["object"]
        assert (error["type"], status["code"], status["reason"]) == ("ERROR", 504, "Timeout")
        assert status["message"].startswith(f"Timeout: Too large resource version: {ahead}, current: ")
        assert status["details"]["causes"] == [
            {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
        ]
        assert status["details"]["retryAfterSeconds"] == 1

    async def test_a_version_the_server_reaches_in_time_is_served(
        self, fake: KubeFake, namespace: str
    ) -> None:
        """Within the 3 s the watch waits, and then streams from that version on (a lagging HA apiserver
        catching up)."""
        next_version = str(fake.store.revision + 1)
        watching = asyncio.create_task(raw_watch(fake, namespace, next_version))
        await asyncio.sleep(0)
        fake.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": namespace}}
        )
        fake.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": namespace}}
        )

        code, events = await watching

        assert code == 200
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]
