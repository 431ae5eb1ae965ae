"""`manage.py run_dispatcher`: the paging dispatcher (incidents/monitoring/dispatcher.py) as a process."""

from __future__ import annotations

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from incidents.monitoring.dispatcher import Dispatcher, run_forever


class Command(BaseCommand):
    help = "Fire due escalation deadlines and deliver pages from the database (no broker needed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--threads",
            type=int,
            default=settings.TMT_DISPATCHER_THREADS,
            help="pages sent at once (each thread has at most one in flight)",
        )
        parser.add_argument("--name", default=None, help="this process's name in heartbeats")

    def handle(self, *args, threads: int, name: str | None, **options) -> None:
        if threads < 1:
            raise CommandError("--threads must be at least 1")
        if not settings.TMT_SMS_PROVIDER_URL:
            if settings.PRODUCTION:
                # An on-call engineer who is only emailed at 3 a.m. is not paged.
                raise CommandError("TMT_SMS_PROVIDER_URL is not set: SMS and voice pages cannot be delivered")
            self.stderr.write("TMT_SMS_PROVIDER_URL is not set: SMS and voice pages will fail")
        dispatcher = Dispatcher(name=name, threads=threads)

        signal.signal(signal.SIGTERM, lambda signum, frame: dispatcher.request_stop())
        signal.signal(signal.SIGINT, lambda signum, frame: dispatcher.request_stop())
        self.stdout.write(f"{dispatcher.name}: paging from the database, {threads} sending threads")
        run_forever(dispatcher)
