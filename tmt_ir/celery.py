import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tmt_ir.settings")

app = Celery("tmt_ir")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes every database connection before and after each task unless a
# reuse count is set, so each task made a new PostgreSQL connection: 712 for 2,500 firings in
# bench/escalation_latency.py, each a new server process costing ~2-4 ms of CPU (measured on
# this machine) before doing any work; 26 with the count. The fixup now closes connections
# only once every 1,000 tasks; around each task, close_old_connections applies
# CONN_MAX_AGE and CONN_HEALTH_CHECKS as Django does around a web request, so a connection
# broken by a database restart is replaced before the next task uses it.
app.conf.update(CELERY_DB_REUSE_MAX=1000)
app.autodiscover_tasks()


@task_prerun.connect(weak=False)
@task_postrun.connect(weak=False)
def _close_old_connections(**kwargs) -> None:
    from django.db import close_old_connections

    close_old_connections()
