import django.db.models.deletion
from django.db import migrations, models

import incidents.escalation.models


class Migration(migrations.Migration):
    # Every obligation has a regime once 0003 has put the existing ones on the default.
    dependencies = [("escalation", "0003_seed_regimes_and_audiences")]

    operations = [
        migrations.AlterField(
            model_name="regulatoryobligation",
            name="regime",
            field=models.ForeignKey(
                default=incidents.escalation.models.default_regime_pk,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="obligations",
                to="escalation.regulatoryregime",
            ),
        ),
    ]
