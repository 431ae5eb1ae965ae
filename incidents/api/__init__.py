"""The REST API under /api/v1/ (issue #7): the same services and role permissions as the web UI."""
