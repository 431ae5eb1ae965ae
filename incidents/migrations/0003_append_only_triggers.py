"""On PostgreSQL the database itself refuses UPDATE and DELETE on append-only tables.

The model layer already refuses them; the trigger also stops raw SQL and the admin's bulk
delete. TRUNCATE (used by the test suite to reset the database) does not fire row triggers.
"""

from django.db import migrations

TABLES = ["incidents_timelineentry", "incidents_evidenceattachment"]

FUNCTION = """
CREATE OR REPLACE FUNCTION tmt_refuse_append_only_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '%% is append-only: %% refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tmt_refuse_append_only_change()"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS tmt_refuse_append_only_change()")


class Migration(migrations.Migration):
    dependencies = [("incidents", "0002_seed_procedures")]
    operations = [migrations.RunPython(create, drop)]
