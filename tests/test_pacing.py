import asyncio
import itertools
import random

from nbbatch.engine.pacing import Pacer
from nbbatch.model import Interval


def test_starts_are_spaced_by_the_interval(clock):
    pacer = Pacer(Interval(7, 7), clock=clock, sleep=clock.sleep)

    async def main():
        return [await pacer.wait_turn() for _ in range(4)]

    starts = asyncio.run(main())
    assert [b - a for a, b in itertools.pairwise(starts)] == [7, 7, 7]


def test_interval_is_drawn_from_the_range(clock):
    pacer = Pacer(Interval(5, 10), clock=clock, sleep=clock.sleep, rng=random.Random(1))

    async def main():
        return [await pacer.wait_turn() for _ in range(50)]

    starts = asyncio.run(main())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(5 <= gap <= 10 for gap in gaps)
    assert max(gaps) - min(gaps) > 2  # really drawn, not fixed


def test_pacing_is_start_to_start_so_slow_requests_overlap(clock):
    """With latency 5x the interval, starts still come one interval apart."""
    pacer = Pacer(Interval(2, 2), clock=clock, sleep=clock.sleep)
    starts = []

    async def request():
        starts.append(await pacer.wait_turn())
        await clock.sleep(10)  # latency

    async def main():
        await asyncio.gather(*(request() for _ in range(5)))

    asyncio.run(main())
    assert [b - a for a, b in itertools.pairwise(starts)] == [2, 2, 2, 2]


def test_server_delay_pauses_the_whole_provider(clock):
    pacer = Pacer(Interval(1, 1), clock=clock, sleep=clock.sleep)

    async def main():
        first = await pacer.wait_turn()
        pacer.pause_for(30)
        assert pacer.is_paused()
        second = await pacer.wait_turn()
        third = await pacer.wait_turn()
        return first, second, third

    first, second, third = asyncio.run(main())
    assert second - first == 30
    assert third - second == 1


def test_a_pause_never_shortens_an_earlier_one(clock):
    pacer = Pacer(Interval(0, 0), clock=clock, sleep=clock.sleep)
    pacer.pause_for(60)
    pacer.pause_for(5)
    assert pacer.paused_until == clock.now + 60


def test_a_request_that_moved_on_gives_up_its_turn_without_using_it(clock):
    pacer = Pacer(Interval(5, 5), clock=clock, sleep=clock.sleep)

    async def main():
        first = await pacer.wait_turn()
        gone = await pacer.wait_turn(lambda: False)
        second = await pacer.wait_turn()
        return first, gone, second

    first, gone, second = asyncio.run(main())
    assert gone is None and second - first == 5
