"""The REST API under /api/v1/: the same services and role permissions as the web UI."""
