"""ProcessRewardModel on tiny-random: encoding, scores, save/load, a few training steps."""

import pytest
import torch

from rewards.prm.model import build_prm, encode, load_prm, make_scorer, newline_id
from rewards.prm.train import step_loss, train_prm
from rl.config import LoraConfig
from rl.errors import DataError
from rl.types import Task

MESSAGES = [{"role": "user", "content": "Start with 2. Add 3. Multiply by 4."}]
STEPS = ["2 + 3 = 5", "5 * 4 = 21", "#### 21"]


@pytest.fixture()
def prm(tiny_path):
    return build_prm(str(tiny_path), lora=LoraConfig(r=4, alpha=8), dtype="float32", device="cpu", seed=0)


def test_encode_positions_are_newlines(tokenizer):
    ids, positions = encode(tokenizer, MESSAGES, STEPS)
    nl = newline_id(tokenizer)
    assert len(positions) == 3 and positions[-1] == len(ids) - 1
    assert all(ids[p] == nl for p in positions)
    # the text between step ends decodes back to each step
    starts = [positions[0] - len(tokenizer("2 + 3 = 5", add_special_tokens=False)["input_ids"])] + \
        [p + 1 for p in positions[:-1]]
    assert [tokenizer.decode(ids[s:e]) for s, e in zip(starts, positions)] == STEPS
    assert tokenizer.decode(ids[positions[0] + 1:]) == "5 * 4 = 21\n#### 21\n"


def test_scores_one_per_step_in_unit_interval(prm):
    model, tok = prm
    ids, _ = encode(tok, MESSAGES, STEPS)
    logits_btc = model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
    assert logits_btc.shape == (1, len(ids), 2) and logits_btc.dtype == torch.float32
    scores = model.step_scores(tok, [MESSAGES, MESSAGES], [STEPS, STEPS[:1]])
    assert [len(s) for s in scores] == [3, 1]
    assert all(0.0 < x < 1.0 for row in scores for x in row)
    # right padding does not change a row's scores (the shorter row was padded)
    assert scores[1][0] == pytest.approx(scores[0][0], abs=1e-5)
    task = Task(id="t", messages=MESSAGES, answer="20")
    assert make_scorer(model, tok)(task, STEPS) == pytest.approx(scores[0], abs=1e-6)


def test_save_load_round_trip(prm, tmp_path):
    model, tok = prm
    with torch.no_grad():  # make the adapter non-trivial so the round trip is a real check
        for name, p in model.backbone.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    before = model.step_scores(tok, [MESSAGES], [STEPS])
    model.save(tmp_path / "prm", tok)
    loaded, tok2 = load_prm(tmp_path / "prm", device="cpu", dtype="float32")
    assert loaded.step_scores(tok2, [MESSAGES], [STEPS]) == before  # identical (fp32, same weights)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_step_loss_hand_worked():
    # logits [0, 0] -> p = 0.5: loss = -log 0.5 = 0.693147 for any target
    # logits [0, ln 3] -> p1 = 0.75: target 1 -> -ln .75 = 0.287682; target 0.5 -> -(.5 ln .75 + .5 ln .25) = 0.836988
    logits = [torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, float(torch.log(torch.tensor(3.0)))]] * 2)]
    loss = step_loss(logits, [[1.0], [1.0, 0.5]])
    assert float(loss) == pytest.approx((0.693147 + 0.287682 + 0.836988) / 3, abs=1e-5)


def _rows():
    wrong = {"messages": MESSAGES, "completions": STEPS, "labels": [True, False, False],
             "soft_labels": [0.75, 0.25, 0.0]}
    right = {"messages": MESSAGES, "completions": ["2 + 3 = 5", "5 * 4 = 20", "#### 20"],
             "labels": [True, True, True], "soft_labels": [0.75, 1.0, 1.0]}
    return [wrong, right]


@pytest.mark.parametrize("label_key", ["labels", "soft_labels"])
def test_training_lowers_loss_and_is_deterministic(tiny_path, label_key):
    results = []
    for _ in range(2):
        model, tok = build_prm(str(tiny_path), lora=LoraConfig(r=4, alpha=8), dtype="float32",
                               device="cpu", seed=0)
        logged = []
        out = train_prm(model, tok, _rows(), label_key=label_key, epochs=30, lr=2e-3, batch_size=2,
                        max_steps=20, seed=0, log_fn=logged.append)
        results.append(out["losses"])
    losses = results[0]
    assert len(losses) == 20 and len(logged) == 20 and logged[-1]["step"] == 20
    assert all(torch.isfinite(torch.tensor(losses)))
    # ~0.71 -> ~0.45 (hard) / ~0.52 (soft; its floor is the targets' entropy, 0.28) over seeds 0-2
    assert losses[-1] < 0.85 * losses[0]
    assert results[0] == results[1]  # same seed, same losses


def test_full_trunk_round_trip_and_bf16_autocast(tiny_path, tmp_path):
    model, tok = build_prm(str(tiny_path), lora=None, dtype="float32", device="cpu", seed=0)
    before = model.step_scores(tok, [MESSAGES], [STEPS])
    with pytest.raises(ValueError):
        model.save(tmp_path / "no_tok")  # a full trunk needs its tokenizer saved with it
    model.save(tmp_path / "full", tok)
    loaded, tok2 = load_prm(tmp_path / "full", device="cpu", dtype="float32")
    assert loaded.step_scores(tok2, [MESSAGES], [STEPS]) == before
    bf16, tok3 = build_prm(str(tiny_path), lora=LoraConfig(r=4, alpha=8), dtype="bfloat16", device="cpu")
    scores = bf16.step_scores(tok3, [MESSAGES], [STEPS])[0]
    assert len(scores) == 3 and all(0.0 < x < 1.0 for x in scores)


def test_until_first_error_cuts_every_step_column_after_the_first_false():
    from rewards.prm.train import until_first_error

    row = {"prompt": "p", "completions": ["a", "b", "c", "d"], "labels": [True, False, True, False],
           "soft_labels": [0.5, 0.0, 0.25, 0.0], "exact_labels": [True, True, False, False],
           "messages": [{"role": "user", "content": "p"}] * 4, "task_id": "t", "horizon": 3}
    by_mc = until_first_error(row, "labels")  # first hard-MC error: step 1 (kept, then cut)
    assert by_mc["completions"] == ["a", "b"] and by_mc["soft_labels"] == [0.5, 0.0]
    assert by_mc["exact_labels"] == [True, True] and by_mc["labels"] == [True, False]
    assert by_mc["messages"] == row["messages"] and by_mc["horizon"] == 3  # not per-step: untouched
    by_exact = until_first_error(row, "exact_labels")
    assert by_exact["completions"] == ["a", "b", "c"]
    clean = dict(row, labels=[True] * 4)
    assert until_first_error(clean, "labels")["completions"] == row["completions"]
    with pytest.raises(DataError, match="exact_labels"):
        until_first_error(dict(row, exact_labels=None), "exact_labels")
