"""The sync engine: a work queue, a reconciler and the worker threads that join them.

The worker loop is tiny on purpose (:func:`work_once`): take a key, reconcile it against the
desired state read fresh for that pass (level-based: a re-queued key never replays a stale
one), hand the result to ``on_result`` (the kube layer writes status, gates and Events there), re-queue it
when the result asks, and mark it done.  A reconcile that raises is a bug, not an outage; the
key is re-queued with back-off and the worker survives — one bad object never stops the rest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from negsync.core.clock import Clock, RealClock
from negsync.core.model import BindingKey
from negsync.core.queueing import ShutDown, WorkQueue
from negsync.core.reconciling import Reconciler
from negsync.core.records import DesiredBinding, ReconcileResult

log = logging.getLogger("negsync.engine")

ResultHandler = Callable[[ReconcileResult], None]


def work_once(
    queue: WorkQueue[BindingKey],
    reconcile: Callable[[BindingKey], ReconcileResult],
    on_result: ResultHandler,
    *,
    timeout: float | None = None,
) -> bool:
    """Process one key; False when the queue timed out.  Raises ShutDown when the queue is closed."""
    key = queue.get(timeout=timeout)
    if key is None:
        return False
    try:
        result = reconcile(key)
        on_result(result)
    except Exception:
        log.exception("reconcile failed", extra={"binding": str(key)})
        queue.done(key)
        queue.add_rate_limited(key)
        return True
    queue.done(key)
    if result.errors or result.conflicts:
        queue.add_rate_limited(key)
    else:
        queue.forget(key)
    if result.requeue_after is not None and not result.finalized:
        queue.add_after(key, result.requeue_after, priority=result.urgent)
    return True


class Engine:
    """Owns the queue and worker threads around one :class:`Reconciler`."""

    def __init__(
        self,
        *,
        reconciler_factory: Callable[[Callable[[BindingKey, float, bool], None]], Reconciler],
        on_result: ResultHandler | None = None,
        desired: Callable[[BindingKey], DesiredBinding | None] | None = None,
        reconcile: Callable[[BindingKey], ReconcileResult] | None = None,
        clock: Clock | None = None,
        workers: int = 2,
        queue_base_delay: float = 0.005,
        queue_max_delay: float = 1000.0,
    ) -> None:
        """``desired(key)`` reads a binding's desired state for one pass; ``reconcile`` replaces the
        whole pass instead (the kube layer wraps the reconciler with status, gates and Events)."""
        self.clock = clock or RealClock()
        self.queue: WorkQueue[BindingKey] = WorkQueue(
            clock=self.clock, base_delay=queue_base_delay, max_delay=queue_max_delay
        )
        self.reconciler = reconciler_factory(self.enqueue)
        if reconcile is None:
            if desired is None:
                raise TypeError("Engine needs desired= (read per pass) or reconcile= (the whole pass)")
            read = desired

            def bare(key: BindingKey) -> ReconcileResult:
                return self.reconciler.reconcile(key, read(key))

            reconcile = bare
        self._reconcile = reconcile
        self._on_result = on_result or (lambda result: None)
        self._workers = workers
        self._threads: list[threading.Thread] = []

    def enqueue(self, key: BindingKey, delay: float = 0.0, priority: bool = False) -> None:
        if delay > 0:
            self.queue.add_after(key, delay, priority=priority)
        else:
            self.queue.add(key, priority=priority)

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._loop, name=f"negsync-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        while True:
            try:
                work_once(self.queue, self._reconcile, self._on_result)
            except ShutDown:
                return

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop taking work, let in-flight cloud calls finish, join the workers."""
        self.queue.shutdown()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self.reconciler.close(wait=True, timeout=timeout)
