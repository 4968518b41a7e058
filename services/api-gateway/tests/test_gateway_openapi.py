"""The OpenAPI merge as a pure function over dict documents."""

from typing import Any

from kepler_gateway.openapi import DOMAIN_TAGS, merge_openapi, rewrite_refs

Doc = dict[str, Any]
PROBLEM = {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "integer"}}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def operation(op_id: str, schema: dict[str, Any] | None = None, tags: list[str] | None = None) -> Doc:
    op: Doc = {
        "operationId": op_id,
        "responses": {
            "200": {"content": {"application/json": {"schema": schema or {"type": "object"}}}},
            "404": {"content": {"application/problem+json": {"schema": ref("Problem")}}},
        },
    }
    if tags is not None:
        op["tags"] = tags
    return op


def document(paths: dict[str, Doc], schemas: dict[str, Any] | None = None) -> Doc:
    return {
        "openapi": "3.1.0",
        "info": {"title": "x", "version": "1"},
        "paths": paths,
        "components": {"schemas": {"Problem": PROBLEM, **(schemas or {})}},
    }


def owner(path: str) -> str:
    if "/builds" in path:
        return "build-service"
    return "app-service" if path.startswith("/api/v1/namespaces") else "api-gateway"


class TestPaths:
    def test_paths_of_all_services_in_one_document(self) -> None:
        result = merge_openapi(
            {
                "app-service": document({"/api/v1/namespaces": {"get": operation("listNamespaces")}}),
                "build-service": document(
                    {"/api/v1/namespaces/{ns}/builds": {"get": operation("listBuilds")}}
                ),
            }
        )

        assert set(result.document["paths"]) == {"/api/v1/namespaces", "/api/v1/namespaces/{ns}/builds"}
        assert result.conflicts == []
        assert result.document["openapi"] == "3.1.0"
        assert result.document["info"]["title"] == "Kepler API"
        assert result.document["servers"] == [{"url": "/"}]

    def test_a_path_defined_twice_is_a_conflict_and_the_first_wins(self) -> None:
        result = merge_openapi(
            {
                "app-service": document({"/api/v1/things": {"get": operation("listThings")}}),
                "build-service": document({"/api/v1/things": {"post": operation("makeThing")}}),
            }
        )

        assert result.conflicts == ["path /api/v1/things is defined by both app-service and build-service"]
        assert list(result.document["paths"]["/api/v1/things"]) == ["get"]
        assert result.document["x-kepler-conflicts"] == result.conflicts

    def test_a_path_routed_elsewhere_is_a_conflict(self) -> None:
        result = merge_openapi(
            {"app-service": document({"/api/v1/namespaces/{ns}/builds": {"get": operation("listBuilds")}})},
            owner_of=owner,
        )

        assert result.document["paths"] == {}
        assert result.conflicts == [
            "path /api/v1/namespaces/{ns}/builds is documented by app-service but the gateway routes it to "
            "build-service"
        ]

    def test_unavailable_services_are_listed(self) -> None:
        result = merge_openapi({"app-service": document({}), "alert-service": None, "terminal-service": None})

        assert result.unavailable == ["alert-service", "terminal-service"]
        assert result.document["x-kepler-unavailable"] == ["alert-service", "terminal-service"]


