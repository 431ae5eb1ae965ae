"""Real processes for the fault tests: the dispatcher, Celery and a Redis of the test's own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(tmp_path: Path, **overrides: str) -> dict:
    """The environment of a portal process on the test's own database."""
    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env["TMT_VAR_DIR"] = str(tmp_path)
    env["EMAIL_URL"] = "dummymail://"
    env["PYTHONUNBUFFERED"] = "1"
    # These processes are here to page; the portal's own monitoring of silent duties (which
    # would open incidents of its own after 30 s of no health polling) is tested on its own.
    env["TMT_DUTY_STALE_SECONDS"] = "3600"
    env.update(overrides)
    return env


def start(args: list[str], tmp_path: Path, name: str, **env: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "a")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, cwd=ROOT, env=process_env(tmp_path, **env), stdout=log, stderr=subprocess.STDOUT)


def start_dispatcher(tmp_path: Path, name: str, **env: str) -> subprocess.Popen:
    return start([sys.executable, "manage.py", "run_dispatcher", "--name", name], tmp_path, name, **env)


def start_celery(args: list[str], tmp_path: Path, name: str, **env: str) -> subprocess.Popen:
    return start([sys.executable, "-m", "celery", "-A", "tmt_ir", *args], tmp_path, name, **env)


def stop(*processes: subprocess.Popen | None) -> None:
    for process in processes:
        if process is None or process.poll() is not None:
            continue
        process.send_signal(signal.SIGTERM)
    for process in processes:
        if process is None:
            continue
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


class OwnRedis:
    """A redis-server on a free port that a test may kill and start again on the same port."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.tmp_path = tmp_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.tmp_path / "redis.log", "a")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal must not kill it before its time
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            kill(self.process)

    def __enter__(self) -> OwnRedis:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
