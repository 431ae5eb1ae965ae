"""Incident roles besides the commander (scribe, communications lead, risk liaison), and
checklist items the portal ticks when it does the work itself.

On PostgreSQL a trigger keeps the role history: a row may only be ended, once, and never deleted
(the model refuses both too; the trigger also stops raw SQL and bulk updates)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


ROLE_HISTORY_FUNCTION = """
CREATE OR REPLACE FUNCTION tmt_role_assignment_end_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.ended_at IS NOT NULL OR NEW.ended_at IS NULL
       OR (NEW.id, NEW.incident_id, NEW.role, NEW.holder_id, NEW.assigned_by_id, NEW.assigned_at)
          IS DISTINCT FROM (OLD.id, OLD.incident_id, OLD.role, OLD.holder_id, OLD.assigned_by_id, OLD.assigned_at)
    THEN
        RAISE EXCEPTION '%% keeps its history: only ending a current holding is allowed (%% refused)',
            TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""
TABLE = "incidents_incidentroleassignment"


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(ROLE_HISTORY_FUNCTION)
    schema_editor.execute(
        f"CREATE TRIGGER {TABLE}_end_only BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION tmt_role_assignment_end_only()"
    )


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_end_only ON {TABLE}")
    schema_editor.execute("DROP FUNCTION IF EXISTS tmt_role_assignment_end_only()")


class Migration(migrations.Migration):

    dependencies = [
        ('incidents', '0016_detection_target_is_the_response_time'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='checklisttemplateitem',
            name='action_key',
            field=models.CharField(blank=True, choices=[('incident_logged', 'The incident is logged (its ticket exists)'), ('acknowledged', 'Someone acknowledged the incident'), ('emergency_stop', 'An emergency stop was sent and the circuit breaker accepted it'), ('evidence_attached', 'Evidence was attached'), ('status_update_posted', 'A status update was posted'), ('commander_assigned', 'An incident commander was assigned')], db_default='', default='', help_text='The portal ticks this item on an incident when it does this itself. Blank: only people tick it.', max_length=30, verbose_name='ticked by the portal when'),
        ),
        migrations.AddField(
            model_name='incidentchecklistitem',
            name='action_key',
            field=models.CharField(blank=True, choices=[('incident_logged', 'The incident is logged (its ticket exists)'), ('acknowledged', 'Someone acknowledged the incident'), ('emergency_stop', 'An emergency stop was sent and the circuit breaker accepted it'), ('evidence_attached', 'Evidence was attached'), ('status_update_posted', 'A status update was posted'), ('commander_assigned', 'An incident commander was assigned')], db_default='', default='', max_length=30),
        ),
        migrations.AddField(
            model_name='incidentchecklistitem',
            name='ticked_by_portal_when',
            field=models.CharField(blank=True, db_default='', default='', max_length=300),
        ),
        migrations.CreateModel(
            name='IncidentRoleAssignment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('scribe', 'Scribe'), ('communications', 'Communications lead'), ('risk_manager', 'Risk liaison')], max_length=30)),
                ('assigned_at', models.DateTimeField()),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('assigned_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('ended_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('holder', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('incident', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='role_assignments', to='incidents.incident')),
            ],
            options={
                'ordering': ['incident', 'assigned_at', 'id'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('ended_at', None)), fields=('incident', 'role'), name='one_current_holder_per_incident_role'), models.CheckConstraint(condition=models.Q(('role__in', ['scribe', 'communications', 'risk_manager'])), name='incident_role_assignment_role_known'), models.CheckConstraint(condition=models.Q(('ended_at', None), ('ended_at__gte', models.F('assigned_at')), _connector='OR'), name='incident_role_assignment_ends_after_start')],
            },
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
