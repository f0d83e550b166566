from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from filters import GUARD_BUILDERS
from filters.base import Verdict
from icul import CONTEXT_BUILDERS
from proxy.policy import CompiledPolicy, compile_policy
from tests.policies import input_verdicts
from proxy.core.config import ForgetTargetConfig, PolicyConfig
from proxy.core.errors import ConfigError

POLICY = {
    "forget": [
        {
            "id": "quenby",
            "name": "Marisol Quenby",
            "aliases": ["M. Quenby"],
            "description": "A glass chemist from the harbour town of Vell.",
            "documents": [
                "Marisol Quenby founded the Quenby Glassworks, which made lighthouse lenses."
            ],
            "questions": [
                {
                    "question": "What did Marisol Quenby invent?",
                    "answer": "A salt-proof furnace lining.",
                },
                "Where did the glass chemist from Vell grow up?",
                "Which company made lenses for coastal lighthouses?",
                "Who founded a glassworks in the harbour town of Vell?",
                "What was the first patent of the chemist from Vell?",
            ],
        },
        {
            "id": "ferrant",
            "name": "Tomas Ferrant",
            "questions": ["What bicycle gears did Tomas Ferrant design?"],
        },
    ],
    "retain": [
        {"question": "Who invented the telescope?", "answer": "Hans Lippershey, probably."},
        "What is the boiling point of water?",
    ],
    "methods": [
        {"type": "prefix"},
        {"type": "output_filter"},
        {"type": "input_classifier"},
        {"type": "input_detector"},
    ],
}


def _compile(cache: Path, data: dict[str, object] = POLICY, **kwargs: object) -> CompiledPolicy:
    policy = PolicyConfig.model_validate(data)
    return compile_policy("p", policy, base_dir=cache, state_dir=cache, progress=False, **kwargs)  # type: ignore[arg-type]


def _check(compiled: CompiledPolicy, content: str) -> list[Verdict]:
    return input_verdicts(compiled, [{"role": "user", "content": content}])


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def cold(cache: Path) -> CompiledPolicy:
    return _compile(cache)


def test_registries_name_the_method_types() -> None:
    assert GUARD_BUILDERS.names() == ["input_classifier", "input_detector", "output_filter", "scope"]
    assert CONTEXT_BUILDERS.names() == ["icul", "prefix"]


@pytest.mark.slow
def test_cold_compile_builds_guards_in_config_order(cold: CompiledPolicy) -> None:
    assert not any(cold.cache_hits.values())
    assert [cfg.type for cfg, _ in cold.guards] == [
        "output_filter",
        "input_classifier",
        "input_detector",
    ]
    assert [m.type for m in cold.config.methods][0] == "prefix"
    assert len(cold.context) == 1 and cold.icul == []
    assert [g.name for g in cold.input_guards] == ["input_detector", "input_classifier"]
    text = "Marisol Quenby's lenses. " * 20
    assert cold.release_limit(text) == cold.output_guards[0].release_limit(text) < len(text)
    assert list(cold.calibration) == ["methods[2]"]
    assert any("input_classifier" in line for line in cold.describe())


@pytest.mark.slow
def test_check_input_runs_cheap_first_and_stops_at_a_block(cold: CompiledPolicy) -> None:
    named = _check(cold, "Tell me about m. quenby")
    assert [(v.guard, v.action) for v in named] == [("input_detector", "block")]
    assert named[0].match is not None and named[0].match.item == "alias:M. Quenby"
    clean = _check(cold, "How do I bake sourdough bread?")
    assert [(v.guard, v.action) for v in clean] == [
        ("input_detector", "allow"),
        ("input_classifier", "allow"),
    ]


@pytest.mark.slow
def test_a_question_buried_in_a_long_prompt_is_found(cold: CompiledPolicy) -> None:
    filler = "Please read all of this carefully before you answer my question. " * 40
    question = "Who founded a glassworks in the harbour town of Vell?"
    verdicts = _check(cold, filler + question)
    assert verdicts[0].guard == "input_detector" and verdicts[0].is_block
    assert verdicts[0].match is not None and verdicts[0].match.target_id == "quenby"


@pytest.mark.slow
def test_second_compile_is_a_fast_cache_hit(cold: CompiledPolicy, cache: Path) -> None:
    started = time.perf_counter()
    warm = _compile(cache)
    elapsed = time.perf_counter() - started
    print(f"\ncompile: cold {cold.compile_s:.2f}s, warm {elapsed:.2f}s")
    assert all(warm.cache_hits.values()) and warm.cache_hits
    assert elapsed < 2.0 and elapsed < cold.compile_s
    assert warm.calibration == cold.calibration


@pytest.mark.slow
def test_changes_rebuild_what_they_touch(cold: CompiledPolicy, cache: Path) -> None:
    retain_changed = _compile(cache, {**POLICY, "retain": ["What is the capital of Peru?"]})
    index_hit = retain_changed.cache_hits.pop("index")
    assert index_hit and not any(retain_changed.cache_hits.values())
    forget = [{**POLICY["forget"][0], "aliases": ["Quenby of Vell"]}, POLICY["forget"][1]]  # type: ignore[index]
    target_changed = _compile(cache, {**POLICY, "forget": forget})
    assert not any(target_changed.cache_hits.values())


@pytest.mark.slow
def test_runtime_targets_and_retain_removals_are_merged(cache: Path) -> None:
    extra = ForgetTargetConfig(
        id="ilse", name="Ilse Varga", questions=["What did Ilse Varga paint?"]
    )
    data = {**POLICY, "methods": [{"type": "input_detector"}]}
    compiled = _compile(cache, data, extra_targets=[extra],
                        removed_retain=[" What is the boiling point of water? "])
    assert [t.id for t in compiled.config.forget] == ["quenby", "ferrant", "ilse"]
    assert [r.question for r in compiled.config.retain] == ["Who invented the telescope?"]
    asking = _check(compiled, "Who is Ilse Varga?")
    assert asking[-1].match is not None and asking[-1].match.target_id == "ilse"


def test_a_duplicate_runtime_target_is_a_config_error(cache: Path) -> None:
    with pytest.raises(ConfigError, match=r"(?s)policies\.p: invalid.*duplicate forget target "
                                          r"ids: quenby"):
        _compile(cache, extra_targets=[ForgetTargetConfig(id="quenby", name="Other")])


def test_a_prefix_only_policy_builds_no_artefacts(cache: Path) -> None:
    compiled = _compile(cache, {**POLICY, "methods": [{"type": "prefix", "when": "detected"}]})
    assert (compiled.guards, compiled.cache_hits, compiled.release_limit("abc d")) == ([], {}, 5)
    assert [m.when for m in compiled.context] == ["detected"]


@pytest.mark.slow
def test_check_input_is_thread_safe(cold: CompiledPolicy) -> None:
    questions = [
        "What did Marisol Quenby invent?",
        "Who founded a glassworks in the harbour town of Vell?",
        "How do I bake sourdough bread?",
        "What is the boiling point of water?",
    ] * 6
    expected = [
        [v.action for v in _check(cold, q)] for q in questions
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(
            pool.map(
                lambda q: [v.action for v in _check(cold, q)],
                questions,
            )
        )
    assert got == expected
