"""Trigram indexes for the incident list's search on PostgreSQL.

The search is `icontains`, which Django runs as UPPER(col::text) LIKE UPPER('%term%'): no b-tree
helps. A GIN trigram index on exactly that expression does (bench/pages.py: the search page went
from ~105 ms to ~27 ms with 50,000 incidents). pg_trgm is a trusted extension (PostgreSQL 13+).
"""

from django.db import migrations

INDEXES = {
    "incident_title_trgm": "title",
    "incident_reference_trgm": "reference",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON incidents_incident USING gin (UPPER({column}::text) gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("incidents", "0009_health_polling")]
    operations = [migrations.RunPython(create, drop)]
