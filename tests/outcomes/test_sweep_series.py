"""``SweepSeries`` (one sweep's shared reads for the ``did`` judge) gives exactly what the per-check reads
``choose_controls`` and ``read_weekly`` give, on SQLite and PostgreSQL: controls with exclusions, inactive and
teamless people, someone only named by interactions, a control's tie to the target left out, burnout means,
and a post window that overlaps the pre-period (it wins) or lies after a gap."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from saferails.org.tables import Employee
from saferails.outcomes.series import SweepSeries, choose_controls, read_weekly
from saferails.store.db import transaction
from tests.support.outcome_world import TEAM_A, TEAM_B, World


def _noisy_world(world: World) -> None:
    rng = random.Random(7)
    people = [*TEAM_A, *TEAM_B, "outsider"]
    pairs = [(a, b) for i, a in enumerate(people) for b in people[i + 1:]]
    for day in range(-35, 10):
        world.interact([p for p in pairs if rng.random() < 0.25], [day])
    for person in people[:-1]:
        world.burnout(person, round(rng.uniform(0.1, 0.9), 3), range(-35, 10, 3))
    with transaction(world.db.sessions) as session:
        session.execute(sa.update(Employee).where(Employee.id == "a4").values(active=False))
        session.execute(sa.update(Employee).where(Employee.id == "b4").values(team_id=None))


@pytest.mark.parametrize("post_days", [7, 3])
def test_shared_reads_equal_the_per_check_reads(world: World, post_days: int) -> None:
    _noisy_world(world)
    pre_end = world.day(0, hour=0)
    post_end = pre_end + timedelta(days=post_days, hours=5)
    shared = SweepSeries()
    with transaction(world.db.sessions) as session:
        for target in [*TEAM_A, *TEAM_B, "nobody"]:
            for exclude in (set(), {"a1", "a2", "b1"}, set(TEAM_A) | {"b2"}):
                for k, k_min in ((10, 5), (3, 3), (2, 8)):
                    expected = choose_controls(session, target, exclude=sorted(exclude), k=k, k_min=k_min)
                    assert shared.controls(session, target, exclude=frozenset(exclude), k=k,
                                           k_min=k_min) == expected, (target, exclude, k)
            people = [target, *choose_controls(session, target)]
            for pre, post in ((2, 1), (4, 1), (2, 3)):
                week = timedelta(days=7)
                expected_data = read_weekly(session, people, pre_end=pre_end, pre=pre, window=week,
                                            post_end=post_end, post=post)
                got = shared.weekly(session, people, pre_end=pre_end, pre=pre, window=week, post_end=post_end,
                                    post=post)
                for metric, values in expected_data.items():
                    assert got[metric].shape == (len(people), pre + post)
                    np.testing.assert_allclose(got[metric], values, rtol=1e-12, equal_nan=True,
                                               err_msg=f"{target} {metric} pre={pre} post={post}")
    assert shared.panel_reads == 3


def test_targets_due_from_reads_once_per_start(world: World) -> None:
    shared = SweepSeries()
    with transaction(world.db.sessions) as session:
        since = world.day(-28)
        assert shared.targets_due_from(session, since) == frozenset()
        assert shared.targets_due_from(session, since) is shared.targets_due_from(session, since)
