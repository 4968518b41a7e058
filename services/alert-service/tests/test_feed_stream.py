"""Following the feed live: every event exactly once, in log order, across reconnects, whatever the
follower missed while away; what it follows is what it asked for; a membership granted while it follows
shows it that namespace from then on."""

import httpx

from kepler_alert_service.feed.testing import Feed, Frame, Reader, World, scaled
from kepler_db import Membership, Role
from kepler_kit.events.kinds import MemberAdded, MemberRemoved
from kepler_kit.testing.identities import make_member

STREAM = "/api/v1/events/stream"


def ids(frames: list[Frame]) -> list[int]:
    return [int(frame.id or 0) for frame in frames]


def replicas(frames: list[Frame]) -> list[int]:
    return [frame.data["data"]["replicas"] for frame in frames if frame.event == "app.scaled" and frame.data]


class TestResume:
    async def test_every_event_exactly_once_across_a_reconnect(self, feed: Feed, feed_world: World) -> None:
        async with httpx.AsyncClient(
            base_url=feed.url, headers=feed_world.headers_for("developer")
        ) as client:
            async with client.stream("GET", STREAM) as response:
                assert response.status_code == 200
                first = await feed.publish(scaled(feed_world, "team-a", 1), scaled(feed_world, "team-a", 2))
                got = await Reader(response).take(2)
            assert ids(got) == first

            missed = await feed.publish(scaled(feed_world, "team-a", 3), scaled(feed_world, "team-a", 4))
            async with client.stream("GET", STREAM, headers={"last-event-id": str(first[-1])}) as response:
                reader = Reader(response)
                replayed = await reader.take(2)
                live = await feed.publish(scaled(feed_world, "team-a", 5))
                after = await reader.take(1)
                assert await reader.until_idle() == []

        assert (ids(replayed), ids(after)) == (missed, live)
        assert replicas(replayed + after) == [3, 4, 5]

    async def test_a_replay_that_overlaps_the_live_queue_repeats_nothing(
        self, feed: Feed, feed_world: World
    ) -> None:
        """Resumed from far back, the follower replays from the database what the tail had already read
        and takes the rest from its queue: the events the tail read between its subscription and the end
        of the replay are in both, and sent once."""
        published = await feed.publish(*(scaled(feed_world, "team-a", n) for n in range(1, 6)))
        await feed.caught_up()
        async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("viewer")) as client:
            resume = {"last-event-id": str(published[0])}
            async with client.stream("GET", STREAM, headers=resume) as response:
                reader = Reader(response)
                more = await feed.publish(*(scaled(feed_world, "team-a", n) for n in range(6, 9)))
                received = await reader.take(7)
                assert await reader.until_idle() == []

        assert ids(received) == published[1:] + more

    async def test_without_last_event_id_the_stream_starts_now(self, feed: Feed, feed_world: World) -> None:
        await feed.publish(scaled(feed_world, "team-a", 1))
        async with (
            httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("owner")) as client,
            client.stream("GET", STREAM) as response,
        ):
            reader = Reader(response)
            assert await reader.until_idle() == []
            new = await feed.publish(scaled(feed_world, "team-a", 2))
            assert ids(await reader.take(1)) == new

    async def test_an_id_the_log_does_not_keep_restarts_from_now_with_a_reset_event(
        self, feed: Feed, feed_world: World
    ) -> None:
        """An EventSource cannot read an error and stops reconnecting on one: the stream says `reset`
        (the client reloads the list) and carries the newest id, where the next reconnect resumes."""
        [old] = await feed.publish(scaled(feed_world, "team-a", 1))
        async with (
            httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("owner")) as client,
            client.stream("GET", STREAM, headers={"last-event-id": str(old + 10_000)}) as response,
        ):
            reader = Reader(response)
            [reset] = await reader.take(1)
            new = await feed.publish(scaled(feed_world, "team-a", 2))
            [event] = await reader.take(1)

        assert reset.event == "reset"
        assert reset.id == str(old)
        assert ids([event]) == new


