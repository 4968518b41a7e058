"""Authentication, RBAC denials and API Priority and Fairness throttling, as a real apiserver answers them."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from kepler_kubefake import Forbid, KubeFake, Throttle

MakeDeployment = Callable[..., dict[str, Any]]
Apply = Callable[..., Awaitable[Any]]
PATHS = ("/version", "/healthz", "/api", "/apis", "/apis/apps/v1", "/api/v1/namespaces")


async def status_code(fake: KubeFake, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, http.get(fake.url + path, headers=headers) as response:
        return response.status


class TestAuthentication:
    @pytest.mark.parametrize("token", ["wrong", None])
    async def test_a_bad_or_missing_token_is_401_on_every_path(self, token: str | None) -> None:
        """The authentication filter (staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go)
        runs before any handler: a token that fails is 401 whatever the path, `/version` included; with
        `--anonymous-auth=false` a missing one is too."""
        async with KubeFake.start(token="s3cret") as fake:
            codes = {path: await status_code(fake, path, token) for path in PATHS}
            good = {path: await status_code(fake, path, "s3cret") for path in PATHS}

        assert set(codes.values()) == {401}
        assert set(good.values()) == {200}

    async def test_anonymous_may_read_only_public_info(self) -> None:
        """With anonymous auth (the kube-apiserver default) a request without a token is
        `system:anonymous`, bound only to `system:public-info-viewer` (/version, /healthz...)
        (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go)."""
        async with KubeFake.start(token="s3cret", anonymous=True) as fake:
            version = await status_code(fake, "/version", None)
            namespaces = await status_code(fake, "/api/v1/namespaces", None)
            wrong = await status_code(fake, "/version", "wrong")

        assert (version, namespaces, wrong) == (200, 403, 401)


class TestForbid:
    async def test_an_rbac_denial_names_user_verb_resource_and_namespace(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """`forbiddenMessage` in
        staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go, wrapped by
        `errors.NewForbidden`: 403 `deployments.apps "web" is forbidden: User ... cannot patch resource
        "deployments" in API group "apps" in the namespace "team-a"`."""
        fake.inject(Forbid(verb="patch", resource="deployments", namespace=namespace))

        with pytest.raises(ApiException) as denied:
            await apply(make_deployment())

        status = json.loads(denied.value.body or b"{}")
        assert denied.value.status == 403
        assert status["reason"] == "Forbidden"
        assert status["message"] == (
            'deployments.apps "web" is forbidden: User "system:serviceaccount:kepler:kepler" cannot patch '
            f'resource "deployments" in API group "apps" in the namespace "{namespace}"'
        )
        assert status["details"] == {"name": "web", "group": "apps", "kind": "deployments"}

    async def test_verbs_are_kubernetes_verbs(self, fake: KubeFake, api: ApiClient, namespace: str) -> None:
        """`RequestInfoFactory` (staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go): a GET
        on a collection is `list`, on an object `get`; core resources are in API group ""."""
        fake.inject(Forbid(verb="list", resource="configmaps"))
        core = client.CoreV1Api(api)
        await core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"))
        )

        read = await core.read_namespaced_config_map("c", namespace)
        with pytest.raises(ApiException) as denied:
            await core.list_namespaced_config_map(namespace)

        assert read.metadata.name == "c"
        assert json.loads(denied.value.body or b"{}")["message"] == (
            'configmaps is forbidden: User "system:serviceaccount:kepler:kepler" cannot list resource '
            f'"configmaps" in API group "" in the namespace "{namespace}"'
        )
        assert [r.verb for r in fake.requests[-2:]] == ["get", "list"]

    async def test_a_bounded_denial_then_access(self, fake: KubeFake, api: ApiClient) -> None:
        fake.inject(Forbid(resource="namespaces", times=1))
        core = client.CoreV1Api(api)

        with pytest.raises(ApiException) as denied:
            await core.list_namespace()
        listed = await core.list_namespace()

        assert denied.value.status == 403
        assert "at the cluster scope" in json.loads(denied.value.body or b"{}")["message"]
        assert listed.items


class TestThrottle:
    async def test_apf_answers_429_with_retry_after_in_plain_text(self, fake: KubeFake) -> None:
        """`tooManyRequests` in staging/src/k8s.io/apiserver/pkg/server/filters/priority-and-fairness.go
        (via maxinflight.go): a Retry-After header and a plain-text body, not a Status."""
        fake.inject(Throttle(verb="list", resource="namespaces", retry_after=2))

        async with aiohttp.ClientSession() as http:
            async with http.get(fake.url + "/api/v1/namespaces") as throttled:
                body = await throttled.text()
            async with http.get(fake.url + "/api/v1/namespaces") as then:
                served = then.status

        assert throttled.status == 429
        assert throttled.headers["Retry-After"] == "2"
        assert body == "Too many requests, please try again later.\n"
        assert served == 200

    async def test_throttling_as_a_status(self, fake: KubeFake, api: ApiClient) -> None:
        """`errors.NewTooManyRequests` (staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go), the
        Status form other layers send."""
        fake.inject(Throttle(as_status=True, times=1))

        with pytest.raises(ApiException) as throttled:
            await client.CoreV1Api(api).list_namespace()

        status = json.loads(throttled.value.body or b"{}")
        assert throttled.value.status == 429
        assert throttled.value.headers is not None
        assert throttled.value.headers["Retry-After"] == "1"
        assert (status["reason"], status["details"]["retryAfterSeconds"]) == ("TooManyRequests", 1)

    async def test_request_records_carry_their_arrival_time(self, fake: KubeFake, api: ApiClient) -> None:
        """What a client's "bounded requests per second" is measured on."""
        core = client.CoreV1Api(api)
        await core.list_namespace()
        await core.list_namespace()

        first, second = fake.requests[-2:]

        assert first.at <= second.at
