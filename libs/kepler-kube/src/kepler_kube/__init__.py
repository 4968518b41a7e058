"""Kubernetes as Kepler's services reach it, shared by app-service (apply, watch, status) and
terminal-service (exec, logs): one `Kube` protocol, its kubernetes-asyncio implementation, and the
registry that builds one pooled client per cluster from the cluster's sealed credentials. The clusters'
CRUD stays in app-service's clusters domain."""
