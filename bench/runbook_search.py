"""Server time of the knowledge base's search with a large runbook library.

Loads RUNBOOKS runbooks (default 5,000), each with a current revision of STEPS steps (default 8:
40,000 steps of instructions and commands), then times /runbooks/ in-process with Django's test
client as a logged-in On-Call Engineer: the full list, a search for a word in a few runbooks'
commands, and one in many runbooks' instructions. Goal: a search under 100 ms median.

    python bench/runbook_search.py                  # full run (about a minute)
    python bench/runbook_search.py --runbooks 500   # quick smoke run

It works in its own database (BENCH_DATABASE_NAME, default tmt_ir_bench_runbooks) on the server
DATABASE_URL names, dropped and recreated on each run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    copy_rows,
    load_average,
    migrate,
    print_result_json,
    print_table,
    reset_sequences,
    setup_django,
    time_pages,
    use_bench_database,
    vacuum_analyze,
)

DEFAULT_DATABASE = "tmt_ir_bench_runbooks"
GOAL_MS = 100.0
WORDS = [
    "restart",
    "agent",
    "verify",
    "health",
    "stop",
    "gracefully",
    "clear",
    "cache",
    "order",
    "broker",
    "database",
    "replica",
    "failover",
    "reconcile",
    "positions",
    "config",
    "deploy",
    "rollback",
    "monitor",
    "latency",
    "queue",
    "consumer",
    "lag",
    "disk",
    "memory",
]
RARE = "zookeeper-quorum-reset"  # in the commands of one runbook in a thousand


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runbooks", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    bench_db = use_bench_database(DEFAULT_DATABASE)
    setup_django()
    bench_db.recreate()
    migrate()

    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from incidents.runbooks.models import Runbook, RunbookRevision, RunbookStep
    from tests.conftest import _user_in

    rng = random.Random(15)
    now = timezone.now()
    offset = Runbook.objects.count() + 1000  # ids clear of the seeded runbooks
    ids = range(offset, offset + args.runbooks)
    copy_rows(
        Runbook,
        ["id", "key", "title", "procedure", "created_at"],
        ((i, f"bench-{i}", f"Runbook {i}: {_text(rng, 3)}", "system_restart", now) for i in ids),
    )
    copy_rows(
        RunbookRevision,
        ["id", "runbook_id", "number", "state", "summary", "created_at", "approved_at"],
        ((i, i, 1, "approved", "bench", now, now) for i in ids),
    )

    def steps():
        for i in ids:
            for position in range(1, args.steps + 1):
                commands = f"curl -f http://localhost:{8000 + position}/health"
                if i % 1000 == 0 and position == args.steps:
                    commands += f"\n./scripts/{RARE}.sh"
                yield (i, position, _text(rng, 4), _text(rng, 25), commands, False, "bench")

    n_steps = copy_rows(
        RunbookStep,
        ["revision_id", "position", "title", "instructions", "commands", "records_restoration", "source"],
        steps(),
    )
    with connection.cursor() as cursor:
        cursor.execute("UPDATE runbooks_runbook SET current_revision_id = id WHERE id >= %s", [offset])
    reset_sequences(Runbook, RunbookRevision, RunbookStep)
    vacuum_analyze(Runbook, RunbookRevision, RunbookStep)

    client = Client()
    client.force_login(_user_in("On-Call Engineer", "bench-oncall"))
    pages = [
        ("rare word in commands", f"/runbooks/?q={RARE}"),
        ("common word in instructions", "/runbooks/?q=reconcile+positions"),
        ("by system", "/runbooks/?system=database"),
    ]
    timings = time_pages(client, pages, warmup=3, runs=args.runs)
    print_table(
        ["page", "median ms", "p95 ms", "queries", "KB"],
        [(t.name, t.median_ms, t.p95_ms, t.queries, round(t.size_bytes / 1024, 1)) for t in timings],
    )
    found = Runbook.objects.filter(current_revision__steps__commands__icontains=RARE).distinct().count()
    print(f"load: {load_average()}")
    rare = timings[0]
    print_result_json(
        {
            "runbooks": args.runbooks,
            "steps": n_steps,
            "rare_found": found,
            "search_rare_ms": rare.median_ms,
            "search_common_ms": timings[1].median_ms,
            "goal_ms": GOAL_MS,
            "met": rare.median_ms <= GOAL_MS,
        }
    )


if __name__ == "__main__":
    main()
