"""``python -m benchmarks.baselines`` or ``torchrun ... -m benchmarks.baselines``: ``cli.py``."""

from benchmarks.baselines.cli import main

raise SystemExit(main())
