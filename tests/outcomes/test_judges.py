"""The outcome judges on constructed data, their reproducibility, their selection in the policy, and the small
labelled benchmark (bench/outcomes_quality.py) on a held-out organisation."""

from __future__ import annotations

import numpy as np
import pytest

from bench.outcomes_quality import HELD_OUT_SEEDS, evaluate
from saferails.errors import InvalidInput, PolicyInvalid
from saferails.orggraph.sample import generate_panel
from saferails.outcomes.judges import (
    DiDJudge,
    MetricSeries,
    OutcomeDataInvalid,
    RuleSpec,
    ThresholdJudge,
    make_judge,
)
from saferails.outcomes.rules import load_rulebook
from saferails.policy import default_policy
from saferails.policy.model import parse_policy

ISOLATION = RuleSpec("isolation", "degree_centrality", "drop", 0.30)
PRE = 8


def _series(target_post_factor: float, *, target_noise: float, seed: int = 1, shock_last_week: float = 1.0,
            controls: int = 8) -> dict[str, MetricSeries]:
    """Weekly degrees around 10: ``controls`` people and a target with its own noise; the last week may carry a
    team-wide shock (everyone times ``shock_last_week``) and the target's own change (``target_post_factor``)."""
    rng = np.random.default_rng(seed)
    weeks = PRE + 1
    team = np.ones(weeks)
    team[-1] = shock_last_week
    ctrl = 10 * team * (1 + rng.normal(0, 0.04, size=(controls, weeks)))
    target = 10 * team * (1 + rng.normal(0, target_noise, size=weeks))
    target[-1] *= target_post_factor
    return {"degree_centrality": MetricSeries("degree_centrality", target, ctrl, PRE, 1)}


def test_a_clear_harm_against_steady_controls_is_negative_with_its_interval_recorded() -> None:
    judgement = DiDJudge().judge([ISOLATION], _series(0.4, target_noise=0.03), ["c1", "c2"])
    (metric,) = judgement.metrics
    assert judgement.verdict == "negative" and metric.verdict == "negative"
    assert metric.effect is not None and metric.effect == pytest.approx(-0.6, abs=0.08)
    assert metric.interval is not None and metric.interval[1] < 0  # confidently a drop
    recorded = judgement.as_dict()
    assert recorded["method"] == "did" and recorded["params"]["confidence"] == 0.975
    assert recorded["controls"] == ["c1", "c2"] and len(recorded["metrics"][0]["interval"]) == 2


def test_noise_alone_is_ok() -> None:
    verdicts = {DiDJudge().judge([ISOLATION], _series(1.0, target_noise=0.04, seed=s)).verdict for s in range(20)}
    assert verdicts == {"ok"}


def test_a_team_wide_shock_is_not_blamed_on_the_change_but_the_seed_rule_blames_it() -> None:
    data = _series(1.0, target_noise=0.03, shock_last_week=0.5)
    assert DiDJudge().judge([ISOLATION], data).verdict == "ok"
    assert ThresholdJudge().judge([ISOLATION], data).verdict == "negative"


def test_a_large_effect_on_a_very_noisy_person_is_inconclusive() -> None:
    # The target swings between 6 and 14 partners week by week around a steady team, then has 6: a 40% drop
    # that one of its ordinary weeks also shows.
    target = np.array([6.0, 14, 6, 14, 6, 14, 6, 14, 6])
    controls = 10 + np.tile([0.2, -0.2, 0.1, -0.1, 0.0, 0.2, -0.2, 0.1, 0.0], (8, 1)) * np.arange(1, 9)[:, None] / 4
    series = {"degree_centrality": MetricSeries("degree_centrality", target, controls, PRE, 1)}
    judgement = DiDJudge().judge([ISOLATION], series)
    (metric,) = judgement.metrics
    assert judgement.verdict == "inconclusive"
    assert metric.harm is not None and metric.harm == pytest.approx(0.4, abs=0.02)
    assert metric.interval is not None and metric.interval[0] < -0.3 < 0 < metric.interval[1]


def test_the_same_data_always_gives_the_same_decision() -> None:
    first = DiDJudge().judge([ISOLATION], _series(0.6, target_noise=0.15, seed=5)).as_dict()
    again = DiDJudge().judge([ISOLATION], _series(0.6, target_noise=0.15, seed=5)).as_dict()
    assert first == again


def test_a_target_without_a_pre_period_reading_asks_a_person_instead_of_guessing() -> None:
    data = _series(0.4, target_noise=0.03)
    data["degree_centrality"].target[:PRE] = 0.0
    judgement = DiDJudge().judge([ISOLATION], data)
    assert judgement.verdict == "inconclusive" and "pre-period" in judgement.metrics[0].note


