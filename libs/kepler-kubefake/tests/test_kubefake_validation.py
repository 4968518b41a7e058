"""The apiserver's own validation beyond the OpenAPI schema, its size limits, and server-side apply's
500 on undeclared fields: each answered in the Status shape the real server sends."""

import io
import json
from collections.abc import Awaitable, Callable
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


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> Manifest:
    body: Manifest = json.loads(exc.value.body or b"{}")
    assert body["kind"] == "Status"
    assert body["code"] == exc.value.status
    return body


async def refused(apply: Apply, body: Manifest) -> Manifest:
    with pytest.raises(ApiException) as rejected:
        await apply(body)
    return status_of(rejected)


def causes(status: Manifest) -> list[tuple[str, str]]:
    return [(c["reason"], c["field"]) for c in status["details"]["causes"]]


@pytest.mark.usefixtures("namespace")
class TestWorkloadValidation:
    @pytest.mark.parametrize(
        ("name", "broken"),
        [
            ("http-metrics-port", "must be no more than 15 characters"),
            ("HTTP", "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
            ("8080", "must contain at least one letter (a-z)"),
            ("a--b", "must not contain consecutive hyphens"),
            ("-http", "must not begin or end with a hyphen"),
        ],
    )
    async def test_container_port_names_are_iana_service_names(
        self, apply: Apply, make_deployment: MakeDeployment, name: str, broken: str
    ) -> None:
        """`IsValidPortName` (staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go), applied to
        container ports by `validateContainerPorts` (pkg/apis/core/validation/validation.go)."""
        body = make_deployment()
        body["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": name, "containerPort": 8080}]

        status = await refused(apply, body)

        field = "spec.template.spec.containers[0].ports[0].name"
        assert status["code"] == 422
        assert status["reason"] == "Invalid"
        assert ("FieldValueInvalid", field) in causes(status)
        assert f'{field}: Invalid value: "{name}": {broken}' in status["message"]

    async def test_a_good_port_name_is_accepted(self, apply: Apply, make_deployment: MakeDeployment) -> None:
        body = make_deployment()
        body["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]

        created = await apply(body)

        assert created.spec.template.spec.containers[0].ports[0].name == "http"

    async def test_max_surge_and_max_unavailable_cannot_both_be_zero(
        self, apply: Apply, make_deployment: MakeDeployment
    ) -> None:
        """`ValidateRollingUpdateDeployment` (pkg/apis/apps/validation/validation.go)."""
        body = make_deployment(
            strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}
        )

        status = await refused(apply, body)

        assert causes(status) == [("FieldValueInvalid", "spec.strategy.rollingUpdate.maxUnavailable")]
        assert "may not be 0 when `maxSurge` is 0" in status["message"]

    async def test_recreate_forbids_rolling_update(
        self, apply: Apply, make_deployment: MakeDeployment
    ) -> None:
        """`ValidateDeploymentStrategy` (pkg/apis/apps/validation/validation.go)."""
        body = make_deployment(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})

        status = await refused(apply, body)

        assert causes(status) == [("FieldValueForbidden", "spec.strategy.rollingUpdate")]
        assert "may not be specified when strategy `type` is 'Recreate'" in status["message"]

    async def test_a_container_needs_an_image(self, apply: Apply, make_deployment: MakeDeployment) -> None:
        """`validateContainerCommon` (pkg/apis/core/validation/validation.go): image is Required."""
        body = make_deployment()
        del body["spec"]["template"]["spec"]["containers"][0]["image"]

        status = await refused(apply, body)

        assert causes(status) == [("FieldValueRequired", "spec.template.spec.containers[0].image")]
        assert status["message"].endswith("spec.template.spec.containers[0].image: Required value")


