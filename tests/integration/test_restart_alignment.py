"""A backlog produced while the only worker is down, after it had processed and committed earlier
input: after the restart the three input topics of each partition are merged in send order, as
on a first start (``test_worker.test_a_backlog_produced_at_once_is_processed_in_send_order``).

The producer here is one process throughout (the test's), so the backlog continues the order
header chain the worker saw before it went down: the restarted worker meets that chain in the
middle, never at its first record.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import loan_book
from tests.integration.test_worker import (
    assert_as_reference,
    committed,
    customers_on,
    feed,
    handled,
    steps,
    true_ends,
)
from tests.integration.workerproc import Deployment, WorkerProcess, wait_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stop", ["sigterm", "sigkill", "sigkill-uncommitted"])
def test_a_backlog_produced_while_the_worker_is_down_is_processed_in_send_order(
    dep: Deployment, workers: Callable[..., WorkerProcess], stop: str
) -> None:
    """The worker stops after its input was committed to the end (SIGTERM, SIGKILL) or is
    killed as soon as it handled a few more live steps (``sigkill-uncommitted``: commits run
    every few seconds, so the restart fetches that tail again from committed offsets that may
    sit at different points of the chain). Either way: no dead letter, and the alerts and
    states of the pure pipeline over the file order."""
    custs = customers_on(dep.partitions, 3)
    events = loan_book({c: i % 2 == 0 for i, c in enumerate(custs)}, months=4)
    groups = steps(events)
    # the backlog starts with a transactions step: its first record sits on the last of the
    # three topics, which a merge breaking timestamp ties by topic order takes last (a backlog
    # produced at once shares one millisecond or a few between topics)
    cuts = [i for i, g in enumerate(groups) if i > 1 and {e[0] for e in g} == {"transactions"}]
    cut = cuts[0]
    w = workers(dep, "first").wait_ready()
    feed(dep, [w], groups[:cut])
    ends = true_ends(dep)
    wait_until("every input committed to its end", lambda: committed(dep) == ends, timeout=30)
    if stop == "sigkill-uncommitted":
        # more live steps, killed once they are handled: commits run every 2.8 s, so the last
        # ones are usually not committed yet
        feed(dep, [w], groups[cut : cuts[1]])
        cut = cuts[1]
        w.kill()
    else:
        w.kill() if stop == "sigkill" else w.stop()
    assert not w.alive()

    backlog = [e for g in groups[cut:] for e in g]  # the file order, produced at once
    dep.produce(backlog)
    w2 = workers(dep, "second").wait_ready()
    wait_until("backlog handled", lambda: handled([w2]) >= len(backlog), timeout=60)

    dead = {
        (name, dict(labels).get("topic") or dict(labels).get("reason")): v
        for (name, labels), v in w2.metrics().items()
        if v
        and (
            name == "riskmon_dead_letters_total"
            or (name == "riskmon_events_total" and dict(labels).get("outcome") == "dead_letter")
        )
    }
    assert not dead, f"dead letters after the restart: {dead}"
    processed = w2.metric_sum("riskmon_events_total", outcome="processed")
    if stop == "sigkill-uncommitted":  # a handled record whose state was not yet written
        assert processed >= len(backlog)  # when the worker died is processed again
    else:
        assert processed == len(backlog)
    assert_as_reference(dep, w2, events, custs)
