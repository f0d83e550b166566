"""Mutation testing of the safety-critical modules: does the suite notice a deliberate bug?

``python -m benchmarks.mutation`` (``make mutation``) first applies a fixed list of known bugs
(:mod:`benchmarks.mutation.regressions`), each of which the suite once missed, and checks that
their tests now fail; then it runs mutmut over the modules named in ``[tool.mutmut]`` of
``pyproject.toml`` and writes ``benchmarks/results/mutation.{md,json}``
(:mod:`benchmarks.mutation.report`). Survivors that cannot be killed because they do not change
behaviour are reviewed once and named, with the reason, in ``reviewed.yaml``.
"""
