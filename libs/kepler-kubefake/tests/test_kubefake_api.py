"""The fake's REST contract, driven by the unmodified kubernetes-asyncio client."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from kepler_kubefake import Delay, KubeFake, Reject, ServerError

Manifest = dict[str, Any]
MakeDeployment = Callable[..., Manifest]
Apply = Callable[..., Awaitable[Any]]


def configmap(
    name: str, labels: dict[str, str] | None = None, namespace: str = "team-a"
) -> client.V1ConfigMap:
    meta = client.V1ObjectMeta(name=name, namespace=namespace, labels=labels or {})
    return client.V1ConfigMap(metadata=meta, data={"key": "value"})


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> Manifest:
    body = json.loads(exc.value.body or b"{}")
    assert body["kind"] == "Status"
    assert body["code"] == exc.value.status
    return dict(body)


class TestDiscovery:
    async def test_version_and_groups_are_discoverable(self, api: ApiClient) -> None:
        version = await client.VersionApi(api).get_code()
        groups = await client.ApisApi(api).get_api_versions()
        core = await client.CoreApi(api).get_api_versions()
        apps = await client.AppsV1Api(api).get_api_resources()

        assert version.major == "1"
        assert core.versions == ["v1"]
        assert {"apps", "networking.istio.io", "autoscaling"} <= {g.name for g in groups.groups}
        names = {r.name for r in apps.resources}
        assert {"deployments", "deployments/status", "deployments/scale", "replicasets"} <= names


class TestCrud:
    async def test_create_get_replace_delete(self, api: ApiClient, namespace: str) -> None:
        core = client.CoreV1Api(api)
        created = await core.create_namespaced_config_map(namespace, configmap("settings"))
        read = await core.read_namespaced_config_map("settings", namespace)
        read.data = {"key": "changed"}
        replaced = await core.replace_namespaced_config_map("settings", namespace, read)
        await core.delete_namespaced_config_map("settings", namespace)

        assert created.metadata.uid == replaced.metadata.uid
        assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
        assert replaced.data == {"key": "changed"}
        with pytest.raises(ApiException) as missing:
            await core.read_namespaced_config_map("settings", namespace)
        assert missing.value.status == 404
        assert status_of(missing)["reason"] == "NotFound"

    async def test_replace_with_a_stale_resource_version_conflicts(
        self, api: ApiClient, namespace: str
    ) -> None:
        core = client.CoreV1Api(api)
        stale = await core.create_namespaced_config_map(namespace, configmap("settings"))
        await core.patch_namespaced_config_map("settings", namespace, {"data": {"key": "other"}})

        with pytest.raises(ApiException) as conflict:
            await core.replace_namespaced_config_map("settings", namespace, stale)

        assert conflict.value.status == 409
        assert status_of(conflict)["reason"] == "Conflict"

    async def test_duplicate_create_is_already_exists(self, api: ApiClient, namespace: str) -> None:
        core = client.CoreV1Api(api)
        await core.create_namespaced_config_map(namespace, configmap("settings"))

        with pytest.raises(ApiException) as duplicate:
            await core.create_namespaced_config_map(namespace, configmap("settings"))

        assert duplicate.value.status == 409
        assert status_of(duplicate)["reason"] == "AlreadyExists"

    async def test_create_in_a_missing_namespace_is_not_found(self, api: ApiClient) -> None:
        with pytest.raises(ApiException) as missing:
            await client.CoreV1Api(api).create_namespaced_config_map(
                "nowhere", configmap("x", namespace="nowhere")
            )

        assert status_of(missing)["message"] == 'namespaces "nowhere" not found'

    async def test_bad_json_is_bad_request(self, fake: KubeFake) -> None:
        url = f"{fake.url}/api/v1/namespaces/default/configmaps"
        async with aiohttp.ClientSession() as http:
            response = await http.post(url, data="{not json", headers={"Content-Type": "application/json"})
            body = await response.json()

        assert response.status == 400
        assert body["reason"] == "BadRequest"

    async def test_secret_string_data_is_stored_base64(self, api: ApiClient, namespace: str) -> None:
        secret = client.V1Secret(metadata=client.V1ObjectMeta(name="db"), string_data={"password": "hunter2"})

        created = await client.CoreV1Api(api).create_namespaced_secret(namespace, secret)

        assert created.type == "Opaque"
        assert created.data == {"password": "aHVudGVyMg=="}


class TestSelectors:
    @pytest.fixture
    async def labelled(self, api: ApiClient, namespace: str) -> None:
        core = client.CoreV1Api(api)
        for name, labels in [
            ("a", {"app": "web", "tier": "front"}),
            ("b", {"app": "web"}),
            ("c", {"app": "db", "tier": "back"}),
        ]:
            await core.create_namespaced_config_map(namespace, configmap(name, labels))

    @pytest.mark.parametrize(
        ("selector", "expected"),
        [
            ("app=web", ["a", "b"]),
            ("app==web,tier", ["a"]),
            ("app!=web", ["c"]),
            ("tier in (front, back)", ["a", "c"]),
            ("tier notin (front)", ["b", "c"]),
            ("!tier", ["b"]),
        ],
    )
    @pytest.mark.usefixtures("labelled")
    async def test_label_selector(
        self, api: ApiClient, namespace: str, selector: str, expected: list[str]
    ) -> None:
        listed = await client.CoreV1Api(api).list_namespaced_config_map(namespace, label_selector=selector)

        assert [c.metadata.name for c in listed.items] == expected

    @pytest.mark.usefixtures("labelled")
    async def test_field_selector_and_pages(self, api: ApiClient, namespace: str) -> None:
        core = client.CoreV1Api(api)
        by_name = await core.list_namespaced_config_map(namespace, field_selector="metadata.name=b")
        first = await core.list_namespaced_config_map(namespace, limit=2)
        rest = await core.list_namespaced_config_map(namespace, limit=2, _continue=first.metadata._continue)

        assert [c.metadata.name for c in by_name.items] == ["b"]
        assert [c.metadata.name for c in first.items + rest.items] == ["a", "b", "c"]
        assert first.metadata.remaining_item_count == 1
        assert rest.metadata._continue is None


class TestContinue:
    async def test_an_expired_continue_token_is_410_with_an_inconsistent_one(self) -> None:
        """A `continue` token names an etcd revision; once etcd compacts it (every 5 minutes by default)
        the next page is 410 Expired, and the Status carries a token to go on inconsistently
        (staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go, `ErrCompacted`)."""
        async with (
            KubeFake.start(time_scale=0.001) as fake,  # etcd compacts after 0.3 real seconds
            ApiClient(Configuration(host=fake.url)) as api,
        ):
            core = client.CoreV1Api(api)
            for name in ("a", "b", "c"):
                await core.create_namespaced_config_map("default", configmap(name, namespace="default"))
            first = await core.list_namespaced_config_map("default", limit=2)
            await asyncio.sleep(0.35)

            with pytest.raises(ApiException) as expired:
                await core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
            status = status_of(expired)
            rest = await core.list_namespaced_config_map(
                "default", limit=2, _continue=status["metadata"]["continue"]
            )

        assert expired.value.status == 410
        assert status["reason"] == "Expired"
        assert status["message"].startswith("The provided continue parameter is too old")
        assert [c.metadata.name for c in rest.items] == ["c"]

    async def test_compaction_expires_continue_tokens(self, fake: KubeFake, api: ApiClient) -> None:
        core = client.CoreV1Api(api)
        first = await core.list_namespace(limit=1)
        fake.compact()

        with pytest.raises(ApiException) as expired:
            await core.list_namespace(limit=1, _continue=first.metadata._continue)

        assert expired.value.status == 410


class TestPatch:
    async def test_merge_patch_deletes_with_null(self, api: ApiClient, namespace: str) -> None:
        core = client.CoreV1Api(api)
        await core.create_namespaced_config_map(namespace, configmap("settings"))

        merge = "application/merge-patch+json"
        patched = await core.patch_namespaced_config_map(  # type: ignore[call-arg]
            "settings",
            namespace,
            {"data": {"key": None, "new": "1"}},
            _content_type=merge,
        )

        assert patched.data == {"new": "1"}

    async def test_strategic_patch_merges_containers_by_name(
        self, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        body = make_deployment()
        body["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
        await apply(body)
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}}

        patched = await client.AppsV1Api(api).patch_namespaced_deployment("web", namespace, patch)

        images = {c.name: c.image for c in patched.spec.template.spec.containers}
        assert images == {"web": "nginx:1.28", "sidecar": "envoy:1"}
        assert patched.metadata.generation == 2

    async def test_json_patch(self, api: ApiClient, namespace: str) -> None:
        core = client.CoreV1Api(api)
        await core.create_namespaced_config_map(namespace, configmap("settings"))

        patched = await core.patch_namespaced_config_map(
            "settings", namespace, [{"op": "replace", "path": "/data/key", "value": "json"}]
        )

        assert patched.data == {"key": "json"}


class TestServerSideApply:
    async def test_apply_creates_and_records_ssa(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        created = await apply(make_deployment())

        applied = [r for r in fake.requests if r.method == "PATCH"]
        assert created.metadata.generation == 1
        assert created.spec.progress_deadline_seconds == 600
        assert [(r.content_type, r.field_manager) for r in applied] == [
            ("application/apply-patch+yaml", "kepler")
        ]
        assert created.metadata.managed_fields[0].manager == "kepler"
        assert created.metadata.managed_fields[0].operation == "Apply"

    async def test_ports_are_keyed_by_number_and_protocol(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """ContainerPort's `x-kubernetes-list-map-keys` are containerPort and protocol (the OpenAPI schema,
        k8s.io/api core/v1 types.go): 53/UDP and 53/TCP are two items, and a re-apply keeps both; protocol
        is defaulted (TCP) before the merge, so an item may leave it out."""
        body = make_deployment()
        container = body["spec"]["template"]["spec"]["containers"][0]
        container["ports"] = [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53},
        ]
        await apply(body)
        await apply(body)
        stored = fake.get("Deployment", "web", namespace) or {}
        ports = stored["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert sorted((p["containerPort"], p["protocol"], p["name"]) for p in ports) == [
            (53, "TCP", "dns-tcp"),
            (53, "UDP", "dns"),
        ]

    async def test_an_empty_associative_list_keeps_what_others_own(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """Applying `env: []` owns no item of an associative list (structured-merge-diff): the variable
        another manager set stays, while one this manager applied before goes."""
        body = make_deployment()
        container = body["spec"]["template"]["spec"]["containers"][0]
        container["env"] = [{"name": "THEIRS", "value": "1"}]
        await apply(body, manager="kubectl")
        container["env"] = [{"name": "OURS", "value": "1"}]
        await apply(body)
        container["env"] = []
        await apply(body)
        stored = fake.get("Deployment", "web", namespace) or {}
        env = stored["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [{"name": "THEIRS", "value": "1"}]

    async def test_empty_lists_are_not_stored(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        """The API types' list fields are `omitempty` (k8s.io/api core/v1 types.go, `json:"env,omitempty"`):
        an `env: []` written by a create reads back as no `env`, and an apply of the same object after it
        changes nothing (same generation)."""
        body = make_deployment()
        body["spec"]["template"]["spec"]["containers"][0]["env"] = []
        created = fake.create(body, manager="kubectl")
        assert "env" not in created["spec"]["template"]["spec"]["containers"][0]
        await apply(body, manager="kubectl")
        stored = fake.get("Deployment", "web", namespace) or {}
        assert stored["metadata"]["generation"] == 1

    async def test_reapplying_the_same_object_is_a_no_op(
        self, fake: KubeFake, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment())
        await fake.wait_for(
            lambda: (
                (fake.get("Deployment", "web", namespace) or {}).get("status", {}).get("availableReplicas")
                == 2
            )
        )
        settled = fake.get("Deployment", "web", namespace) or {}

        again = await apply(make_deployment())

        assert again.metadata.resource_version == settled["metadata"]["resourceVersion"]
        assert again.metadata.generation == 1

    async def test_a_field_owned_by_another_manager_conflicts_unless_forced(
        self, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment(replicas=2))
        await client.AppsV1Api(api).patch_namespaced_deployment_scale(
            "web", namespace, {"spec": {"replicas": 5}}, field_manager="kubectl"
        )

        with pytest.raises(ApiException) as conflict:
            await apply(make_deployment(replicas=3))
        forced = await apply(make_deployment(replicas=3), force=True)

        status = status_of(conflict)
        assert conflict.value.status == 409
        assert status["details"]["causes"] == [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl" using apps/v1',
                "field": ".spec.replicas",
            }
        ]
        assert forced.spec.replicas == 3
        assert [m.manager for m in forced.metadata.managed_fields if m.manager == "kubectl"] == []

    async def test_same_value_shares_ownership_without_conflict(
        self, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment(replicas=2))
        await apply(make_deployment(replicas=2), manager="other")

        shared = await client.AppsV1Api(api).read_namespaced_deployment("web", namespace)

        assert {m.manager for m in shared.metadata.managed_fields} >= {"kepler", "other"}

    async def test_fields_no_longer_applied_are_removed(
        self, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        with_sidecar = make_deployment()
        with_sidecar["metadata"]["labels"]["team"] = "a"
        with_sidecar["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
        await apply(with_sidecar)

        trimmed = await apply(make_deployment())

        assert "team" not in trimmed.metadata.labels
        assert [c.name for c in trimmed.spec.template.spec.containers] == ["web"]


class TestValidation:
    async def invalid(self, fake: KubeFake, apply: Apply, body: Manifest) -> Manifest:
        """Apply `body`; it must be refused with a 422 Status and leave nothing behind."""
        with pytest.raises(ApiException) as rejected:
            await apply(body)
        assert rejected.value.status == 422
        assert fake.get("Deployment", body["metadata"]["name"], body["metadata"]["namespace"]) is None
        status = status_of(rejected)
        assert status["reason"] == "Invalid"
        assert status["details"]["kind"] == "Deployment"
        return status

    async def test_bad_quantity_is_rejected(
        self, fake: KubeFake, apply: Apply, namespace: str, make_deployment: MakeDeployment
    ) -> None:
        body = make_deployment()
        body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "500x"}}

        status = await self.invalid(fake, apply, body)

        cause = status["details"]["causes"][0]
        assert cause["field"] == "spec.template.spec.containers[0].resources.limits.cpu"
        assert "quantities must match" in cause["message"]
        assert status["message"].startswith('Deployment.apps "web" is invalid: ')

    async def test_selector_must_match_template(
        self, fake: KubeFake, apply: Apply, namespace: str, make_deployment: MakeDeployment
    ) -> None:
        body = make_deployment()
        body["spec"]["selector"] = {"matchLabels": {"app": "other"}}

        status = await self.invalid(fake, apply, body)

        assert status["details"]["causes"][0]["field"] == "spec.template.metadata.labels"

    async def test_bad_name_is_rejected(
        self, fake: KubeFake, apply: Apply, namespace: str, make_deployment: MakeDeployment
    ) -> None:
        status = await self.invalid(fake, apply, make_deployment(name="Web_1"))

        assert status["details"]["causes"][0]["field"] == "metadata.name"

    async def test_istio_route_weights_must_sum_to_100(self, api: ApiClient, namespace: str) -> None:
        custom = client.CustomObjectsApi(api)
        route = [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 90},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 20},
        ]
        vs = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [{"route": route}]},
        }

        with pytest.raises(ApiException) as rejected:
            await custom.create_namespaced_custom_object(
                "networking.istio.io", "v1", namespace, "virtualservices", vs
            )
        route[1]["weight"] = 10
        created = await custom.create_namespaced_custom_object(
            "networking.istio.io", "v1", namespace, "virtualservices", vs
        )

        assert rejected.value.status == 422
        assert created["metadata"]["generation"] == 1


class TestDeclaredKinds:
    @pytest.mark.parametrize(
        ("group", "version", "plural", "body"),
        [
            (
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                {
                    "kind": "HorizontalPodAutoscaler",
                    "spec": {
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "minReplicas": 1,
                        "maxReplicas": 5,
                        "metrics": [
                            {
                                "type": "Resource",
                                "resource": {
                                    "name": "cpu",
                                    "target": {"type": "Utilization", "averageUtilization": 70},
                                },
                            }
                        ],
                    },
                },
            ),
            (
                "batch",
                "v1",
                "cronjobs",
                {
                    "kind": "CronJob",
                    "spec": {
                        "schedule": "*/5 * * * *",
                        "jobTemplate": {
                            "spec": {
                                "template": {
                                    "spec": {
                                        "restartPolicy": "OnFailure",
                                        "containers": [{"name": "job", "image": "busybox"}],
                                    }
                                }
                            }
                        },
                    },
                },
            ),
            (
                "networking.k8s.io",
                "v1",
                "ingresses",
                {
                    "kind": "Ingress",
                    "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
                },
            ),
            (
                "networking.istio.io",
                "v1beta1",
                "destinationrules",
                {"kind": "DestinationRule", "spec": {"host": "web"}},
            ),
        ],
    )
    async def test_declared_kinds_are_served_and_validated(
        self, api: ApiClient, namespace: str, group: str, version: str, plural: str, body: Manifest
    ) -> None:
        custom = client.CustomObjectsApi(api)
        manifest = {"apiVersion": f"{group}/{version}", "metadata": {"name": "web"}, **body}
        broken = {**manifest, "spec": {**body["spec"], "bogus": True}}

        created = await custom.create_namespaced_custom_object(group, version, namespace, plural, manifest)
        with pytest.raises(ApiException) as rejected:
            await custom.replace_namespaced_custom_object(group, version, namespace, plural, "web", broken)

        assert created["apiVersion"] == f"{group}/{version}"
        assert rejected.value.status == 422

    async def test_dry_run_validates_without_storing(
        self, fake: KubeFake, api: ApiClient, namespace: str
    ) -> None:
        created = await client.CoreV1Api(api).create_namespaced_config_map(
            namespace, configmap("dry"), dry_run="All"
        )

        assert created.metadata.uid
        assert fake.get("ConfigMap", "dry", namespace) is None


class TestDeletion:
    async def test_a_deleted_pod_is_replaced_by_its_replicaset(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment())
        await fake.wait_for(lambda: len(fake.objects("Pod", namespace)) == 2)
        victim = fake.objects("Pod", namespace)[0]["metadata"]["name"]

        deleted = await client.CoreV1Api(api).delete_namespaced_pod(victim, namespace)
        await fake.wait_for(
            lambda: victim not in {p["metadata"]["name"] for p in fake.objects("Pod", namespace)}
        )

        assert deleted.metadata.name == victim
        assert len(fake.objects("Pod", namespace)) == 2

    async def test_deleting_a_deployment_deletes_its_replicasets_and_pods(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment())
        await fake.wait_for(lambda: len(fake.objects("Pod", namespace)) == 2)

        await client.AppsV1Api(api).delete_namespaced_deployment("web", namespace)
        await fake.wait_for(
            lambda: fake.objects("ReplicaSet", namespace) == [] and fake.objects("Pod", namespace) == []
        )

    async def test_orphan_propagation_keeps_dependents(
        self, fake: KubeFake, api: ApiClient, namespace: str, make_deployment: MakeDeployment, apply: Apply
    ) -> None:
        await apply(make_deployment())
        await fake.wait_for(lambda: len(fake.objects("ReplicaSet", namespace)) == 1)

        await client.AppsV1Api(api).delete_namespaced_deployment(
            "web", namespace, propagation_policy="Orphan"
        )

        [orphan] = fake.objects("ReplicaSet", namespace)
        assert "ownerReferences" not in orphan["metadata"]


class TestFaultsAndAuth:
    async def test_injected_5xx_then_recovery(self, fake: KubeFake, api: ApiClient) -> None:
        fake.inject(ServerError(status=503, times=2, path="/namespaces"))
        core = client.CoreV1Api(api)

        failures = []
        for _ in range(2):
            with pytest.raises(ApiException) as failed:
                await core.list_namespace()
            failures.append(failed.value.status)
        listed = await core.list_namespace()

        assert failures == [503, 503]
        assert "default" in {n.metadata.name for n in listed.items}

    async def test_injected_delay(self, fake: KubeFake, api: ApiClient) -> None:
        fake.inject(Delay(seconds=0.2, times=1))

        with pytest.raises(TimeoutError):
            await client.CoreV1Api(api).list_namespace(_request_timeout=0.05)

    async def test_required_token(self, fake: KubeFake) -> None:
        fake.require_token("s3cret")
        good = Configuration(
            host=fake.url, api_key={"BearerToken": "s3cret"}, api_key_prefix={"BearerToken": "Bearer"}
        )

        async with ApiClient(Configuration(host=fake.url)) as anonymous, ApiClient(good) as authorized:
            with pytest.raises(ApiException) as denied:
                await client.CoreV1Api(anonymous).list_namespace()
            listed = await client.CoreV1Api(authorized).list_namespace()

        assert denied.value.status == 401
        assert listed.items


class TestInjectedRejection:
    async def test_a_write_is_refused_with_the_status_given(self, fake: KubeFake, api: ApiClient) -> None:
        """A validating admission webhook's denial reaches the client as a Status with the webhook's
        message (apiserver pkg/admission/plugin/webhook/errors/statuserror.go); reads are not refused."""
        message = (
            'admission webhook "policy.example.com" denied the request: images must come from the mirror'
        )
        fake.inject(Reject(status=400, reason="BadRequest", message=message, path="/configmaps"))
        core = client.CoreV1Api(api)
        await core.list_namespaced_config_map("default")
        with pytest.raises(ApiException) as rejected:
            await core.create_namespaced_config_map("default", configmap("c", namespace="default"))
        assert (status_of(rejected)["code"], status_of(rejected)["message"]) == (400, message)
        await core.create_namespaced_config_map("default", configmap("c", namespace="default"))
