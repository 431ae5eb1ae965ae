"""Mutation testing of the rules that page people and sign reports: `make mutate`.

mutmut (configured in pyproject.toml, [tool.mutmut]) copies the project into mutants/, makes
small edits to the critical modules one function at a time (a comparison flipped, a condition
dropped, a constant moved, a call's argument replaced) and runs the tests that cover each
edited function. A mutant the tests notice is killed; one they don't is a gap, unless it is
listed in mutation/equivalent.txt with the reason it changes nothing a user could notice.

    python mutation/run.py                               # every configured module (hours)
    python mutation/run.py "incidents.api.services.alerts*"   # one module's mutants
    python mutation/run.py --report                      # the scores of the last run only

Each test run gets its own copy of a migrated template database (tests/conftest.py), so the
forked runs mutmut keeps side by side never share tables. Prints the score per module; the last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
EQUIVALENT = Path(__file__).resolve().parent / "equivalent.txt"
TEMPLATE_DB = os.environ.get("TMT_MUTATION_TEMPLATE_DB", "tmt_ir_mutation_template")
GOAL = 0.90


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


def run_mutmut(selection: list[str]) -> None:
    env = dict(os.environ, DATABASE_URL=_database_url(TEMPLATE_DB), TMT_TEST_DB_TEMPLATE=TEMPLATE_DB)
    env.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    subprocess.run(  # noqa: S603 - mutmut from our venv; the selection is globs of mutant names
        [VENV_BIN / "mutmut", "run", *selection], cwd=ROOT, env=env, check=False
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
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if code is None:
                continue  # not run this time (another module's selection)
            status = status_by_exit_code[code]
            if name in equivalent:
                kind = "equivalent"
            elif status in ("killed", "timeout", "caught by type check"):
                kind = "killed"  # a test failed, or an endless loop was stopped
            elif status in ("survived", "no tests"):
                kind = "survived" if status == "survived" else "not covered"  # a gap either way
                survivors[module].append(name)
            else:
                kind = "not run"  # interrupted, skipped, suspicious or crashed: run it again
            by_module[module][kind] += 1
    scores = {}
    print(f"{'module':45} {'mutants':>7} {'killed':>6} {'survived':>8} {'no test':>7} {'equiv.':>6} {'score':>6}")
    for module, counts in sorted(by_module.items()):
        judged = counts["killed"] + counts["survived"] + counts["not covered"]
        score = counts["killed"] / judged if judged else 1.0
        scores[module] = round(score, 3)
        total = sum(counts.values())
        print(
            f"{module:45} {total:7} {counts['killed']:6} {counts['survived']:8} {counts['not covered']:7}"
            f" {counts['equivalent']:6} {score:6.1%}"
        )
    for module, names in sorted(survivors.items()):
        print(f"\nnot killed in {module} (`mutmut show <name>` prints the edit):")
        for name in names:
            print(f"  {name}")
    result = {"scores": scores, "goal": GOAL, "goal_met": all(s >= GOAL for s in scores.values()) and bool(scores)}
    print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("selection", nargs="*", help="mutant name globs, e.g. 'incidents.escalation.services*'")
    parser.add_argument("--report", action="store_true", help="print the last run's scores only")
    args = parser.parse_args()
    if not args.report:
        prepare_template()
        run_mutmut(args.selection)
    report()


if __name__ == "__main__":
    main()
