"""Kubernetes, as Kepler's services need it: apply, read, watch, pods, events; one pooled ApiClient
per cluster.

Objects travel as plain dicts (`_preload_content=False`): app-service never needs the generated models,
and skipping them keeps a watch of thousands of objects cheap.
"""

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kepler_kube.base import (
    APPLY_PATCH,
    FIELD_MANAGER,
    ClusterCredentials,
    ClusterUnavailable,
    KubeError,
    KubeNotFound,
    NotInCluster,
    Obj,
    WatchExpired,
    rest_path,
)
from kepler_kube.status import Answer, error_of, retry_of


class KubernetesCluster:
    """The real client: kubernetes-asyncio's ApiClient (aiohttp underneath), unmodified."""

    RETRIES = 4

    def __init__(
        self, credentials: ClusterCredentials, timeout: float = 10.0, watch_seconds: int = 10
    ) -> None:
        self.name = credentials.name
        self._files: list[Path] = []
        try:
            self._api = client.ApiClient(self._configuration(credentials))
        except BaseException:  # credentials that do not load (ssl.SSLError): leave no key file behind
            self._remove_files()
            raise
        self._timeout, self._watch_seconds = timeout, watch_seconds

    def _configuration(self, creds: ClusterCredentials) -> client.Configuration:
        config = client.Configuration(host=creds.api_url.rstrip("/"))
        if creds.token:
            config.api_key = {"BearerToken": creds.token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        config.verify_ssl = not creds.insecure_skip_tls_verify
        config.ssl_ca_cert = self._file(creds.ca_data)
        config.cert_file = self._file(creds.client_cert)
        config.key_file = self._file(creds.client_key)
        return config

    def _file(self, data: str | None) -> str | None:
        """kubernetes-asyncio wants certificates as files: private temp files, removed on close."""
        if not data:
            return None
        handle = tempfile.NamedTemporaryFile("w", delete=False, prefix="kepler-", suffix=".pem")  # noqa: SIM115
        with handle:
            handle.write(data)
        self._files.append(Path(handle.name))
        return handle.name

    async def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        """The cluster's response, whatever its status. Anything raised building or sending the request is
        no answer from the cluster, so it is unavailable (503 naming it), never a 500: connection errors,
        timeouts, aiohttp's ValueErrors (an InvalidURL; credentials in the URL next to a token). Only the
        type is told: a message may quote the URL."""
        try:
            return await self._api.call_api(path, method, auth_settings=["BearerToken"], **kwargs)
        except ApiException:  # kubernetes-asyncio could not build the request from Kepler's own arguments
            raise
        except Exception as exc:
            raise ClusterUnavailable(self.name, type(exc).__name__) from exc

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The response when the cluster answered 2xx. 429 (API Priority and Fairness) and 5xx are retried
        with backoff, a few times within about ten seconds (every request Kepler sends is idempotent:
        server-side apply, reads, deletes); any other answer raises its typed error."""
        for attempt in range(1, self.RETRIES + 1):
            response = await self._send(
                method, path, _preload_content=False, _request_timeout=self._timeout, **kwargs
            )
            if 200 <= response.status <= 299:
                return response
            answer = await _answer(response)
            retry = retry_of(answer, attempt)
            if retry is None or attempt == self.RETRIES:
                raise error_of(self.name, answer, retry)
            await asyncio.sleep(retry.seconds)
        raise AssertionError("unreachable: the last attempt raises")

    async def _json(self, method: str, path: str, **kwargs: Any) -> Obj:
        response = await self._call(method, path, **kwargs)
        try:
            body: Obj = json.loads(await response.read())
        finally:
            response.release()
        return body

    async def apply(self, obj: Obj) -> Obj:
        """Server-side apply as `kepler`, forcing: Kepler is the source of truth for the fields it sets."""
        metadata = obj["metadata"]
        path = rest_path(obj["kind"], metadata.get("namespace"), metadata["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        return await self._json(
            "PATCH",
            path,
            query_params=query,
            body=obj,
            header_params={"Content-Type": APPLY_PATCH, "Accept": "application/json"},
        )

    async def apply_scale(self, namespace: str, name: str, replicas: int) -> Obj:
        """Through the scale subresource, as `kepler-scale`: the next release's apply takes replicas back."""
        path = rest_path("Deployment", namespace, name) + "/scale"
        try:
            return await self._json(
                "PATCH",
                path,
                query_params=[("fieldManager", f"{FIELD_MANAGER}-scale")],
                body={"spec": {"replicas": replicas}},
                header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
            )
        except KubeNotFound as exc:
            raise NotInCluster(self.name, "Deployment", namespace, name) from exc

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            return await self._json(
                "GET", rest_path(kind, namespace, name), header_params={"Accept": "application/json"}
            )
        except KubeNotFound:
            return None

    async def list(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Obj:
        query = [("labelSelector", label_selector)] if label_selector else []
        query += [("fieldSelector", field_selector)] if field_selector else []
        return await self._json(
            "GET",
            rest_path(kind, namespace),
            query_params=query,
            header_params={"Accept": "application/json"},
        )

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            await self._json(
                "DELETE", rest_path(kind, namespace, name), header_params={"Accept": "application/json"}
            )
        except KubeNotFound:
            return False
        return True

    async def watch(
        self,
        kind: str,
        namespace: str | None,
        resource_version: str | None,
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Events from `resource_version` until the server ends the stream, which it does after
        `watch_seconds`; a stream still open well after that (a half-open connection) is cut by the client's
        own timeout, and ends like a server timeout. Raises WatchExpired when the version is out of the
        server's window (410, as an ERROR event or an HTTP status) or newer than it has seen (504
        `ResourceVersionTooLarge`): re-list and watch from the list's version."""
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self._watch_seconds)),
        ]
        query += [("resourceVersion", resource_version)] if resource_version else []
        query += [("fieldSelector", field_selector)] if field_selector else []
        query += [("labelSelector", label_selector)] if label_selector else []
        response = await self._send(
            "GET",
            rest_path(kind, namespace),
            query_params=query,
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(
                total=self._watch_seconds + self._timeout, sock_connect=self._timeout
            ),
            header_params={"Accept": "application/json"},
        )
        if not 200 <= response.status <= 299:
            answer = await _answer(response)
            if answer.expired:
                raise WatchExpired(answer.message)
            raise error_of(self.name, answer, retry_of(answer, 1))
        try:
            async for line in response.content:
                if line.strip():
                    yield self._event(json.loads(line))
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
            return  # a dropped or stalled stream ends like a timeout: the caller resumes from its version
        finally:
            response.release()

    def _event(self, event: Obj) -> tuple[str, Obj]:
        """ERROR events carry a Status: 410 Expired (the usual form from the watch cache) is WatchExpired;
        any other is the error it names."""
        if event.get("type") != "ERROR":
            return event["type"], event["object"]
        answer = Answer.of_status(event.get("object"))
        if answer.expired:
            raise WatchExpired(answer.message)
        raise error_of(self.name, answer, None)

    async def ping(self) -> None:
        """Raises ClusterUnavailable when the API server does not answer, or refuses Kepler's credentials or
        what Kepler needs of it: so not `/version`, which anonymous users may read, but a LIST Kepler needs
        anyway (namespaces)."""
        try:
            await self._json(
                "GET",
                "/api/v1/namespaces",
                query_params=[("limit", "1")],
                header_params={"Accept": "application/json"},
            )
        except KubeError as exc:
            raise ClusterUnavailable(
                self.name, f"the API server answered {exc.answered} {exc.reason}"
            ) from exc

    async def close(self) -> None:
        await self._api.close()
        self._remove_files()

    def _remove_files(self) -> None:
        for path in self._files:
            with contextlib.suppress(OSError):
                path.unlink()


async def _answer(response: Any) -> Answer:
    try:
        body = await response.read()
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
        body = b""
    finally:
        response.release()
    return Answer.of_response(response.status, response.reason, response.headers.get("Retry-After"), body)