class TestFrames:
    async def test_a_frame_is_the_event_as_the_list_shows_it(self, feed: Feed, feed_world: World) -> None:
        async with (
            httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("owner")) as client,
            client.stream("GET", STREAM) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            [published] = await feed.publish(scaled(feed_world, "team-a", 4))
            [frame] = await Reader(response).take(1)
            listed = (await client.get("/api/v1/events", params={"limit": 1})).json()["items"]

        assert (frame.id, frame.event) == (str(published), "app.scaled")
        assert frame.data == listed[0]
        assert frame.data is not None
        assert frame.data["actor"] == "dev@example.com"

    async def test_an_idle_stream_sends_keep_alive_comments(self, feed: Feed, feed_world: World) -> None:
        async with (
            httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("owner")) as client,
            client.stream("GET", STREAM) as response,
        ):
            reader = Reader(response)
            assert await reader.next() == Frame(None, None, None)
            assert await reader.next() == Frame(None, None, None)


class TestFilters:
    async def test_a_follower_gets_only_what_it_asked_for(self, feed: Feed, feed_world: World) -> None:
        params = {"namespace": "team-a", "app": "api", "kind": "app.*"}
        async with (
            httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("admin")) as client,
            client.stream("GET", STREAM, params=params) as response,
        ):
            await feed.publish(
                scaled(feed_world, "team-a", 1, app="web"),
                scaled(feed_world, "team-b", 2, app="api"),
                scaled(feed_world, "team-a", 3, app="api"),
            )
            await feed.caught_up()
            received = await Reader(response).until_idle()

        assert replicas(received) == [3]


class TestLiveVisibility:
    async def test_a_membership_granted_while_following_shows_that_namespace_from_then_on(
        self, feed: Feed, feed_world: World
    ) -> None:
        outsider = feed_world.users["outsider"]
        async with (
            httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("outsider")) as client,
            client.stream("GET", STREAM) as response,
        ):
            reader = Reader(response)
            await feed.publish(scaled(feed_world, "team-a", 1))
            await feed.caught_up()
            assert await reader.until_idle() == []

            await make_member(feed.session, outsider, "team-a", Role.viewer)
            granted = MemberAdded(
                namespace_id=feed_world.namespaces["team-a"],
                namespace="team-a",
                user_id=outsider.id,
                email=outsider.email,
                role="viewer",
            )
            await feed.publish(granted, scaled(feed_world, "team-a", 2))
            received = await reader.take(2)

        assert [frame.event for frame in received] == ["member.added", "app.scaled"]
        assert replicas(received) == [2]

    async def test_a_membership_removed_while_following_hides_that_namespace(
        self, feed: Feed, feed_world: World
    ) -> None:
        viewer = feed_world.users["viewer"]
        async with (
            httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("viewer")) as client,
            client.stream("GET", STREAM, params={"kind": "app.scaled"}) as response,
        ):
            reader = Reader(response)
            await feed.publish(scaled(feed_world, "team-a", 1))
            assert replicas(await reader.take(1)) == [1]

            membership = await feed.session.get(Membership, (viewer.id, feed_world.namespaces["team-a"]))
            await feed.session.delete(membership)
            removed = {"user_id": viewer.id, "email": viewer.email, "role": None}
            namespace = {"namespace_id": feed_world.namespaces["team-a"], "namespace": "team-a"}
            await feed.publish(MemberRemoved(**namespace, **removed), scaled(feed_world, "team-a", 2))
            await feed.caught_up()
            assert await reader.until_idle() == []


class TestFanOut:
    async def test_one_read_of_the_log_reaches_every_follower(self, feed: Feed, feed_world: World) -> None:
        """Followers do not read the log themselves: each read of the tail lands in every queue, so 200
        followers cost the database what one does."""
        subscriptions = [(await feed.tail.subscribe(lambda _: True))[0] for _ in range(200)]
        published = await feed.publish(scaled(feed_world, "team-a", 1))
        await feed.caught_up()

        received = [[event.id for event in await subscription.take(0)] for subscription in subscriptions]
        for subscription in subscriptions:
            feed.tail.unsubscribe(subscription)

        assert received == [published] * 200
