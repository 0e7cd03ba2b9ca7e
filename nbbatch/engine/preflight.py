"""Pre-flight: one free metadata request per (provider, model) that may serve, before any
generation request.

A rejected key or an unknown model on a provider that items name stops the run before it
spends anything; on a backup it is a warning, and that backup is dropped now rather than
discovered hours later when failover happens. A provider whose check passes starts at full
concurrency from its first request; one whose metadata route says nothing useful (a gateway
without it) keeps the old way: its first generation request goes alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nbbatch.errors import FatalError, QuotaExhaustedError, UnknownModelError
from nbbatch.model import Item
from nbbatch.providers.base import CheckUnavailable, Provider

SHOWN_ITEMS = 5  # item ids quoted in a message


@dataclass(frozen=True)
class Check:
    provider: str
    model: str
    items: tuple[str, ...]  # ids of the items that name this provider and model (primaries)
    error: FatalError | QuotaExhaustedError | None = None  # what the check said was wrong
    unavailable: str | None = None  # why the check could not tell

    @property
    def passed(self) -> bool:
        return self.error is None and self.unavailable is None


@dataclass
class Needs:
    """What each provider may be asked for: its models, and the items naming it as theirs."""

    models: dict[str, set[str]] = field(default_factory=dict)
    named_by: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, provider: str, model: str, item: str | None) -> None:
        self.models.setdefault(provider, set()).add(model)
        if item is not None:
            self.named_by.setdefault((provider, model), []).append(item)


def needs_of(items: Iterable[Item], candidates: Mapping[str, Sequence[str]],
             backup_models: Mapping[str, str | None]) -> Needs:
    """`candidates`: item id -> the providers that may make it, its own first."""
    needs = Needs()
    for item in items:
        for name in candidates.get(item.id, ()):
            if name == item.provider:
                needs.add(name, item.model, item.id)
            else:
                needs.add(name, backup_models.get(name) or item.model, None)
    return needs


async def run_checks(providers: Mapping[str, Provider], needs: Needs) -> list[Check]:
    pairs = [(name, model) for name, models in needs.models.items() if name in providers
             for model in sorted(models)]
    answers = await asyncio.gather(*(providers[name].check(model) for name, model in pairs),
                                   return_exceptions=True)
    checks = []
    for (name, model), answer in zip(pairs, answers, strict=True):
        items = tuple(needs.named_by.get((name, model), ()))
        if isinstance(answer, CheckUnavailable):
            checks.append(Check(name, model, items, unavailable=str(answer)))
        elif isinstance(answer, FatalError | QuotaExhaustedError):
            checks.append(Check(name, model, items, error=answer))
        elif isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer  # cancelled: let it through
            checks.append(Check(name, model, items, unavailable=f"the check failed: {answer}"))
        else:
            checks.append(Check(name, model, items))
    return checks


def blocking(checks: Iterable[Check]) -> FatalError | None:
    """The error that must stop the run: a rejected key or an unknown model that items name
    (an unknown model first: exit 2 says what to fix in the manifest)."""
    named = [c for c in checks if c.items and isinstance(c.error, FatalError)]
    named.sort(key=lambda c: not isinstance(c.error, UnknownModelError))
    if not named:
        return None
    check = named[0]
    error = check.error
    assert isinstance(error, FatalError)
    kind = type(error)
    message = f"{check.provider}: {error.message} (pre-flight, before any image was asked for; " \
              f"{describe_items(check.items)})"
    return kind(message, provider=check.provider, status=error.status)


def describe_items(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:SHOWN_ITEMS])
    more = f" and {len(ids) - SHOWN_ITEMS} more" if len(ids) > SHOWN_ITEMS else ""
    return f"used by {shown}{more}"
