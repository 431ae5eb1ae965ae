"""Calendar feed tokens stored as a SHA-256 (and an 8-character prefix), like API tokens.

Each existing token is hashed in place, so the feed URLs people already subscribed to keep
working. Going back cannot turn a hash into a URL: each person gets a new secret, and must make
new links and subscribe again.
"""

import hashlib
import secrets

from django.db import migrations, models

PREFIX_LENGTH = 8


def hash_tokens_in_place(apps, schema_editor) -> None:
    CalendarFeedToken = apps.get_model("drills", "CalendarFeedToken")
    for pk, token in CalendarFeedToken.objects.values_list("pk", "token").iterator():
        CalendarFeedToken.objects.filter(pk=pk).update(
            # The same digest as incidents.api.models.hash_token, which the feed lookup uses.
            key_hash=hashlib.sha256(token.encode()).hexdigest(),
            prefix=token[:PREFIX_LENGTH],
        )


def issue_new_secrets(apps, schema_editor) -> None:
    CalendarFeedToken = apps.get_model("drills", "CalendarFeedToken")
    for pk in CalendarFeedToken.objects.values_list("pk", flat=True).iterator():
        CalendarFeedToken.objects.filter(pk=pk).update(token=secrets.token_urlsafe(32))


class Migration(migrations.Migration):
    dependencies = [("drills", "0002_seed_training")]

    operations = [
        migrations.AddField(
            model_name="calendarfeedtoken",
            name="prefix",
            field=models.CharField(default="", editable=False, max_length=PREFIX_LENGTH),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="calendarfeedtoken",
            name="key_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        # Nullable before it goes, so that going back re-adds it empty (a default computed once
        # for every row would break its uniqueness) for issue_new_secrets to fill.
        migrations.AlterField(
            model_name="calendarfeedtoken",
            name="token",
            field=models.CharField(max_length=64, null=True, unique=True),
        ),
        migrations.RunPython(hash_tokens_in_place, issue_new_secrets),
        migrations.RemoveField(model_name="calendarfeedtoken", name="token"),
        migrations.AlterField(
            model_name="calendarfeedtoken",
            name="key_hash",
            field=models.CharField(editable=False, max_length=64, unique=True),
        ),
    ]