def test_series_that_do_not_line_up_are_refused() -> None:
    with pytest.raises(OutcomeDataInvalid):
        MetricSeries("burnout", np.ones(5), np.ones((3, 4)), 4, 1)
    with pytest.raises(OutcomeDataInvalid):
        MetricSeries("burnout", np.ones(5), np.ones((3, 5)), 5, 1)


def test_judges_are_chosen_by_name_and_an_unknown_name_is_refused() -> None:
    assert make_judge("thresholds").name == "thresholds"
    assert make_judge("did", confidence=0.95).name == "did"
    with pytest.raises(InvalidInput):
        make_judge("magic")


def test_the_policy_selects_the_judge_and_its_settings_per_action_type() -> None:
    policy = parse_policy({"version": "t", "outcomes": {
        "role_change": {"judge": "did", "pre_weeks": 6, "confidence": 0.95, "delay_days": 14},
        "reassign_manager": None}})
    book = load_rulebook(policy.outcomes)
    role = book.for_type("role_change")
    assert role is not None and (role.judge, role.pre_weeks, role.confidence) == ("did", 6, 0.95)
    assert role.delay.days == 14
    assert book.for_type("reassign_manager") is None  # not monitored
    team = book.for_type("team_restructure")
    assert team is not None and (team.judge, team.delay.days) == ("did", 21)  # the default judge and its delay
    seed = load_rulebook({"role_change": {"judge": "thresholds"}}).for_type("role_change")
    assert seed is not None and (seed.judge, seed.delay.days) == ("thresholds", 7)  # seed 000's rule, selectable
    default = load_rulebook(default_policy().outcomes).for_type("schedule_focus_time")
    assert default is not None and (default.judge, default.pre_weeks, default.delay.days) == ("did", 24, 21)


@pytest.mark.parametrize("bad", [{"judge": "magic"}, {"confidence": 1.5}, {"pre_weeks": 1}])
def test_a_policy_with_bad_outcome_settings_is_refused_naming_the_type(bad: dict[str, object]) -> None:
    with pytest.raises(PolicyInvalid, match="role_change"):
        parse_policy({"version": "t", "outcomes": {"role_change": bad}})


def test_on_a_small_held_out_org_the_did_judge_rolls_back_far_fewer_good_changes_than_the_seed_rule() -> None:
    tallies = evaluate([1000], HELD_OUT_SEEDS[:1], 100, {"thresholds": ThresholdJudge(), "did": DiDJudge()})
    did, seed_rule = tallies["did"].figures(), tallies["thresholds"].figures()
    assert did["cases"] == seed_rule["cases"] == 400
    assert did["false_rollback_rate"] <= 0.03
    assert did["false_rollback_rate"] < seed_rule["false_rollback_rate"]
    assert did["detection_rate"] >= 0.6
    assert did["inconclusive_rate"] <= 0.3


def test_the_noisy_panel_is_deterministic_by_seed_and_carries_team_shocks_and_holidays() -> None:
    first, again, other = generate_panel(300, seed=5, weeks=12), generate_panel(300, seed=5, weeks=12), \
        generate_panel(300, seed=6, weeks=12)
    assert np.array_equal(first.degree, again.degree) and np.array_equal(first.burnout, again.burnout)
    assert not np.array_equal(first.degree, other.degree)
    assert first.degree.shape == first.burnout.shape == (300, 12)
    assert first.shocks > 0 and set(first.role) == {"lead", "member"}
    assert ((first.burnout > 0) & (first.burnout <= 1)).all()
    with pytest.raises(InvalidInput):
        generate_panel(20_001)


def test_a_rollback_needs_every_post_week_to_show_the_harm_and_records_each_week() -> None:
    rng = np.random.default_rng(3)
    ctrl = 10 * (1 + rng.normal(0, 0.03, size=(8, PRE + 3)))
    steady = 10 * (1 + rng.normal(0, 0.03, size=PRE + 3))
    lasting, one_bad_week = steady.copy(), steady.copy()
    lasting[-3:] *= 0.5  # half the partners lost, every week since the change
    one_bad_week[-3] *= 0.0  # a mean drop of a third, all in one week (a trip, a sick week)
    judged = {name: DiDJudge().judge([ISOLATION], {"degree_centrality": MetricSeries(
        "degree_centrality", series, ctrl, PRE, 3)}).metrics[0] for name, series in
        (("lasting", lasting), ("one bad week", one_bad_week))}
    assert judged["lasting"].verdict == "negative"
    assert judged["lasting"].details["week_harms"] == pytest.approx([0.5, 0.5, 0.5], abs=0.08)
    assert judged["one bad week"].harm is not None and judged["one bad week"].harm > 0.3
    assert judged["one bad week"].verdict == "inconclusive"  # large, but not in every week: a person decides
