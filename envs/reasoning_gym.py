"""reasoning_gym: any of reasoning-gym's procedural tasks (or a weighted mix) as a horizon env.

This is an adapter only: generation, answer extraction (``reasoning_gym.utils.extract_answer``,
the last ``<answer>...</answer>``) and scoring (each dataset's ``score_answer``) are
reasoning-gym's own. What it adds:

- the prompt: the reasoning-gym question plus one line asking for ``<answer>...</answer>``;
- the outcome: correct iff reasoning-gym's score is 1.0 (``Outcome.score`` is 1 or 0); a score
  strictly between 0 and 1 is the separate ``partial`` reward term (``env.partial_credit_weight``,
  default 0: logged, not trained on). Partial scores differ in kind: chain_sum, basic_arithmetic
  and maze give ``len(reference) / len(answer)`` when the answer merely contains the reference
  ("-511" for "-51" scores 0.75), knights_knaves 0.3 + 0.7 * the share of people right, a valid
  but unsolved tower_of_hanoi 0.05, countdown 0.05 / 0.01 and rush_hour 0.01 for any parseable
  answer;
- a horizon knob per task (``KNOBS``): ``set_horizon(low, high)`` sets the task's own
  difficulty field(s) to a horizon drawn from ``[low, high]``, so the curriculum and
  ``horizon eval`` move it like chain_math's number of operations:

  ================  =============================  ==========================  =======  =======
  task              horizon counts                 reasoning-gym field(s)      range    default
  ================  =============================  ==========================  =======  =======
  chain_sum         terms                          min_terms / max_terms       1..64    2..6
  basic_arithmetic  terms                          min_terms / max_terms       1..32    2..6
  tower_of_hanoi    disks                          min_disks / max_disks       1..12    3..7
  maze              shortest-path steps            min_dist / max_dist (*)     1..40    5..10
  sokoban           moves of the reference answer  kept by filter (**)         1..24    5..15
  rush_hour         moves of the optimal solution  min_moves / max_moves       3..40    3..40
  knights_knaves    people                         n_people                    2..10    2..2
  countdown         numbers to combine             min_numbers / max_numbers   2..8     4..6
  ================  =============================  ==========================  =======  =======

  (*) the grid grows with the distance (``min_grid_size = h // 2 + 4``) unless the task config
  sets it. (**) reasoning-gym has no move-count field: the box count and board size follow h and
  only puzzles whose reference solution has exactly h moves are kept (a few redraws per task).
  Ranges exclude what reasoning-gym cannot generate (knights_knaves with 1 person never
  returns; rush_hour's database has one puzzle of 1 move and 8 of 2).

  Every other task has a fixed difficulty (its ``task_config``): its tasks carry horizon None and
  ``set_horizon`` leaves it alone; a source where no task has a knob accepts only
  ``set_horizon(1, 1)`` (``eval.horizons: [1]``) and raises ``ConfigError`` for anything else.

Task number ``i`` depends only on ``(seed, i)`` and the horizon settings: an RNG keyed by them
picks the task of a mix (by weight) and the horizon h; the item is number ``i % size`` of a
reasoning-gym dataset seeded from ``(seed, task, h, i // size, attempt)`` (a fresh dataset per
``size`` items, like reasoning-gym's ``ReseedingDataset``). An item reasoning-gym fails to
generate (countdown, maze give up on some seeds) or that a filter rejects is redrawn with the next
attempt. The mix is drawn here rather than by reasoning-gym's ``CompositeDataset`` because the
horizon and the redraws are per task: a composite would let the redraws skew the weights. A
task's ``meta`` holds what the scorer needs, as plain JSON: ``task`` (the name), ``entry``
(reasoning-gym's item: question, answer, metadata), ``config`` (the dataset config that made it),
``horizon`` and ``attempt``.

Example::

    source = ReasoningGymSource(ReasoningGymConfig(task="chain_sum", min_horizon=3, max_horizon=3))
    (task,) = source.sample(1)       # task.meta["entry"]["metadata"]["num_terms"] == 3
    VERIFIER(task, episode)          # Outcome(score=1.0, correct=True, details={"rg_score": 1.0, ...})
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import random
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from envs.base import EnvSpec, PositionStream, SingleTurnEnv, is_int
from rl.errors import ConfigError, DataError
from rl.types import Episode, Outcome, Task

SOURCE = "reasoning_gym"
DEFAULT_TASK = "chain_sum"
INSTRUCTIONS = ("Reason as you need, then give your final answer alone between <answer> and </answer> "
                "tags, in the form the question asks for.")
MAX_ATTEMPTS = 1000  # redraws per task (generation failures and filters) before DataError
CACHED_DATASETS = 64  # reasoning-gym dataset objects kept per source
OWNED_FIELDS = ("seed", "size")  # set by the source: seeds derive from the run's seed


@dataclass(frozen=True)
class Knob:
    """How a horizon h sets one task's difficulty: ``fields`` of its reasoning-gym config are set
    to h; ``extra(h)`` gives further fields (those the task config leaves unset); with ``length``,
    only items whose ``length(entry) == h`` are kept."""

    counts: str
    fields: tuple[str, ...]
    low: int
    high: int
    default: tuple[int, int]
    extra: Callable[[int], dict[str, Any]] | None = None
    length: Callable[[dict[str, Any]], int] | None = None


def _maze_grid(h: int) -> dict[str, Any]:
    side = h // 2 + 4  # a random maze this wide reaches distance h within a few hundred tries
    return {"min_grid_size": side, "max_grid_size": max(side, 10)}


def _sokoban_board(h: int) -> dict[str, Any]:
    boxes, (low, high) = (1, (5, 7)) if h <= 8 else (2, (6, 8)) if h <= 20 else (3, (6, 8))
    return {"min_boxes": boxes, "max_boxes": boxes, "min_w": low, "max_w": high, "min_h": low, "max_h": high}


def _answer_length(entry: dict[str, Any]) -> int:
    return len(entry["answer"] or "")


KNOBS: dict[str, Knob] = {
    "chain_sum": Knob("terms", ("min_terms", "max_terms"), 1, 64, (2, 6)),
    "basic_arithmetic": Knob("terms", ("min_terms", "max_terms"), 1, 32, (2, 6)),
    "tower_of_hanoi": Knob("disks", ("min_disks", "max_disks"), 1, 12, (3, 7)),
    "maze": Knob("shortest-path steps", ("min_dist", "max_dist"), 1, 40, (5, 10), extra=_maze_grid),
    "sokoban": Knob("moves of the reference solution", (), 1, 24, (5, 15), extra=_sokoban_board,
                    length=_answer_length),
    "rush_hour": Knob("moves of the optimal solution", ("min_moves", "max_moves"), 3, 40, (3, 40)),
    "knights_knaves": Knob("people", ("n_people",), 2, 10, (2, 2)),
    "countdown": Knob("numbers", ("min_numbers", "max_numbers"), 2, 8, (4, 6)),
}


@dataclass(frozen=True)
class MixItem:
    """One task of the stream: its reasoning-gym name, weight and config (without seed/size/knob);
    ``key`` is where the config came from (``env.task_config``, ``env.tasks[i].config``)."""

    name: str
    weight: float
    config: dict[str, Any]
    key: str


@dataclass(frozen=True)
class ReasoningGymConfig:
    """Options of a reasoning-gym task stream (the ``env`` config keys), validated on construction.

    One task (``task`` + ``task_config``) or a weighted mix (``tasks``: ``{name: weight}`` or a
    list of ``{name, weight, config}``); neither: chain_sum. The horizon range applies to every
    task that has a knob (``envs.reasoning_gym.KNOBS``); unset ends take each task's default.
    """

    # one reasoning-gym task by name (e.g. chain_sum, maze); null with `tasks` unset: chain_sum
    task: str | None = None
    # that task's reasoning-gym config (e.g. {max_digits: 2}); not seed, size or its horizon fields
    task_config: dict[str, Any] = field(default_factory=dict)
    # a weighted mix instead of `task`: {chain_sum: 2, maze: 1} or [{name, weight, config}]
    tasks: Any = None
    # horizons drawn per task (the knob table); null: the task's default range (written into the
    # resolved config when all tasks with a knob share it; 1 when none has one)
    min_horizon: int | None = None
    max_horizon: int | None = None  # null: the task's default upper end
    # weight of the `partial` reward term (reasoning-gym's score when 0 < score < 1, else 0);
    # logged at weight 0 too. Off by default: partial scores differ in kind from task to task
    partial_credit_weight: float = 0.0

    def __post_init__(self) -> None:
        mix = task_mix(self)
        defaults = {KNOBS[item.name].default for item in mix if item.name in KNOBS}
        shared = defaults.pop() if len(defaults) == 1 else None if defaults else (1, 1)
        for end, key in enumerate(("min_horizon", "max_horizon")):
            value = getattr(self, key)
            if value is not None and not is_int(value):
                raise ConfigError(f"config key 'env.{key}': {value!r}: use an integer or null")
            if value is None and shared is not None:  # one default range: resolve it (a mix keeps None)
                object.__setattr__(self, key, shared[end])
        _check_horizons(mix, self.min_horizon, self.max_horizon, "env.min_horizon")
        if not isinstance(self.partial_credit_weight, (int, float)) or isinstance(self.partial_credit_weight, bool):
            raise ConfigError(f"config key 'env.partial_credit_weight': {self.partial_credit_weight!r}: use a number")


def task_mix(cfg: ReasoningGymConfig) -> list[MixItem]:
    """The validated tasks of ``cfg`` (name, weight, config), in config order; ``ConfigError``
    naming the key for an unknown task or config field, a bad weight or a config reasoning-gym
    rejects."""
    if cfg.task is not None and cfg.tasks is not None:
        raise ConfigError("config keys 'env.task' and 'env.tasks' are both set: use `task` (+ `task_config`) "
                          "for one task or `tasks` for a mix")
    if not isinstance(cfg.task_config, dict):
        raise ConfigError(f"config key 'env.task_config': {cfg.task_config!r}: use a mapping of reasoning-gym "
                          "config fields")
    if cfg.tasks is None:
        raw = [("env.task", cfg.task or DEFAULT_TASK, 1.0, dict(cfg.task_config), "env.task_config")]
    else:
        if cfg.task_config:
            raise ConfigError("config key 'env.task_config' is for `task`: with `tasks`, give each task's config "
                              "as env.tasks[i].config")
        raw = _mix_entries(cfg.tasks)
    items, seen = [], set()
    for key, name, weight, config, config_key in raw:
        _check_name(name, key)
        if name in seen:
            raise ConfigError(f"config key '{key}': task '{name}' is listed twice: give it once with its weight")
        seen.add(name)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight > 0:
            raise ConfigError(f"config key '{key}': weight {weight!r} of '{name}': use a number > 0")
        item = MixItem(name, float(weight), _check_config(name, config, config_key), config_key)
        if name not in KNOBS:  # the others are validated at their horizon range's ends
            _dataset_config(item, None)
        items.append(item)
    return items


def _mix_entries(tasks: Any) -> list[tuple[str, Any, Any, Any, str]]:
    if isinstance(tasks, dict) and tasks:
        return [(f"env.tasks.{name}", name, weight, {}, f"env.tasks.{name}") for name, weight in tasks.items()]
    if isinstance(tasks, (list, tuple)) and tasks:
        out = []
        for i, entry in enumerate(tasks):
            key = f"env.tasks[{i}]"
            if not isinstance(entry, dict) or "name" not in entry:
                raise ConfigError(f"config key '{key}': {entry!r}: use {{name: ..., weight: ..., config: {{...}}}}")
            unknown = set(entry) - {"name", "weight", "config"}
            if unknown:
                raise ConfigError(f"config key '{key}.{sorted(unknown)[0]}': unknown; a mix entry has name, "
                                  "weight (default 1) and config (default {})")
            out.append((f"{key}.name", entry["name"], entry.get("weight", 1.0), entry.get("config") or {},
                        f"{key}.config"))
        return out
    raise ConfigError(f"config key 'env.tasks': {tasks!r}: use a non-empty mapping {{name: weight}} or a list "
                      "of {name, weight, config}")


def _registry() -> dict[str, tuple[type, type]]:
    """reasoning-gym's datasets: name -> (dataset class, config class); imported on first use
    (the package takes about a second to import)."""
    from reasoning_gym.factory import DATASETS

    return DATASETS


def _check_name(name: Any, key: str) -> None:
    names = _registry()
    if not isinstance(name, str) or name not in names:
        close = difflib.get_close_matches(str(name), list(names), n=3)
        hint = f"did you mean {close}? " if close else ""
        raise ConfigError(f"config key '{key}': unknown reasoning-gym task {name!r}: {hint}"
                          f"it has {len(names)} tasks, e.g. {sorted(KNOBS)}")


def _check_config(name: str, config: Any, key: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ConfigError(f"config key '{key}': {config!r}: use a mapping of {name}'s reasoning-gym config fields")
    valid = [f.name for f in fields(_registry()[name][1])]
    knob = KNOBS.get(name)
    for field_name in config:
        if field_name in OWNED_FIELDS:
            raise ConfigError(f"config key '{key}.{field_name}': set by the env (items are seeded from the run's "
                              "seed): remove it")
        if knob is not None and field_name in knob.fields:
            raise ConfigError(f"config key '{key}.{field_name}': {name}'s horizon knob ({knob.counts}): set "
                              f"env.min_horizon / env.max_horizon (range {knob.low}..{knob.high}) instead")
        if field_name not in valid:
            close = difflib.get_close_matches(str(field_name), valid, n=3)
            hint = f"did you mean {close}? " if close else ""
            raise ConfigError(f"config key '{key}.{field_name}': not a field of {name}'s config: {hint}"
                              f"its fields are {[f for f in valid if f not in OWNED_FIELDS]}")
    return dict(config)


def _check_horizons(mix: list[MixItem], low: int | None, high: int | None, key: str) -> None:
    """``ConfigError`` naming ``key`` unless every task with a knob accepts horizons ``low..high``
    (None: the task's default end) and reasoning-gym validates its config at both ends."""
    knobbed = [item for item in mix if item.name in KNOBS]
    if not knobbed:
        if low in (None, 1) and high in (None, 1):
            return
        raise ConfigError(f"config key '{key}': {[item.name for item in mix]} has no horizon knob in horizon's "
                          f"table (tasks with one: {sorted(KNOBS)}): its difficulty is its task_config; use "
                          "horizon 1 only (eval.horizons: [1], no curriculum)")
    for item in knobbed:
        knob = KNOBS[item.name]
        lo, hi = _span(item, low, high)
        if not (is_int(lo) and is_int(hi) and knob.low <= lo and hi <= knob.high):
            raise ConfigError(f"config key '{key}': horizons {lo}..{hi} do not fit {item.name}, whose horizon "
                              f"({knob.counts}) runs {knob.low}..{knob.high}: choose a range inside it")
        if lo > hi:
            raise ConfigError(f"config key 'env.max_horizon': {hi} is below env.min_horizon {lo} for {item.name} "
                              f"(an unset end takes the task's default range {knob.default[0]}..{knob.default[1]})")
        for h in {lo, hi}:
            _dataset_config(item, h)


def _span(item: MixItem, low: int | None, high: int | None) -> tuple[int, int]:
    default = KNOBS[item.name].default
    return (default[0] if low is None else low, default[1] if high is None else high)


def _dataset_config(item: MixItem, h: int | None, **owned: Any) -> dict[str, Any]:
    """The reasoning-gym config of ``item`` at horizon ``h`` (``owned``: seed and size), checked
    by the config class's own ``validate()``; ``ConfigError`` naming ``item.key`` if it fails."""
    config = dict(item.config)
    knob = KNOBS.get(item.name)
    if knob is not None and h is not None:
        for name, value in (knob.extra(h) if knob.extra else {}).items():
            config.setdefault(name, value)
        config.update({name: h for name in knob.fields})
    config.update(owned)
    config_cls = _registry()[item.name][1]
    try:
        built = config_cls(**config)
        if hasattr(built, "validate"):
            built.validate()
    except (AssertionError, TypeError, ValueError) as e:
        at = f" at horizon {h}" if h is not None else ""
        shown = {k: v for k, v in config.items() if k not in OWNED_FIELDS}
        raise ConfigError(f"config key '{item.key}': reasoning-gym rejects {item.name}'s config{at} {shown}: "
                          f"{e or type(e).__name__}") from e
    return config


class ReasoningGymSource(PositionStream):
    """A seeded, deterministic stream of reasoning-gym tasks (a ``TaskSource``)."""

    STATE_NAME = "reasoning_gym"

    def __init__(self, config: ReasoningGymConfig | None = None, seed: int = 0):
        self.start_stream(seed)
        self.config = config or ReasoningGymConfig()
        self.mix = task_mix(self.config)
        self.min_horizon, self.max_horizon = self.config.min_horizon, self.config.max_horizon
        self._datasets: OrderedDict[tuple, Any] = OrderedDict()

    def task_at(self, index: int) -> Task:
        """Task number ``index`` under the current horizon settings (the position is unchanged)."""
        rng = random.Random(f"{SOURCE}:{self.seed}:{index}")
        item = rng.choices(self.mix, weights=[m.weight for m in self.mix])[0]
        h = rng.randint(*_span(item, self.min_horizon, self.max_horizon)) if item.name in KNOBS else None
        entry, config, attempt = self._generate(item, h, index)
        entry = _jsonable(entry)
        return Task(
            id=f"{SOURCE}/{item.name}/h{h if h is not None else '-'}/s{self.seed}-i{index}",
            messages=[{"role": "user", "content": f"{entry['question']}\n\n{INSTRUCTIONS}"}],
            answer="" if entry.get("answer") is None else str(entry["answer"]),
            meta={"horizon": h, "task": item.name, "entry": entry, "config": _jsonable(config),
                  "attempt": attempt, "source": SOURCE},
            source=SOURCE,
        )

    def _generate(self, item: MixItem, h: int | None, index: int) -> tuple[dict[str, Any], dict[str, Any], int]:
        """reasoning-gym's item for position ``index``: ``(entry, config, attempt)``, redrawing
        (attempt + 1) when generation raises or the knob's length filter rejects the item."""
        knob = KNOBS.get(item.name)
        size = _default_size(item.name)
        chunk, j = divmod(index, size)
        last = "no attempt"
        for attempt in range(MAX_ATTEMPTS):
            key = (item.name, h, chunk, attempt)
            seed = int.from_bytes(hashlib.sha256(f"{SOURCE}:{self.seed}:{key}".encode()).digest()[:4], "big")
            config = _dataset_config(item, h, seed=seed, size=size)
            try:
                entry = self._dataset(key, item.name, config)[j]
            except Exception as e:  # noqa: BLE001 - reasoning-gym gives up on some seeds: redraw
                last = f"{type(e).__name__}: {e}"
                continue
            if knob is not None and knob.length is not None and knob.length(entry) != h:
                last = f"{knob.counts} = {knob.length(entry)}, not {h}"
                continue
            return entry, config, attempt
        raise DataError(f"reasoning-gym could not generate {item.name} at horizon {h} in {MAX_ATTEMPTS} attempts "
                        f"(last: {last}): choose a smaller env.max_horizon or an easier task_config")

    def _dataset(self, key: tuple, name: str, config: dict[str, Any]):
        if key not in self._datasets:
            from reasoning_gym import create_dataset

            self._datasets[key] = create_dataset(name, **config)
            if len(self._datasets) > CACHED_DATASETS:
                self._datasets.popitem(last=False)
        self._datasets.move_to_end(key)
        return self._datasets[key]

    def set_horizon(self, low: int, high: int | None = None) -> None:
        high = low if high is None else high
        _check_horizons(self.mix, low, high, "env.min_horizon")
        self.min_horizon, self.max_horizon = low, high

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "min_horizon": self.min_horizon,
                "max_horizon": self.max_horizon, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state(state, {"min_horizon", "max_horizon"})
        _check_horizons(self.mix, state["min_horizon"], state["max_horizon"], "env.min_horizon")
        self.min_horizon, self.max_horizon = state["min_horizon"], state["max_horizon"]
        self.position = state["position"]

    def make_env(self, task: Task) -> SingleTurnEnv:
        return SingleTurnEnv(task)

    def __getstate__(self) -> dict[str, Any]:
        # pickled with make_env into an env worker: the dataset cache is rebuilt there on demand
        return {**self.__dict__, "_datasets": OrderedDict()}


def _default_size(name: str) -> int:
    """Items per reseeded dataset: the task's own default ``size`` (some datasets precompute
    ``size`` items at construction, and some refuse indices past it)."""
    for f in fields(_registry()[name][1]):
        if f.name == "size" and isinstance(f.default, int) and f.default > 0:
            return f.default
    return 500


# ---------------------------------------------------------------------------- scoring


def extract(text: str) -> str | None:
    """The model's answer: reasoning-gym's ``extract_answer`` (the last ``<answer>...</answer>``,
    stripped), None when there is none."""
    from reasoning_gym.utils import extract_answer

    return extract_answer(text)


@functools.lru_cache(maxsize=64)
def _scorer(name: str, config_json: str):
    from reasoning_gym import create_dataset

    return create_dataset(name, **json.loads(config_json))


def rg_score(task: Task, text: str) -> tuple[float, str | None]:
    """reasoning-gym's score of completion ``text`` for ``task`` and the extracted answer: the
    task's own ``score_answer(answer, entry)`` on a dataset built from the task's config (seed 0:
    scoring reads the entry, not the seed)."""
    meta = task.meta
    missing = [k for k in ("task", "entry", "config") if k not in meta]
    if missing:
        raise DataError(f"task {task.id} has no meta {missing}: the reasoning_gym verifier needs a reasoning_gym task")
    answer = extract(text)
    config = {**meta["config"], "seed": 0}
    score = _scorer(meta["task"], json.dumps(config, sort_keys=True)).score_answer(answer, meta["entry"])
    return float(score), answer


class ReasoningGymVerifier:
    """The outcome: correct iff reasoning-gym scores the answer 1.0 (``Outcome.score`` 1 or 0;
    ``details``: ``rg_score``, the extracted ``answer``, the ``task``). Picklable, stateless."""

    def __call__(self, task: Task, episode: Episode) -> Outcome:
        score, answer = rg_score(task, episode.final_text)
        correct = score >= 1.0
        return Outcome(score=1.0 if correct else 0.0, correct=correct,
                       details={"rg_score": score, "answer": None if answer is None else answer[:500],
                                "task": task.meta["task"]})


def partial_credit(task: Task, episode: Episode) -> float:
    """The ``partial`` term: reasoning-gym's score when strictly between 0 and 1, else 0 (a
    correct answer is the outcome's, not this term's)."""
    score, _ = rg_score(task, episode.final_text)
    return score if 0.0 < score < 1.0 else 0.0


def format_score(text: str) -> float:
    """The ``format`` term: 1.0 when the completion has an ``<answer>...</answer>``, else 0.0."""
    return 0.0 if extract(text) is None else 1.0


def reward_terms(options: ReasoningGymConfig) -> dict[str, tuple[float, Callable[[Task, Episode], float]]]:
    """The extra reward terms of ``EnvSpec.reward_terms``: ``{"partial": (weight, partial_credit)}``."""
    return {"partial": (float(options.partial_credit_weight), partial_credit)}


# ---------------------------------------------------------------------------- helpers


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: tuples/sets become lists, numpy scalars and arrays become
    numbers and lists, other objects their ``str``."""
    if value is None or isinstance(value, bool):
        return value
    for plain in (int, float, str):  # numpy's str_ and float64 subclass these: keep the plain type
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _jsonable(value.tolist())
    return str(value)


VERIFIER = ReasoningGymVerifier()

SPEC = EnvSpec(
    name=SOURCE,
    options=ReasoningGymConfig,
    make_source=ReasoningGymSource,
    verifier=VERIFIER,
    format_score=format_score,
    reward_terms=reward_terms,
)
