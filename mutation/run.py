"""Mutation testing of the rules that page people and sign reports: `make mutate`.

mutmut (configured in pyproject.toml, [tool.mutmut]) copies the project into mutants/, makes
small edits to the critical modules one function at a time (a comparison flipped, a condition
dropped, a constant moved, a call's argument replaced) and runs the tests that cover each
edited function. A mutant the tests notice is killed; one they don't is a gap, unless it is
listed in mutation/equivalent.txt with the reason it changes nothing a user could notice.

    python mutation/run.py                                   # every module below (hours)
    python mutation/run.py incidents.escalation.services     # one module
    python mutation/run.py "incidents.escalation.services.x__fire_*"   # some of its functions
    python mutation/run.py --report                          # the scores of the runs so far

Each module is judged by its own tests (MODULE_TESTS): a mutant of the escalation rules runs
against the escalation tests, not against the six hundred tests that open an incident on the
way, which would cost minutes per surviving mutant. A mutant a far-away test would have caught
counts as survived, so the score can only be understated. Each test run gets its own copy of
a migrated template database (tests/conftest.py), so the forked runs mutmut keeps side by side
never share tables. Results are kept between runs (mutants/). Prints the score per module; the
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
EQUIVALENT = Path(__file__).resolve().parent / "equivalent.txt"
TEMPLATE_DB = os.environ.get("TMT_MUTATION_TEMPLATE_DB", "tmt_ir_mutation_template")
GOAL = 0.90
STATS = ROOT / "mutants" / "mutmut-stats.json"
STATS_SELECTION = ROOT / "mutants" / "stats-selection.txt"

# The tests that judge each module (node id prefixes), those of the rules it holds.
LIFECYCLE_TESTS = [
    "tests/incidents/test_lifecycle.py",
    "tests/incidents/test_lifecycle_record.py",
    "tests/incidents/test_concurrency.py",
    "tests/incidents/test_roles.py",
    "tests/incidents/test_portal_ticks.py",
    "tests/incidents/test_time_bounds.py",
    "tests/incidents/test_friction.py",
    "tests/incidents/test_evidence.py",
    "tests/incidents/test_command_record.py",
    "tests/incidents/test_update_record.py",
    "tests/incidents/test_transition_refusals.py",
    "tests/incidents/test_open_record.py",
]
MODULE_TESTS = {
    "incidents.services.incident": LIFECYCLE_TESTS,
    "incidents.models.incident": LIFECYCLE_TESTS,
    "incidents.escalation.services": [
        "tests/incidents/escalation/",
        "tests/incidents/test_lifecycle_record.py",
        "tests/incidents/test_concurrency.py",
        # "Escalate now" is a pager reply; review and action-item reminders are fired here.
        "tests/incidents/notifications/test_pager_replies.py",
        "tests/reports/test_review_overdue.py",
        "tests/reports/test_reminders.py",
    ],
    "incidents.notifications.services": [
        "tests/incidents/notifications/",
        "tests/incidents/escalation/test_escalation.py",
        "tests/incidents/escalation/test_escalation_batches.py",
        "tests/incidents/escalation/test_escalation_edges.py",
        "tests/incidents/escalation/test_audiences.py",
        # A drill's pages go to its participants instead (the drills app chooses them).
        "tests/drills/test_drills.py",
    ],
    "incidents.monitoring.emergency": [
        "tests/incidents/monitoring/test_emergency_stop.py",
        "tests/incidents/monitoring/test_emergency_stop_ticks.py",
        "tests/incidents/monitoring/test_emergency_outcome.py",
        "tests/incidents/monitoring/test_emergency_record.py",
        "tests/incidents/monitoring/test_trading_halt.py",
    ],
    "incidents.api.services.alerts": [
        "tests/incidents/api/test_alerts.py",
        "tests/incidents/api/test_alert_payloads.py",
        "tests/incidents/api/test_alert_record.py",
        "tests/incidents/api/test_alert_retries.py",
    ],
    "reports.services": ["tests/reports/"],
}


def _database_url(name: str) -> str:
    base = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tmt_ir"))
    return urlunsplit(base._replace(path=f"/{name}"))


def prepare_template() -> None:
    """A freshly migrated database, the copy source of every test run."""
    import psycopg

    admin = _database_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    env = dict(os.environ, DATABASE_URL=_database_url(TEMPLATE_DB))
    subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [VENV_BIN / "python", "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )


def module_of(selection: str) -> str:
    for module in MODULE_TESTS:
        if selection == module or selection.startswith(module + "."):
            return module
    raise SystemExit(f"{selection!r} is in none of the modules: {', '.join(MODULE_TESTS)}")


def _glob(selection: str) -> str:
    """A module's name stands for all its mutants."""
    return selection if "*" in selection else f"{selection}.*"


def _results(selection: str) -> dict[str, int | None]:
    """The kept exit code of each of a selection's mutants (None: not run)."""
    meta = ROOT / "mutants" / (module_of(selection).replace(".", "/") + ".py.meta")
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: code for name, code in codes.items() if fnmatch(name, _glob(selection))}


KILLED = ("killed", "timeout", "caught by type check")  # a test failed, or an endless loop was stopped


def not_killed(selection: str) -> list[str]:
    """The mutants of a selection no run has killed and not listed as equivalent: survivors,
    those with no test, and those not run or not run to the end. After new tests, only these
    need running again."""
    results = _results(selection)
    if not results:
        return [_glob(selection)]
    equivalent = equivalent_mutants()
    return [
        name
        for name, code in results.items()
        if name not in equivalent and (code is None or status_by_exit_code[code] not in KILLED)
    ]


