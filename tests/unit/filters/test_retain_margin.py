"""Both sides of the policy (issue 17, item 1): the input detector blocks a text only when its
nearest forget item is closer than its nearest retain example, with the real MiniLM.

The demo config (``proxy/default_config.yaml``) blocked a question on its own retain list,
"Who directed the first Harry Potter film?" (similarity 0.73 to a forget question, over the
0.62 threshold); every retain question it lists must now be answered, by the input guards and
by the output guards on its own gold answer, while its forget questions stay blocked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import default_config
from proxy.core.config import InputDetectorConfig
from proxy.policy import compile_policy

DEMO = default_config().policies["demo"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return compile_policy("demo", DEMO, base_dir=Path("."),
                          state_dir=tmp_path_factory.mktemp("demo"))


def _blocked(policy, text: str) -> bool:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": text}]
    return any(guard.check_input(messages).is_block for guard in policy.input_guards)


def test_the_demo_answers_every_retain_question_and_blocks_its_forget_questions(demo) -> None:  # type: ignore[no-untyped-def]
    for example in DEMO.retain:
        assert not _blocked(demo, example.question), example.question
        messages = [{"role": "user", "content": example.question}]
        for guard in demo.output_guards:
            assert not guard.check_output(messages, example.answer or "", final=True).is_block
    for target in DEMO.forget:
        for example in target.questions:
            assert _blocked(demo, example.question), example.question


def test_without_the_retain_side_the_demo_blocked_its_own_retain_question(
    tmp_path: Path,
) -> None:
    methods = [m if not isinstance(m, InputDetectorConfig) else m.model_copy(
        update={"retain_margin": None}) for m in DEMO.methods]
    one_sided = compile_policy("demo", DEMO.model_copy(update={"methods": methods}),
                               base_dir=Path("."), state_dir=tmp_path)
    assert _blocked(one_sided, "Who directed the first Harry Potter film?")
