"""Trigram indexes for the knowledge base's search on PostgreSQL.

The search is `icontains` over the steps' text, which Django runs as UPPER(col::text) LIKE
UPPER('%term%'): no b-tree helps, a GIN trigram index on that expression does (the same as the
incident search's indexes).
"""

from django.db import migrations

INDEXES = {
    "runbook_step_title_trgm": ("runbooks_runbookstep", "title"),
    "runbook_step_instructions_trgm": ("runbooks_runbookstep", "instructions"),
    "runbook_step_commands_trgm": ("runbooks_runbookstep", "commands"),
    "runbook_title_trgm": ("runbooks_runbook", "title"),
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, (table, column) in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (UPPER({column}::text) gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("runbooks", "0002_seed_runbooks")]
    operations = [migrations.RunPython(create, drop)]
