"""`KubeFake`: the fake API server with its controllers, started on a loopback port for tests or the
sandbox."""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import yaml
from aiohttp import web

from kepler_kubefake.behaviours import Behaviour, PodBehaviour
from kepler_kubefake.clock import Clock
from kepler_kubefake.controller import Controller
from kepler_kubefake.faults import Fault, Faults
from kepler_kubefake.http import Frontend, RecordedRequest
from kepler_kubefake.kinds import DEFAULT_KINDS, Obj, Registry, ResourceKind, clone
from kepler_kubefake.namespaces import NamespaceLifecycle
from kepler_kubefake.resources import Api, Target, WriteOptions
from kepler_kubefake.scheduler import DEFAULT_ALLOCATABLE
from kepler_kubefake.schemas import warm
from kepler_kubefake.state import StateFile
from kepler_kubefake.store import Change, Store
from kepler_kubefake.watch import WatchSettings

GoneMode = Literal["event", "http"]
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CONTAINER_START = 2.0  # Kubernetes seconds from a pod's binding to its containers running (pull + start)
QUOTA_EXCEEDED = (
    "exceeded quota: compute-resources, requested: limits.cpu=500m, used: limits.cpu=4, limited: limits.cpu=4"
)


class KubeFake:
    """A stateful Kubernetes API server on a loopback port that the unmodified kubernetes-asyncio client talks
    to.

    Time: `time_scale` is real seconds per Kubernetes second, for every duration the fake simulates
    (progressDeadlineSeconds, minReadySeconds, probes, CrashLoopBackOff, grace periods, garbage collection).
    `ready_delay` is the real seconds a container takes to start (image pull, create, start); by default
    `CONTAINER_START` (2) Kubernetes seconds. A container without a readinessProbe is Ready once started.
    `crash_period` is how many Kubernetes seconds a `crashloop` container runs before it exits (default 0:
    it fails at startup). `node_allocatable` is what the one node offers the scheduler (None: unlimited).

    Real-cluster defaults, each an option: watch history per kind is `history_size` events and at most
    `watch_window` Kubernetes seconds old (None: no age limit); an expired resourceVersion is answered as an
    ERROR event (`gone_mode="event"`; "http" answers 410/504 on the request itself); a watch from a version
    newer than the server's waits `fresh_wait` Kubernetes seconds, then fails 504 ResourceVersionTooLarge;
    a deleted namespace stays Terminating for `namespace_delete_delay` Kubernetes seconds; a list's
    `continue` token expires (410) once etcd compacts its revision, `etcd_compaction` Kubernetes seconds
    later (None: never; `compact()` always does); with a `token`,
    a request without one is 401 unless `anonymous` (then it is system:anonymous).
    """

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        ready_delay: float | None = None,
        crash_period: float = 0.0,
        node_allocatable: Mapping[str, str] | None = DEFAULT_ALLOCATABLE,
        token: str | None = None,
        anonymous: bool = False,
        history_size: int = 10_000,
        watch_window: float | None = 75.0,
        fresh_wait: float = 3.0,
        bookmark_interval: float = 1.0,
        gone_mode: GoneMode = "event",
        namespace_delete_delay: float = 5.0,
        etcd_compaction: float | None = 300.0,
        kinds: Iterable[ResourceKind] = DEFAULT_KINDS,
        state_file: Path | None = None,
    ) -> None:
        self.registry = Registry(kinds)
        self.clock = Clock(time_scale)
        window = self.clock.real_seconds(watch_window) if watch_window is not None else None
        etcd_window = self.clock.real_seconds(etcd_compaction) if etcd_compaction is not None else None
        self.store = Store(history_size, window, etcd_window)
        self.api = Api(self.registry, self.store, self.clock)
        self.namespaces = NamespaceLifecycle(self.api, self.clock, namespace_delete_delay)
        self.faults = Faults()
        start = self.clock.real_seconds(CONTAINER_START) if ready_delay is None else ready_delay
        self.controller = Controller(self.api, self.clock, start, crash_period, node_allocatable)
        settings = WatchSettings(
            bookmark_interval,
            gone_as_event=gone_mode == "event",
            fresh_wait=self.clock.real_seconds(fresh_wait),
        )
        self._frontend = Frontend(self.api, self.registry, self.faults, settings, token, anonymous)
        self._runner: web.AppRunner | None = None
        self.state = StateFile(state_file, self.store, self.registry) if state_file else None
        self.url = ""

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        ready_delay: float | None = None,
        crash_period: float = 0.0,
        node_allocatable: Mapping[str, str] | None = DEFAULT_ALLOCATABLE,
        token: str | None = None,
        anonymous: bool = False,
        history_size: int = 10_000,
        watch_window: float | None = 75.0,
        fresh_wait: float = 3.0,
        bookmark_interval: float = 1.0,
        gone_mode: GoneMode = "event",
        namespace_delete_delay: float = 5.0,
        etcd_compaction: float | None = 300.0,
        kinds: Iterable[ResourceKind] = DEFAULT_KINDS,
        state_file: Path | None = None,
    ) -> AsyncIterator["KubeFake"]:
        """Construct with the same options as `KubeFake(...)`, listen, and close on exit."""
        fake = cls(
            time_scale=time_scale,
            ready_delay=ready_delay,
            crash_period=crash_period,
            node_allocatable=node_allocatable,
            token=token,
            anonymous=anonymous,
            history_size=history_size,
            watch_window=watch_window,
            fresh_wait=fresh_wait,
            bookmark_interval=bookmark_interval,
            gone_mode=gone_mode,
            namespace_delete_delay=namespace_delete_delay,
            etcd_compaction=etcd_compaction,
            kinds=kinds,
            state_file=state_file,
        )
        await fake.open(host, port)
        try:
            yield fake
        finally:
            await fake.close()

    async def open(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen (port 0: an ephemeral port), seed the system namespaces and start the controllers."""
        warm([k for k in self.registry if k.validation == "schema"])
        if self.state is not None:
            self.state.load()
        for name in SYSTEM_NAMESPACES:
            if self.get("Namespace", name) is None:
                self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        if self.state is not None:
            self.state.follow()
        self.controller.start()
        self._runner = web.AppRunner(self._frontend.app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound_port}"
        self._frontend.server_address = f"{host}:{bound_port}"

    async def close(self) -> None:
        self.namespaces.close()
        self.controller.events.close()
        self.store.close()
        await self.controller.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.state is not None:
            self.state.close()

    # ---- looking inside

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._frontend.requests

    @property
    def controller_errors(self) -> list[str]:
        """Failures inside the fake's controllers; a test suite can assert this stays empty."""
        return self.controller.errors

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Copies of the stored objects of a kind (Kind, plural or short name), sorted by namespace and
        name."""
        return clone(self.store.objects(self.registry.named(kind), namespace))

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        obj = self.store.get(self.registry.named(kind), namespace, name)
        return clone(obj) if obj is not None else None

    def create(self, obj: Obj, manager: str = "kubefake") -> Obj:
        """Seed an object through the same validation and defaulting as a client's POST (e.g. for import
        tests)."""
        kind = self.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if kind is None:
            raise KeyError(f"kubefake serves no {obj.get('apiVersion')} {obj.get('kind')}")
        namespace = obj.get("metadata", {}).get("namespace") if kind.namespaced else None
        storage = self.registry.storage(kind)
        view = kind if storage is not kind else None
        target = Target(storage, obj["apiVersion"].rsplit("/", 1)[-1], namespace, view=view)
        return clone(self.api.create(target, obj, WriteOptions(manager)))

    # ---- steering

    def inject(self, fault: Fault) -> None:
        self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def compact(self) -> None:
        """Forget the watch history: every resourceVersion handed out so far now answers 410 Gone."""
        self.store.compact()

    def require_token(self, token: str | None) -> None:
        self._frontend.token = token

    def terminate_namespace(self, name: str, hold: bool = False) -> Obj:
        """DELETE a namespace as a client would; `hold` keeps it Terminating (its content deleted, creates in
        it refused) until `release_namespace`."""
        namespace = self.store.get(self.registry.named("Namespace"), None, name)
        if namespace is None:
            raise KeyError(f"no namespace {name!r}")
        return clone(self.namespaces.terminate(namespace, hold=hold))

    def release_namespace(self, name: str) -> None:
        """Let a namespace held Terminating finish its deletion."""
        self.namespaces.release(name)

    def set_pod_behaviour(
        self, namespace: str, deployment: str, behaviour: Behaviour | PodBehaviour | str | None
    ) -> None:
        """Override the image-name convention for one Deployment's pods (None restores it):
        `PodBehaviour.CRASHLOOP`, `"crashafter:5"` (runs 5 s, exits 1), `"crashafter:5:exit=2"`,
        `Behaviour.crash_after(5)`, `"ignoresigterm"`…"""
        self.controller.set_behaviour(
            namespace, deployment, Behaviour.parse(behaviour) if behaviour else None
        )

    def fail_replica_creation(self, namespace: str, deployment: str, message: str = QUOTA_EXCEEDED) -> None:
        """Refuse the pods of this Deployment's ReplicaSets as an admission plugin would (`pods "…-" is
        forbidden: <message>`): ReplicaFailure=True/FailedCreate on the ReplicaSet and the Deployment."""
        self.controller.fail_creation(namespace, deployment, message)

    def allow_replica_creation(self, namespace: str, deployment: str) -> None:
        """Undo `fail_replica_creation` (the quota was raised): the ReplicaSet creates its pods."""
        self.controller.fail_creation(namespace, deployment, None)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checking on every change; TimeoutError otherwise."""
        changed = asyncio.Event()

        def listener(_: Change) -> None:
            changed.set()

        self.store.listen(listener)
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    await changed.wait()
                    changed.clear()
        finally:
            self.store.unlisten(listener)

    def write_kubeconfig(self, path: Path, context: str = "kubefake") -> None:
        """A kubeconfig pointing at this server, for kubectl or any client that reads one."""
        user: Obj = {"token": self._frontend.token} if self._frontend.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": user}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
