"""The activity feed: the platform event log as each caller may see it, listed (`GET /api/v1/events`) and
followed live over Server-Sent Events (`GET /api/v1/events/stream`) from one per-process tail."""
