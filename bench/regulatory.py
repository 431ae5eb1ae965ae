"""Regulatory reporting: the view of every report owed, classification, and a report's PDF.

Opens N Sev1 incidents and classifies each under DORA (three reports each, the initial's clock
running), then times:

- `/regulatory/` (every report still owed, across incidents) as a logged-in Head of Risk,
  with its query count (it must not grow with the number of incidents);
- `regulatory_classify` (the row lock, the classification, three obligations, their clocks with
  the working-day rule, the deadline rows and timeline entries);
- the initial notification's PDF through its view (drafted, WeasyPrint, fonts loaded).

    python bench/regulatory.py
    python bench/regulatory.py --incidents 300

It works in its own database (BENCH_DATABASE_NAME, default tmt_ir_bench_regulatory), dropped and
recreated on each run. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    load_average,
    median,
    migrate,
    percentile,
    print_result_json,
    print_table,
    setup_django,
    time_pages,
    use_bench_database,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    bench_db = use_bench_database("tmt_ir_bench_regulatory")
    os.environ["CELERY_BROKER_URL"] = "memory://localhost/"
    setup_django()
    from django.test import Client
    from django.urls import reverse

    import reports.pdf  # noqa: F401 - quiets WeasyPrint's progress log before anything renders
    from incidents.escalation import regimes
    from incidents.escalation.models import RegulatoryObligation, RegulatoryRegime
    from incidents.roles import ensure_role_groups
    from tests.factories import make_roster, open_incident

    print(f"database {bench_db.name}; load average {load_average()}", flush=True)
    bench_db.recreate()
    migrate()
    ensure_role_groups()
    team = make_roster()
    dora = RegulatoryRegime.objects.get(key="dora")
    classify_ms = []
    incidents = []
    for n in range(args.incidents):
        incident = open_incident(reported_by=team["oncall1"], level=1, title=f"Order gateway outage {n}")
        start = time.perf_counter()
        regimes.regulatory_classify(
            incident=incident,
            regime=dora,
            user=team["head_of_risk"],
            reportable=True,
            criteria_met=["clients", "critical_services", "duration"],
        )
        classify_ms.append((time.perf_counter() - start) * 1000)
        incidents.append(incident)
    owed = RegulatoryObligation.objects.filter(submitted_at=None).count()
    print(f"  {len(incidents)} incidents classified under DORA; {owed} reports owed", flush=True)

    client = Client()
    client.force_login(team["head_of_risk"])
    view = time_pages(client, [("regulatory view", reverse("incidents:regulatory"))], runs=args.runs)[0]

    initial = RegulatoryObligation.objects.get(incident=incidents[0], stage__key="initial")
    regimes.regulatory_draft(obligation=initial, user=team["im"])
    pdf_url = reverse("reports:regulatory_pdf", args=[incidents[0].reference, initial.pk])
    client.get(pdf_url)  # fonts and styles loaded once, as in a running server
    pdf_ms = []
    for _ in range(max(3, args.runs // 4)):
        start = time.perf_counter()
        response = client.get(pdf_url)
        pdf_ms.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200

    print_table(
        ["what", "median ms", "p95 ms", "queries"],
        [
            [f"/regulatory/ ({owed} owed)", view.median_ms, view.p95_ms, view.queries],
            [
                "regulatory_classify (DORA, 3 stages)",
                f"{median(classify_ms):.1f}",
                f"{percentile(classify_ms, 95):.1f}",
                "",
            ],
            ["initial notification PDF", f"{median(pdf_ms):.0f}", f"{percentile(pdf_ms, 95):.0f}", ""],
        ],
    )
    print(f"load average {load_average()}")
    print_result_json(
        {
            "regulatory_view_ms": view.median_ms,
            "regulatory_view_queries": view.queries,
            "reports_owed": owed,
            "classify_ms": round(median(classify_ms), 1),
            "regulatory_pdf_ms": round(median(pdf_ms)),
        }
    )


if __name__ == "__main__":
    main()