def run_mutmut(selection: str, *, survivors_only: bool = False) -> None:
    """One module's mutants (or some of its functions'), against that module's tests."""
    tests = ",".join(MODULE_TESTS[module_of(selection)])
    # mutmut maps functions to the tests that reach them once per test selection; another
    # module's map would send this module's mutants to the wrong tests.
    if not STATS_SELECTION.exists() or STATS_SELECTION.read_text() != tests:
        STATS.unlink(missing_ok=True)
    env = dict(
        os.environ,
        DATABASE_URL=_database_url(TEMPLATE_DB),
        TMT_TEST_DB_TEMPLATE=TEMPLATE_DB,
        TMT_MUTATION_TESTS=tests,
    )
    env.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    names = not_killed(selection) if survivors_only else [_glob(selection)]
    if not names:
        return
    subprocess.run(  # noqa: S603 - mutmut from our venv; the selection is mutant names or globs of them
        [VENV_BIN / "mutmut", "run", *names], cwd=ROOT, env=env, check=False
    )
    if STATS.exists():
        STATS_SELECTION.write_text(tests)
    if survivors_only:
        # mutmut forgets the results of a function edited since they were found; they show up as
        # not run only once its run has rebuilt the mutants.
        forgotten = [name for name, code in _results(selection).items() if code is None and name not in names]
        if forgotten:
            subprocess.run(  # noqa: S603 - as above
                [VENV_BIN / "mutmut", "run", *forgotten], cwd=ROOT, env=env, check=False
            )


def equivalent_mutants() -> dict[str, str]:
    """`<mutant name>  <why it changes nothing>` per line; # starts a comment."""
    listed = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                listed[name] = reason.strip()
    return listed


def report() -> dict:
    equivalent = equivalent_mutants()
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        module = str(meta.relative_to(ROOT / "mutants")).removesuffix(".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        # A module no run has reached counts in full as not run: it has no score yet.
        for name, code in codes.items():
            status = status_by_exit_code[code] if code is not None else None
            if name in equivalent:
                kind = "equivalent"
            elif status in KILLED:
                kind = "killed"
            elif status in ("survived", "no tests"):
                kind = "survived" if status == "survived" else "not covered"  # a gap either way
                survivors[module].append(name)
            else:
                kind = "not run"  # stopped before it, interrupted, skipped or crashed: run it again
            by_module[module][kind] += 1
    seen = {}
    for meta in (ROOT / "mutants").rglob("*.py.meta"):
        seen.update(json.loads(meta.read_text())["exit_code_by_key"])
    for name in equivalent:
        code = seen.get(name, "absent")
        if code == "absent" or (code is not None and status_by_exit_code[code] in KILLED):
            # A renumbered mutant (its function was edited) or one a test now kills: the entry
            # no longer says what it claims.
            print(f"mutation/equivalent.txt: {name} is {'no longer a mutant' if code == 'absent' else 'killed'}")
    scores = {}
    print(
        f"{'module':45} {'mutants':>7} {'killed':>6} {'survived':>8} {'no test':>7} {'equiv.':>6} {'not run':>7}"
        f" {'score':>6}"
    )
    not_run = {}
    for module, counts in sorted(by_module.items()):
        judged = counts["killed"] + counts["survived"] + counts["not covered"]
        # Nothing judged: no score while mutants wait to run; all of them equivalent is a full one.
        score = counts["killed"] / judged if judged else (None if counts["not run"] else 1.0)
        scores[module] = round(score, 3) if score is not None else None
        not_run[module] = counts["not run"]
        total = sum(counts.values())
        print(
            f"{module:45} {total:7} {counts['killed']:6} {counts['survived']:8} {counts['not covered']:7}"
            f" {counts['equivalent']:6} {counts['not run']:7} {f'{score:.1%}' if score is not None else '-':>6}"
        )
    for module, names in sorted(survivors.items()):
        print(f"\nnot killed in {module} (`mutmut show <name>` prints the edit):")
        for name in names:
            print(f"  {name}")
    # mutmut writes every module's mutants at its first run; before that none is on record.
    never = [m for m in MODULE_TESTS if not (ROOT / "mutants" / (m.replace(".", "/") + ".py.meta")).exists()]
    for module in never:
        print(f"{module}: no mutants on record yet (make mutate MUTANTS={module})")
    # A score over part of a module is no verdict: the goal is met only when every mutant ran.
    met = (
        bool(scores)
        and not never
        and all(s is not None and s >= GOAL for s in scores.values())
        and not any(not_run.values())
    )
    result = {"scores": scores, "not_run": not_run, "goal": GOAL, "goal_met": met}
    print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "selection", nargs="*", help="modules (incidents.escalation.services) or globs of their mutants' names"
    )
    parser.add_argument("--report", action="store_true", help="print the scores of the runs so far only")
    parser.add_argument("--survivors", action="store_true", help="run only the mutants no run has killed yet")
    args = parser.parse_args()
    if not args.report:
        selections = args.selection or list(MODULE_TESTS)
        for selection in selections:
            module_of(selection)  # refuse a typo before hours of work
        prepare_template()
        for selection in selections:
            run_mutmut(selection, survivors_only=args.survivors)
    report()


if __name__ == "__main__":
    main()
