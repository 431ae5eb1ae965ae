"""Making a race happen: another connection's work, run to the end at a chosen moment."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections


def in_another_connection(work: Callable[[], object], *, timeout: float = 20) -> None:
    """Run `work` in a thread, so on its own database connection (committed on its own), and
    wait for it; its error is raised here, in the test's thread."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # raised again in the caller's thread
            failures.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the other connection's work did not finish in {timeout} s"
    if failures:
        raise failures[0]
