"""The horizon curriculum moves up and down on scripted success streams, and resumes exactly."""

import json

import pytest

from envs.curriculum import CurriculumConfig, CurriculumSource
from rl.build import build_task_source
from rl.config import EnvConfig
from rl.errors import ConfigError
from rl.types import Episode, EpisodeGroup, Outcome


def _source(**kw):
    cfg = CurriculumConfig(enabled=True, **{"width": 2, "window": 8, "min_episodes": 4, **kw})
    return CurriculumSource(build_task_source(EnvConfig(options={"max_horizon": 16}), seed=0), cfg, seed=0)


def _groups(results: dict[int, list[bool]]):
    """Scored groups: horizon -> per-episode correctness."""
    groups = []
    for h, correct in results.items():
        task = build_task_source(EnvConfig(options={"min_horizon": h, "max_horizon": h}), 0).sample(1)[0]
        episodes = []
        for c in correct:
            e = Episode(task=task, group_id=0)
            e.outcome, e.reward = Outcome(score=float(c), correct=c), float(c)
            episodes.append(e)
        groups.append(EpisodeGroup(task, episodes))
    return groups


def test_level_moves_up_on_success_and_down_on_collapse():
    src = _source(start=2, up=0.75, down=0.25)
    assert src.horizons() == [1, 2]
    m = src.observe(_groups({2: [True, True, True]}))  # 3 < min_episodes: no move yet
    assert m["curriculum/level"] == 2 and m["curriculum/frontier_success"] == 1.0
    m = src.observe(_groups({2: [True, False, True, True, True]}))  # 7/8 >= 0.75
    assert m["curriculum/level"] == 3 and m["curriculum/moves"] == 1 and src.horizons() == [2, 3]
    assert "curriculum/success_h3" not in m  # the new frontier starts with no history
    m = src.observe(_groups({3: [False, False, False, True]}))  # 1/4 <= 0.25: collapse
    assert m["curriculum/level"] == 2 and m["curriculum/moves"] == 2
    m = src.observe(_groups({2: [True, False, True, False]}))  # 0.5: between the thresholds, stay
    assert m["curriculum/level"] == 2


def test_level_stays_inside_its_bounds():
    src = _source(start=1, min_level=1, max_level=2, up=0.5, down=0.1)
    src.observe(_groups({1: [False] * 4}))
    assert src.level == 1  # cannot go below min_level
    src.observe(_groups({1: [True] * 8}))
    src.observe(_groups({2: [True] * 8}))
    assert src.level == 2  # cannot go above max_level


def test_frontier_weighting_prefers_horizons_with_mixed_groups():
    src = _source(start=3, width=3, floor=0.05)
    src.observe(_groups({1: [True] * 4, 2: [True, False] * 2, 3: [False] * 3}))
    w = dict(zip(src.horizons(), src.weights()))
    assert w[2] == pytest.approx(0.25 + 0.05) and w[1] == pytest.approx(0.05) and w[3] == pytest.approx(0.05)
    horizons = [t.horizon for t in src.sample(300)]
    assert horizons.count(2) > 2 * max(horizons.count(1), horizons.count(3))
    uniform = _source(start=3, width=3, frontier_weighting=False)
    assert set(uniform.weights()) == {1.0}


def test_state_round_trip_is_exact():
    a = _source(start=2, up=0.6)
    a.observe(_groups({2: [True] * 5, 1: [True, False]}))
    a.sample(7)
    state = json.loads(json.dumps(a.state_dict()))  # what the checkpoint's state.json holds
    b = _source(start=2, up=0.6)
    b.load_state_dict(state)
    assert b.level == a.level == 3 and b.history.keys() == a.history.keys()
    assert [t.id for t in a.sample(10)] == [t.id for t in b.sample(10)]
    obs = _groups({3: [True, False, True, True]})
    assert a.observe(obs) == b.observe(obs)


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="curriculum.start"):
        CurriculumConfig(start=20, max_level=16)
    with pytest.raises(ConfigError, match="the curriculum owns the horizon"):
        _source().set_horizon(3, 3)


def test_curriculum_levels_must_fit_the_env_horizons():
    from rl.config import load_config
    from rl.trainer.config import TrainConfig

    with pytest.raises(ConfigError, match="curriculum.max_level"):
        load_config(TrainConfig, None, ["--curriculum.enabled", "true", "--env.max_horizon", "4"])  # max_level 16
    cfg = load_config(TrainConfig, None, ["--curriculum.enabled", "true", "--env.max_horizon", "8",
                                          "--curriculum.max_level", "8"])
    assert cfg.curriculum.max_level == 8