class TestServiceValidation:
    async def test_a_named_target_port_is_an_iana_service_name(self, api: ApiClient, namespace: str) -> None:
        """`ValidatePortNumOrName` for Service `targetPort` (pkg/apis/core/validation/validation.go)."""
        service = client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector={"app": "web"},
                ports=[client.V1ServicePort(port=80, target_port="web_http")],
            ),
        )

        with pytest.raises(ApiException) as rejected:
            await client.CoreV1Api(api).create_namespaced_service(namespace, service)

        assert causes(status_of(rejected)) == [("FieldValueInvalid", "spec.ports[0].targetPort")]


class TestServerSideApply:
    async def test_an_undeclared_field_is_a_500(
        self, fake: KubeFake, namespace: str, apply: Apply, make_deployment: MakeDeployment
    ) -> None:
        """Apply builds a typed object first and fails with a plain error, so a 500 without a reason
        (kubernetes#122480;
        staging/src/k8s.io/apimachinery/pkg/util/managedfields/internal/structuredmerge.go)."""
        body = make_deployment()
        body["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"

        status = await refused(apply, body)

        assert status["code"] == 500
        assert "reason" not in status
        assert status["message"] == (
            f"failed to create typed patch object ({namespace}/web; apps/v1, Kind=Deployment): "
            '.spec.template.spec.containers[name="web"].imagee: field not declared in schema'
        )
        assert fake.get("Deployment", "web", namespace) is None

    async def test_a_post_with_an_unknown_field_is_invalid(self, api: ApiClient, namespace: str) -> None:
        """A POST is validated field by field instead: 422 naming the field (strict field validation)."""
        body: Any = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "dataa": {}}

        with pytest.raises(ApiException) as rejected:
            await client.CoreV1Api(api).create_namespaced_config_map(namespace, body)

        assert rejected.value.status == 422
        assert causes(status_of(rejected)) == [("FieldValueInvalid", "dataa")]


async def send(
    fake: KubeFake, method: str, path: str, body: Manifest, content_type: str
) -> tuple[int, Manifest]:
    """Send a large body as a stream (aiohttp warns about large in-memory bodies)."""
    payload = io.BytesIO(json.dumps(body).encode())
    async with aiohttp.ClientSession() as http:
        response = await http.request(
            method, fake.url + path, data=payload, headers={"Content-Type": content_type}
        )
        return response.status, await response.json()


async def post_configmap(fake: KubeFake, namespace: str, size: int) -> tuple[int, Manifest]:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"k": "x" * size}}
    return await send(fake, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body, "application/json")


class TestSizeLimits:
    async def test_a_body_over_3_mib_is_413(self, fake: KubeFake, namespace: str) -> None:
        """`limitedReadBody` in staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go: the 3 MiB
        MaxRequestBodyBytes of staging/src/k8s.io/apiserver/pkg/server/config.go."""
        code, status = await post_configmap(fake, namespace, 3_200_000)

        assert code == 413
        assert status["reason"] == "RequestEntityTooLarge"
        assert status["message"] == "Request entity too large: limit is 3145728"

    async def test_configmap_data_over_1_mib_is_invalid(self, fake: KubeFake, namespace: str) -> None:
        """`ValidateConfigMap` (pkg/apis/core/validation/validation.go): data at most 1 MiB (MaxSecretSize),
        checked before etcd sees it."""
        code, status = await post_configmap(fake, namespace, 1_100_000)

        assert code == 422
        assert status["details"]["causes"] == [
            {
                "reason": "FieldValueTooLong",
                "message": "Too long: must have at most 1048576 bytes",
                "field": "[]",
            }
        ]

    async def test_an_object_over_etcds_limit_is_refused_by_etcd(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment
    ) -> None:
        """etcd's 1.5 MiB `--max-request-bytes`: the apiserver passes "request is too large" on as a 500
        (kubernetes#112152). Nothing in Deployment validation bounds an env value."""
        body = make_deployment()
        body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "BIG", "value": "x" * 2_000_000}]

        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web?fieldManager=kepler"
        code, status = await send(fake, "PATCH", path, body, "application/apply-patch+yaml")

        assert code == 500
        assert status["message"] == "etcdserver: request is too large"
        assert fake.get("Deployment", "web", namespace) is None