class TestComponents:
    def test_identical_schemas_are_shared(self) -> None:
        result = merge_openapi(
            {
                "app-service": document(
                    {"/a": {"get": operation("a", ref("Page"))}}, {"Page": {"type": "object"}}
                ),
                "build-service": document(
                    {"/b": {"get": operation("b", ref("Page"))}}, {"Page": {"type": "object"}}
                ),
            }
        )

        assert set(result.document["components"]["schemas"]) == {"Problem", "Page"}
        assert result.renamed_components == {}

    def test_one_problem_schema_for_every_error(self) -> None:
        result = merge_openapi(
            {name: document({f"/{name}": {"get": operation(name)}}) for name in ("a-service", "b-service")}
        )

        schemas = result.document["components"]["schemas"]
        assert list(schemas) == ["Problem"]
        errors = [
            op["responses"]["404"] for item in result.document["paths"].values() for op in item.values()
        ]
        assert all(e["content"]["application/problem+json"]["schema"] == ref("Problem") for e in errors)

    def test_different_schema_under_a_taken_name_is_prefixed_and_refs_follow(self) -> None:
        app_status = {"type": "object", "properties": {"apps": {"type": "integer"}}}
        build_status = {"type": "object", "properties": {"queued": {"type": "integer"}}}
        result = merge_openapi(
            {
                "app-service": document(
                    {"/a": {"get": operation("a", ref("Status"))}}, {"Status": app_status}
                ),
                "build-service": document(
                    {"/b": {"get": operation("b", ref("Status"))}}, {"Status": build_status}
                ),
            }
        )

        schemas = result.document["components"]["schemas"]
        assert schemas["Status"] == app_status
        assert schemas["BuildService_Status"] == build_status
        b = result.document["paths"]["/b"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert b == ref("BuildService_Status")
        assert result.renamed_components == {
            "build-service": {"schemas/Status": "schemas/BuildService_Status"}
        }

    def test_a_schema_referring_to_a_renamed_one_is_renamed_too(self) -> None:
        """Same `Page` text in both, but each points at its own `Item`: they are different schemas."""
        page = {"type": "object", "properties": {"items": {"type": "array", "items": ref("Item")}}}
        result = merge_openapi(
            {
                "app-service": document({}, {"Page": page, "Item": {"type": "string"}}),
                "build-service": document({}, {"Page": page, "Item": {"type": "integer"}}),
            }
        )

        schemas = result.document["components"]["schemas"]
        assert schemas["BuildService_Page"]["properties"]["items"]["items"] == ref("BuildService_Item")
        assert schemas["Page"]["properties"]["items"]["items"] == ref("Item")
        assert schemas["BuildService_Item"] == {"type": "integer"}

    def test_sources_are_not_modified(self) -> None:
        build = document({"/b": {"get": operation("same", ref("Status"))}}, {"Status": {"type": "integer"}})
        before = repr(build)

        merge_openapi(
            {"app-service": document({"/a": {"get": operation("same")}}, {"Status": {}}), "b": build}
        )

        assert repr(build) == before

    def test_discriminator_mappings_follow_renames(self) -> None:
        node = {
            "oneOf": [ref("Cat")],
            "discriminator": {"propertyName": "kind", "mapping": {"cat": "#/components/schemas/Cat"}},
        }

        rewritten = rewrite_refs(node, {("schemas", "Cat"): "Pets_Cat"})

        assert rewritten["oneOf"] == [ref("Pets_Cat")]
        assert rewritten["discriminator"]["mapping"] == {"cat": "#/components/schemas/Pets_Cat"}


class TestOperationIds:
    def test_colliding_ids_are_prefixed_with_each_service(self) -> None:
        result = merge_openapi(
            {
                "app-service": document(
                    {"/a": {"get": operation("getStatus")}, "/c": {"get": operation("only")}}
                ),
                "build-service": document({"/b": {"get": operation("getStatus")}}),
            }
        )

        ids = {path: item["get"]["operationId"] for path, item in result.document["paths"].items()}
        assert ids == {"/a": "appServiceGetStatus", "/b": "buildServiceGetStatus", "/c": "only"}
        assert result.renamed_operations == {
            "app-service": {"getStatus": "appServiceGetStatus"},
            "build-service": {"getStatus": "buildServiceGetStatus"},
        }

    def test_prefixed_id_that_is_taken_gets_a_number(self) -> None:
        result = merge_openapi(
            {
                "app-service": document(
                    {"/a": {"get": operation("x")}, "/z": {"get": operation("appServiceX")}}
                ),
                "build-service": document({"/b": {"get": operation("x")}}),
            }
        )

        ids = sorted(item["get"]["operationId"] for item in result.document["paths"].values())
        assert ids == ["appServiceX", "appServiceX2", "buildServiceX"]


class TestTags:
    def test_domain_tags_are_listed_with_descriptions(self) -> None:
        tags = merge_openapi({}).document["tags"]

        assert [t["name"] for t in tags] == list(DOMAIN_TAGS)
        assert [t["name"] for t in tags][:7] == [
            "namespaces",
            "apps",
            "builds",
            "alerts",
            "terminal",
            "system",
            "webhooks",
        ]
        assert all(t["description"] == DOMAIN_TAGS[t["name"]] for t in tags)

    def test_operations_get_the_domain_tag_of_their_path_unless_already_tagged_so(self) -> None:
        result = merge_openapi(
            {
                "app-service": document(
                    {
                        "/untagged": {"get": operation("a")},
                        "/foreign": {"get": operation("b", tags=["Namespaces API"])},
                        "/kept": {"get": operation("c", tags=["apps"])},
                    }
                )
            },
            tag_for=lambda path: {"/untagged": "namespaces", "/foreign": "namespaces"}.get(path),
        )

        tags = {path: item["get"]["tags"] for path, item in result.document["paths"].items()}
        assert tags == {"/untagged": ["namespaces"], "/foreign": ["namespaces"], "/kept": ["apps"]}

    def test_paths_without_a_domain_fall_back_to_system(self) -> None:
        result = merge_openapi({"api-gateway": document({"/api/v1/status": {"get": operation("getStatus")}})})

        assert result.document["paths"]["/api/v1/status"]["get"]["tags"] == ["system"]
