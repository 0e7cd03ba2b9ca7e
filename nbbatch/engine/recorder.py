"""Recording: every outcome goes to the ledger and to the live counts in one step.

The Recorder is the only writer of both, so the counts a watcher sees and the ledger cannot
drift apart. It also keeps what this run spent, for the budget: every successful request, and
those that may have been billed (a timeout after sending, an interruption).

An attempt is in the ledger before its request is sent, as interrupted and possibly billed
(`start_attempt`), and `finish_attempt` says what came of it: a `kill -9` in between leaves
the record a signal would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from nbbatch import catalog
from nbbatch.engine.events import Event, EventKind, Level, Progress
from nbbatch.engine.job import ImageJob
from nbbatch.engine.pacing import Clock
from nbbatch.engine.pricing import Pricing
from nbbatch.engine.shapes import Shapes
from nbbatch.errors import Outcome, ProviderError, StorageError
from nbbatch.images import dimensions, extension_for
from nbbatch.model import Item
from nbbatch.providers.base import GeneratedImage
from nbbatch.store.files import ImageStore, image_file_name, sha256_hex
from nbbatch.store.ledger import Ledger
from nbbatch.store.naming import choose_name
from nbbatch.store.records import Attempt, Key


@dataclass(frozen=True)
class Ticket:
    """One request on its way, as the ledger holds it."""

    attempt_id: int
    provider: str
    model: str
    started: float  # wall time
    t0: float  # the run's clock
    price: float  # what it costs if billed, before any answer says more


class Recorder:
    def __init__(self, ledger: Ledger, store: ImageStore, progress: Progress, pricing: Pricing,
                 shapes: Shapes, *, emit: Callable[[Event], None], clock: Clock,
                 wall: Clock) -> None:
        self.ledger = ledger
        self.store = store
        self.progress = progress
        self.pricing = pricing
        self.shapes = shapes
        self._emit = emit
        self._clock, self._wall = clock, wall
        self.spent = 0.0  # USD this run: successful requests, and those that may have been billed
        self.dearest_seen: dict[str, float] = {}  # model -> highest cost of one image
        self._shapes_told: set[str] = set()
        self.stuck_on_fatal = 0  # images left pending because no provider could take them

    def cost(self, job: ImageJob, model: str, image: GeneratedImage | None = None) -> float:
        """What one request for `job` on its current provider costs (see `image_cost`)."""
        assert job.provider is not None
        return self.image_cost(job.item, job.provider, model, image)

    def image_cost(self, item: Item, provider: str, model: str,
                   image: GeneratedImage | None = None, *, batch: bool = False) -> float:
        """The image tokens the answer reports when it does, the list price otherwise."""
        listed = self.pricing.list_price(item, provider, model, batch=batch)
        if image is None:
            return listed
        # A charge the provider reported counts even for a model without a list price.
        billed = self.pricing.billed(provider)
        return catalog.image_cost(model, image.usage, listed, batch=batch) if billed else 0.0

    def start_attempt(self, job: ImageJob, model: str) -> Ticket:
        """Record the request about to be sent (LedgerError: then it must not be sent)."""
        assert job.provider is not None
        price = self.cost(job, model)
        started, t0 = self._wall(), self._clock()
        attempt_id = self.ledger.record_attempt(job.key, Attempt(
            started_at=started, provider=job.provider, model=model,
            outcome=Outcome.INTERRUPTED, possibly_billed=True, cost_usd=price))
        return Ticket(attempt_id, job.provider, model, started, t0, price)

    def finish_attempt(self, job: ImageJob, ticket: Ticket, outcome: Outcome,
                       exc: ProviderError | None, *, possibly_billed: bool = False,
                       image: GeneratedImage | None = None) -> None:
        """What came of the request `ticket` stands for. A success is money spent from this
        moment, whatever becomes of its image."""
        billed = possibly_billed or bool(getattr(exc, "possibly_billed", False))
        paid = billed or outcome == Outcome.SUCCESS
        cost = self.cost(job, ticket.model, image) if paid else 0.0
        self.ledger.update_attempt(ticket.attempt_id, Attempt(
            started_at=ticket.started, provider=ticket.provider, model=ticket.model,
            outcome=outcome,
            http_status=exc.status if exc else (200 if outcome == Outcome.SUCCESS else None),
            latency=self._clock() - ticket.t0, error=exc.message if exc else None,
            possibly_billed=billed, cost_usd=cost,
        ))
        self.spent += cost
        if outcome == Outcome.SUCCESS:
            self.dearest_seen[ticket.model] = max(self.dearest_seen.get(ticket.model, 0.0),
                                                  cost)
            job.reserve = 0.0  # its cost is in `spent` now: the budget must not count it twice

    async def save(self, job: ImageJob, image: GeneratedImage, ticket: Ticket) -> None:
        """Write an image an online request made and mark it done. StorageError leaves it
        pending; the request stays counted as paid for, and is marked as such."""
        assert job.provider is not None
        try:
            await self.save_image(job.key, job.item, job.provider, job.model, image)
        except StorageError:
            self.ledger.flag_billed(ticket.attempt_id)  # received, paid for, not kept
            raise
        job.working = False

    async def save_image(self, key: Key, item: Item, provider: str, model: str,
                         image: GeneratedImage, *, batch: bool = False) -> float:
        """Write one image of `item` made by `provider` with `model` (asked for) under a name
        no other file holds (naming.py) and mark it done, at the batch price if `batch`;
        returns its cost. The one path every image file takes, online or batch. StorageError
        leaves it pending."""
        digest = sha256_hex(image.data)
        wanted = image_file_name(key[0], key[1], item.count, extension_for(image.mime_type))
        placed = choose_name(self.store.images, wanted, key, digest, self.ledger.file_owner)
        made_by = image.model or model
        cost = self.image_cost(item, provider, model, image, batch=batch)
        note = self.shapes.change(item, provider, model)
        # Intent first: a crash between here and mark_done is finished by the next run's
        # recovery instead of paying for the image again.
        self.ledger.begin_save(key, file=placed.relative, sha256=digest, bytes=len(image.data),
                               provider=provider, model=made_by, cost_usd=cost,
                               usage=dict(image.usage) or None,
                               size=image.pixels or dimensions(image.data), shape_note=note)
        try:
            await asyncio.to_thread(self.store.write, placed.relative, image.data, digest)
        except StorageError:
            self.ledger.clear_save(key)
            raise
        self.ledger.mark_done(key)
        p = self.progress
        p.done, p.pending, p.done_this_run = p.done + 1, p.pending - 1, p.done_this_run + 1
        label = item.label(key[1])
        if placed.passed_over:
            self._emit(Event(EventKind.RENAMED, f"{label}: {placed.passed_over}; saved as "
                             f"{placed.relative} instead", key, provider, Level.WARNING))
        if note and note not in self._shapes_told:  # once per shape, then in each done line
            self._shapes_told.add(note)
            self._emit(Event(EventKind.PROVIDER, f"{provider}: shape changed: {note} "
                             f"(failover.same_shape: true keeps such items for {item.provider})",
                             key, provider, Level.WARNING))
        self._emit(Event(EventKind.DONE, f"done {label} -> {placed.relative} ({provider}, "
                         f"{made_by})" + (f"; shape changed: {note}" if note else ""),
                         key, provider))
        return cost

    def pending(self, job: ImageJob, kind: str, message: str, *, level: Level) -> None:
        self.pending_image(job.key, job.label, job.provider, kind, message, level=level)

    def pending_image(self, key: Key, label: str, provider: str | None, kind: str,
                      message: str, *, level: Level) -> None:
        self.ledger.mark_pending(key, kind=kind, message=message)
        self._emit(Event(EventKind.PENDING, f"{label} stays pending: {message}", key,
                         provider, level))

    def failed(self, job: ImageJob, exc: ProviderError) -> None:
        self.fail_image(job.key, job.label, job.provider, job.model, exc)

    def fail_image(self, key: Key, label: str, provider: str | None, model: str | None,
                   exc: ProviderError) -> None:
        self.ledger.mark_failed(key, kind=exc.kind, message=exc.message,
                                provider=provider, model=model)
        p = self.progress
        p.failed, p.pending, p.failed_this_run = p.failed + 1, p.pending - 1, p.failed_this_run + 1
        self._emit(Event(EventKind.FAILED, f"failed {label} ({exc.kind}): {exc.message}",
                         key, provider, Level.WARNING))
