"""app-service: namespaces, apps, releases and their life on Kubernetes."""

SERVICE = "app-service"  # its name in audit rows, queues and logs
