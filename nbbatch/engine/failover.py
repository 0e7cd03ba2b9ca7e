"""Which provider serves the next attempt.

Providers are tried in `failover.order`. After `trip_after` consecutive overload failures (503,
per-minute 429) a provider is switched away from; every `probe_every` seconds one attempt is sent
to it as a probe, and a success puts it back in its place. A provider whose quota is gone or
whose key is rejected is dropped for the rest of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from nbbatch.engine.shapes import Shapes
from nbbatch.model import FailoverConfig, Item


def candidates(item: Item, failover: FailoverConfig | None,
               shapes: Shapes | None = None) -> tuple[str, ...]:
    """Providers that may make this item's images, its own first, then the failover order;
    with `failover.same_shape`, only the backups that make the shape it asks for."""
    if failover is None or item.provider not in failover.order:
        return (item.provider,)
    keep = failover.same_shape and shapes is not None
    return (item.provider, *(name for name in failover.order if name != item.provider
                             and not (keep and shapes and shapes.change(item, name))))


def routes_of(items: Iterable[Item], failover: FailoverConfig | None,
              shapes: Shapes | None = None, *,
              keep: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None,
              ) -> dict[str, tuple[str, ...]]:
    """candidates() of each item, by id, passed through `keep` if given (say, the providers
    still usable): a route follows from the item's provider, model and shape alone, so
    100,000 items that share a few are routed a few times."""
    by_shape: dict[tuple[str, str, str | None, str | None], tuple[str, ...]] = {}
    routes = {}
    for item in items:
        key = (item.provider, item.model, item.aspect_ratio, item.image_size)
        route = by_shape.get(key)
        if route is None:
            route = candidates(item, failover, shapes)
            route = by_shape[key] = keep(route) if keep else route
        routes[item.id] = route
    return routes


class NoProviderLeft(Exception):
    """Every provider this image could use has been dropped."""


@dataclass
class Health:
    consecutive_overloads: int = 0
    tripped_at: float | None = None  # switched away from since then
    last_probe: float | None = None
    probing: bool = False  # a probe is in flight: one at a time
    dropped: str | None = None  # why it is gone for this run


@dataclass(frozen=True)
class Choice:
    provider: str
    probe: bool = False
    last_resort: bool = False  # every candidate is switched away from: try the preferred one


class Router:
    def __init__(self, names: Sequence[str], *, trip_after: int, probe_every: float,
                 clock: Callable[[], float]) -> None:
        self.health = {name: Health() for name in names}
        self.trip_after = trip_after  # 0: never switch (no failover configured)
        self.probe_every = probe_every
        self._clock = clock

    def choose(self, candidates: Sequence[str]) -> Choice:
        """The provider for the next attempt among `candidates` (in preference order)."""
        alive = self._alive(candidates)
        due = self._probe_due(alive)
        if due is not None:
            health = self.health[due]
            health.probing, health.last_probe = True, self._clock()
            return Choice(due, probe=True)
        return self._preferred(alive)

    def still_valid(self, choice: Choice, candidates: Sequence[str]) -> bool:
        """At its turn to start: is this still where the attempt should go? Not when the
        provider was dropped or switched away meanwhile, nor when a better one recovered,
        nor when a probe fell due: an image waiting in line is not bound to the provider it
        lined up for, so probes go out on schedule however many images are queued."""
        if self.health[choice.provider].dropped:
            return False
        if choice.probe:
            return True
        alive = [name for name in candidates if not self.health[name].dropped]
        return (bool(alive) and self._probe_due(alive) is None
                and self._preferred(alive) == choice)

    def _probe_due(self, alive: Sequence[str]) -> str | None:
        """The first switched-away provider whose probe is due and not already under way."""
        now = self._clock()
        for name in alive:
            health = self.health[name]
            if health.tripped_at is None or health.probing:
                continue
            if now >= (health.last_probe or health.tripped_at) + self.probe_every:
                return name
        return None

    def _alive(self, candidates: Sequence[str]) -> list[str]:
        alive = [name for name in candidates if not self.health[name].dropped]
        if not alive:
            raise NoProviderLeft
        return alive

    def _preferred(self, alive: Sequence[str]) -> Choice:
        for name in alive:
            if self.health[name].tripped_at is None:
                return Choice(name)
        # Everyone is overloaded: keep trying the preferred one; backoff spaces the attempts.
        return Choice(alive[0], last_resort=True)

    def succeeded(self, choice: Choice) -> bool:
        """Record a success; True when it brought a switched-away provider back."""
        health = self.health[choice.provider]
        health.consecutive_overloads = 0
        health.probing = health.probing and not choice.probe
        if health.tripped_at is not None:
            health.tripped_at = None
            return True
        return False

    def overloaded(self, choice: Choice) -> bool:
        """Record an overload failure; True when it switched the provider away."""
        health = self.health[choice.provider]
        if choice.probe:
            health.probing = False
        health.consecutive_overloads += 1
        others = [n for n, h in self.health.items() if n != choice.provider and not h.dropped]
        if (self.trip_after and health.tripped_at is None and others
                and health.consecutive_overloads >= self.trip_after):
            health.tripped_at = self._clock()
            health.last_probe = None
            return True
        return False

    def failed_otherwise(self, choice: Choice) -> None:
        """Any other failure: it says nothing about overload, but a probe is over."""
        if choice.probe:
            self.health[choice.provider].probing = False

    def drop(self, name: str, reason: str) -> bool:
        """Remove a provider for the run; True the first time."""
        health = self.health[name]
        if health.dropped:
            return False
        health.dropped = reason
        return True

    def all_dropped(self) -> bool:
        """Whether every provider there was has been dropped (False when there were none)."""
        return bool(self.health) and all(h.dropped for h in self.health.values())
