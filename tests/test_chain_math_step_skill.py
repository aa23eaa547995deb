"""recipes/chain_math_step_skill.py: teacher-forced line judgements, aligned token by token."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))

import chain_math_step_skill as skill  # noqa: E402
from envs.chain_math import ChainMathConfig, ChainMathSource, oracle_solution  # noqa: E402


def test_line_groups_follow_character_offsets():
    # "12 + 3 = 15\n#### 15" tokenised by hand: the newline rides on the next line's first token
    solution = "12 + 3 = 15\n#### 15"
    offsets = [(0, 2), (2, 4), (4, 6), (6, 8), (8, 11), (11, 16), (16, 19)]
    assert skill.line_token_groups(solution, offsets) == [[0, 1, 2, 3, 4], [5, 6]]


def test_lines_right_needs_every_token_of_the_line():
    groups = [[0, 1], [2, 3, 4], [5]]
    target = [7, 8, 9, 10, 11, 12]
    assert skill.lines_right([7, 8, 9, 0, 11, 12], target, groups) == [True, False, True]
    assert skill.lines_right(target, target, [[]]) == [False]


def test_positions_tally_lines_by_place_and_the_last_as_stop():
    per_task = [[True, False, True], [True, True, True, False]]  # h=2 then h=3, last line = ####
    out = skill.tally_positions(per_task)
    assert list(out) == ["1", "2", "3", "stop"]
    assert (out["1"]["n"], out["1"]["right"]) == (2, 2)
    assert (out["2"]["n"], out["2"]["right"]) == (2, 1)
    assert (out["3"]["n"], out["3"]["right"], out["stop"]["right"]) == (1, 1, 1)
    assert out["stop"]["n"] == 2 and out["stop"]["rate"] == 0.5
    assert out["2"]["ci"][0] < 0.5 < out["2"]["ci"][1]


def test_first_miss_probs_read_the_right_tokens_probability_where_the_line_first_goes_wrong():
    probs_tv = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    target, groups = [0, 1, 1], [[0], [1, 2]]
    predicted = probs_tv.argmax(-1).tolist()  # [0, 2, 0]: line 1 right, line 2 wrong from its first token
    out = skill.first_miss_probs(probs_tv.log(), predicted, target, groups)
    assert out[0] is None and out[1] == pytest.approx(0.3)


def test_misses_tally_by_position_with_medians_and_shares():
    out = skill.tally_misses([[None, 0.3, None], [0.1, None], [None, None, 0.02]])
    assert out["2"]["misses"] == 1 and out["2"]["p_right_median"] == pytest.approx(0.3)
    assert out["1"]["p_right_median"] == pytest.approx(0.1) and out["stop"]["misses"] == 1
    assert out["all"]["misses"] == 3 and out["all"]["p_right_median"] == pytest.approx(0.1)
    assert out["all"]["share_p_ge"] == pytest.approx({"0.05": 2 / 3, "0.125": 1 / 3, "0.25": 1 / 3})
    assert skill.tally_misses([[None, None]])["all"] == {"misses": 0, "p_right_median": None,
                                                         "share_p_ge": {"0.05": None, "0.125": None, "0.25": None}}


class _PeekingModel(torch.nn.Module):
    """Logits whose argmax at position t is input token t+1 (an oracle), except that every
    occurrence of ``wrong_id`` is mispredicted: the lines holding that token must come out wrong."""

    def __init__(self, vocab: int, wrong_id: int):
        super().__init__()
        self.vocab, self.wrong_id = vocab, wrong_id

    def forward(self, input_ids, attention_mask=None):
        nxt = torch.roll(input_ids, -1, dims=1)
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits.scatter_(2, nxt[..., None], 50.0)
        hit = nxt == self.wrong_id
        logits[hit] = 0.0
        logits[..., 0][hit] = 50.0  # token 0 wins where the oracle would write wrong_id
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("wrong", [None, "#"])
def test_score_policy_judges_lines_at_the_positions_that_predict_them(tokenizer, wrong):
    source = ChainMathSource(ChainMathConfig(min_horizon=3, max_horizon=3, operand_range=(1, 9)), seed=1)
    tasks = source.sample(5)
    wrong_id = -1 if wrong is None else tokenizer.convert_tokens_to_ids(tokenizer.tokenize("####")[0])
    policy = SimpleNamespace(tokenizer=tokenizer, model=_PeekingModel(len(tokenizer), wrong_id))
    out = skill.score_policy(policy, tasks, batch_size=2)
    pos = out["positions"]
    assert list(pos) == ["1", "2", "3", "stop"] and all(c["n"] == 5 for c in pos.values())
    assert all(pos[k]["rate"] == 1.0 for k in ("1", "2", "3"))
    assert pos["stop"]["rate"] == (1.0 if wrong is None else 0.0)
    assert out["by_horizon"] == {3: pos}
    misses = out["misses"]["all"]
    if wrong is None:
        assert out["nll_per_token"] < 0.1
        assert misses["misses"] == 0
    else:  # every stop line goes wrong at "####", which the model gave ~e^-50
        assert out["misses"]["stop"]["misses"] == 5 and misses["misses"] == 5 and misses["p_right_median"] < 1e-6
    assert all(oracle_solution(t).count("\n") == 3 for t in tasks)


def test_script_without_a_run_to_take_the_env_from_fails_before_loading(tiny_path):
    from rl.errors import ConfigError

    with pytest.raises(ConfigError, match="--env-from"):
        skill.main([str(tiny_path)])
