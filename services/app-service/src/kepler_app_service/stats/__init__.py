"""Delivery metrics (DORA's four keys) per app and namespace, computed from the platform event log alone."""
