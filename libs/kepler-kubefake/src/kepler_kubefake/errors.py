"""Failures rendered as the `Status` objects the real API server sends, so client error handling is
exercised."""

from dataclasses import dataclass, field
from typing import Any

from kepler_kubefake.kinds import Obj, ResourceKind


@dataclass(frozen=True, slots=True)
class Cause:
    reason: str
    message: str
    field: str = ""

    def to_json(self) -> Obj:
        out: Obj = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass(slots=True)
class ApiError(Exception):
    """Raised anywhere below the HTTP layer; the HTTP layer turns it into a `Status` response."""

    code: int
    reason: str
    message: str
    details: Obj = field(default_factory=dict)
    list_meta: Obj = field(default_factory=dict)  # a Status's own ListMeta (an inconsistent `continue`)

    def status(self) -> Obj:
        out = status_object(self.code, self.reason, self.message, self.details)
        out["metadata"] = dict(self.list_meta)
        return out


def status_object(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A failure Status; an empty `reason` is left out, as the apiserver does for errors it does not
    recognise (they become a 500 with only a message)."""
    out: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if not reason:
        del out["reason"]
    if details:
        out["details"] = details
    return out


def success_status(kind: ResourceKind, name: str, uid: str) -> Obj:
    """What DELETE answers for kinds that do not return the deleted object (deployments, configmaps…)."""
    details = {"name": name, "group": kind.group, "kind": kind.plural, "uid": uid}
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _details(kind: ResourceKind, name: str, **extra: Any) -> Obj:
    out: Obj = {"name": name, "kind": kind.plural}
    if kind.group:
        out["group"] = kind.group
    return out | extra


def not_found(kind: ResourceKind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.resource} "{name}" not found', _details(kind, name))


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
    )


def namespace_terminating(kind: ResourceKind, name: str, namespace: str) -> ApiError:
    """The NamespaceLifecycle admission plugin's refusal (`plugin/pkg/admission/namespace/lifecycle`)."""
    message = (
        f'{kind.resource} "{name}" is forbidden: unable to create new content in namespace {namespace} '
        "because it is being terminated"
    )
    cause = Cause("NamespaceTerminating", f"namespace {namespace} is being terminated", "metadata.namespace")
    return ApiError(403, "Forbidden", message, _details(kind, name, causes=[cause.to_json()]))


def rbac_forbidden(
    qualified_resource: str, group: str, resource: str, name: str, verb: str, namespace: str, user: str
) -> ApiError:
    """An authorization denial as `endpoints/handlers/responsewriters.forbiddenMessage` words it."""
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    reason = f'User "{user}" cannot {verb} resource "{resource}" in API group "{group}" {scope}'
    subject = f'{qualified_resource} "{name}"' if name else qualified_resource
    details: Obj = {"kind": resource.split("/", 1)[0]}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {reason}", details)


def too_many_requests(retry_after: int) -> ApiError:
    """`errors.NewTooManyRequests`: a Status for a 429 (APF itself answers in plain text)."""
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
    )


def request_entity_too_large(limit: int) -> ApiError:
    """The 3 MiB body limit of `endpoints/handlers/rest.go` (`limitedReadBody`)."""
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def etcd_request_too_large() -> ApiError:
    """etcd refusing a write over `--max-request-bytes` (1.5 MiB); the apiserver passes it on as a 500
    without a reason (kubernetes#112152)."""
    return ApiError(500, "", "etcdserver: request is too large")


def typed_patch_failed(
    kind: ResourceKind, api_version: str, namespace: str | None, name: str, why: str
) -> ApiError:
    """Server-side apply of a field the schema does not declare: a plain error, so a 500 without a reason
    (kubernetes#122480, `managedfields/internal/structuredmerge.go`)."""
    gvk = f"{api_version if '/' in api_version else '/' + api_version}, Kind={kind.kind}"
    where = f"{namespace}/{name}" if namespace else f"/{name}"
    return ApiError(500, "", f"failed to create typed patch object ({where}; {gvk}): {why}")


def already_exists(kind: ResourceKind, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{kind.resource} "{name}" already exists', _details(kind, name))


def conflict(kind: ResourceKind, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    return ApiError(409, "Conflict", message, _details(kind, name))


def apply_conflict(kind: ResourceKind, name: str, conflicts: list[tuple[str, str, str]]) -> ApiError:
    """409 for server-side apply: one cause per (manager, apiVersion, field) like structured-merge-diff."""
    causes = [
        Cause("FieldManagerConflict", f'conflict with "{m}" using {v}', f).to_json() for m, v, f in conflicts
    ]
    if len(conflicts) == 1:
        manager, version, path = conflicts[0]
        message = f'Apply failed with 1 conflict: conflict with "{manager}" using {version}: {path}'
    else:
        lines = "".join(f'\n- conflict with "{m}" using {v}: {f}' for m, v, f in conflicts)
        message = f"Apply failed with {len(conflicts)} conflicts:{lines}"
    return ApiError(409, "Conflict", message, _details(kind, name, causes=causes))


def invalid(kind: ResourceKind, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid, with the `Kind.group "name" is invalid: field: message` text the real server builds."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    message = f'{kind.qualified_kind} "{name}" is invalid: {summary}'
    details: Obj = {"name": name, "kind": kind.kind, "causes": [c.to_json() for c in causes]}
    if kind.group:
        details["group"] = kind.group
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method} {path})",
    )


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        f"application/apply-patch+yaml ({content_type})",
    )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def gone(requested: str, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def too_large_resource_version(wanted: int, current: int) -> ApiError:
    """`storage.NewTooLargeResourceVersionError`: a Timeout asking the client to retry after 1 s."""
    cause = Cause("ResourceVersionTooLarge", "Too large resource version").to_json()
    return ApiError(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {wanted}, current: {current}",
        {"causes": [cause], "retryAfterSeconds": 1},
    )


def continue_expired(inconsistent: str) -> ApiError:
    """410 for a LIST whose `continue` token etcd no longer serves; the Status offers a token that goes on
    without consistency."""
    message = (
        "The provided continue parameter is too old to display a consistent list result. You can start a new "
        "list without the continue parameter, or use the continue token in this response to retrieve the "
        "remainder of the results. Continuing with the provided token results in an inconsistent list - "
        "objects that were created, modified, or deleted between the time the first chunk was returned and "
        "now may show up in the list."
    )
    return ApiError(410, "Expired", message, list_meta={"continue": inconsistent})


def page_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
