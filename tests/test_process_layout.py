"""The processes `make run` starts: the Procfile's, kept running by supervisord."""

import configparser
import re
import shlex
import subprocess
import time

import pytest

from incidents.monitoring.models import DutyHeartbeat
from tests.celery_fixtures import wait_for
from tests.processes import ROOT, free_port, process_env

CONF = ROOT / "deploy" / "supervisord.conf"


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def supervised() -> dict[str, str]:
    parser = configparser.RawConfigParser()
    parser.read(CONF)
    commands = {}
    for section in parser.sections():
        if section.startswith("program:"):
            words = shlex.split(parser[section]["command"])
            assert words[:2] == ["sh", "-c"] and words[2].startswith("exec ")
            # supervisord's own %% escape, as in worker@%%h.
            commands[section.removeprefix("program:")] = words[2].removeprefix("exec ").replace("%%", "%")
    return commands


def test_supervisord_runs_the_procfile_commands_and_restarts_each():
    assert supervised() == procfile()
    parser = configparser.RawConfigParser()
    parser.read(CONF)
    for name in procfile():
        section = parser[f"program:{name}"]
        assert section["autorestart"] == "true", name
        assert int(section["startretries"]) >= 1000, f"{name} would be given up on"


def _status(env: dict) -> dict[str, tuple[str, int | None]]:
    out = subprocess.run(
        [str(ROOT / ".venv/bin/supervisorctl"), "-c", str(CONF), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout
    status = {}
    for line in out.splitlines():
        match = re.match(r"(\S+)\s+(\S+)(?:\s+pid (\d+))?", line)
        if match:
            status[match[1]] = (match[2], int(match[3]) if match[3] else None)
    return status


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("postgres")
def test_a_killed_dispatcher_and_worker_are_restarted(tmp_path):
    base = free_port()
    env = process_env(
        tmp_path,
        TMT_WEB_PORT=str(free_port()),
        TMT_AGENTS_BASE_PORT="0",
        TMT_AGENTS_CONTROL_PORT="0",
        TMT_SMS_PROVIDER_URL=f"http://127.0.0.1:{base}/unused",
        PATH=f"{ROOT / '.venv/bin'}:{process_env(tmp_path)['PATH']}",
    )
    supervisor = subprocess.Popen(
        [str(ROOT / ".venv/bin/supervisord"), "-c", str(CONF)],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "supervisord.out", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        running = wait_for(
            lambda: (
                (s := _status(env))
                and all(state == "RUNNING" for state, _ in s.values())
                and len(s) == len(procfile())
                and s
            ),
            timeout=40,
            what="every program RUNNING",
        )
        wait_for(
            lambda: DutyHeartbeat.objects.filter(duty="delivery").exists(),
            timeout=30,
            what="the dispatcher's first heartbeat",
        )
        for name in ("dispatcher", "worker"):
            subprocess.run(["kill", "-KILL", str(running[name][1])], check=True)
        restarted = wait_for(
            lambda: (
                (s := _status(env))
                and all(s[n][0] == "RUNNING" and s[n][1] != running[n][1] for n in ("dispatcher", "worker"))
                and s
            ),
            timeout=30,
            what="the killed processes to be restarted",
        )
        assert restarted["web"] == running["web"], "only the killed processes restart"
        since = time.time()
        wait_for(
            lambda: DutyHeartbeat.objects.filter(duty="delivery", seen_at__gt=_aware(since)).exists(),
            timeout=30,
            what="the restarted dispatcher to deliver again",
        )
    finally:
        supervisor.terminate()
        supervisor.wait(60)


def _aware(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)
