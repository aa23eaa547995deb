from rl.types import Completion, Episode, EpisodeGroup, Outcome, Step, Task, Turn

TASK = Task(id="t0", messages=[{"role": "user", "content": "q"}], answer="1", meta={"horizon": 2})


def _turn(context, tokens, steps=()):
    return Turn(context, Completion(tokens, [-0.5] * len(tokens), "x", "stop"), list(steps))


def test_single_turn_sample_masks_prompt_and_keeps_engine_logprobs():
    ep = Episode(TASK, 0, [_turn([1, 2, 3], [7, 8], [Step("a", 0, 1), Step("b", 1, 2)])])
    (s,) = ep.to_samples()
    assert s.token_ids == [1, 2, 3, 7, 8]
    assert s.loss_mask == [0, 0, 0, 1, 1]
    assert s.old_logprobs == [0.0, 0.0, 0.0, -0.5, -0.5]
    assert s.step_spans == [(3, 4), (4, 5)]
    assert s.turn_index is None


def test_multi_turn_with_shared_prefix_is_one_sample_with_env_tokens_masked():
    t1 = _turn([1, 2], [5, 6])
    t2 = _turn([1, 2, 5, 6, 90, 91], [7], [Step("c", 0, 1)])  # 90, 91: tool reply tokens
    (s,) = Episode(TASK, 0, [t1, t2]).to_samples()
    assert s.token_ids == [1, 2, 5, 6, 90, 91, 7]
    assert s.loss_mask == [0, 0, 1, 1, 0, 0, 1]
    assert s.step_spans == [(6, 7)]


def test_rewritten_history_gives_one_sample_per_turn():
    t1 = _turn([1, 2], [5, 6])
    t2 = _turn([1, 99, 7], [8])  # a context policy replaced the history
    samples = Episode(TASK, 0, [t1, t2]).to_samples()
    assert [s.turn_index for s in samples] == [0, 1]
    assert samples[1].token_ids == [1, 99, 7, 8]
    assert samples[1].loss_mask == [0, 0, 0, 1]


def test_group_scored_excludes_unscored_and_record_round_trips_to_json():
    import json

    good = Episode(TASK, 0, [_turn([1], [2])], reward=1.0, outcome=Outcome(1.0, True))
    bad = Episode(TASK, 0, [_turn([1], [3])])
    bad.record_error("verifier", "boom")
    group = EpisodeGroup(TASK, [good, bad])
    assert group.scored == [good]
    record = json.loads(json.dumps(bad.to_record(step=4)))
    assert record["errors"] == [{"kind": "verifier", "message": "boom"}]
    assert record["rewards"]["total"] is None and record["horizon"] == 2


def test_completion_rejects_mismatched_logprobs():
    import pytest

    with pytest.raises(ValueError, match="logprobs"):
        Completion([1, 2], [-0.1], "x", "stop")
