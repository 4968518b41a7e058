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

    def status(self) -> Obj:
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    out: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
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
    message = (
        f'{kind.resource} "{name}" is forbidden: unable to create new content in namespace {namespace} '
        "because it is being terminated"
    )
    return ApiError(403, "Forbidden", message, _details(kind, name))


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


def page_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
