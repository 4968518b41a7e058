"""app-service: namespaces, apps, releases and their life on Kubernetes."""

from kepler_kit.contracts import Service

SERVICE = Service.APP.value  # its name in audit rows, queues and logs, defined by the contracts
