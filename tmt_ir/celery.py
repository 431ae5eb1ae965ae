import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tmt_ir.settings")

app = Celery("tmt_ir")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
