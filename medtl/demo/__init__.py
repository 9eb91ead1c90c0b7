"""``medtl demo``: the whole service on public demo scans, in one resumable command.

* :mod:`medtl.demo.runner`: the stages, their state (``MEDTL_HOME/demo/<size>/state.json``),
  the summary table and the demo accounts;
* :mod:`medtl.demo.plans`: the demo sizes and the configs each stage runs.

Example::

    from medtl.demo import run_demo

    summary = run_demo("tiny")
"""

from __future__ import annotations

from medtl.demo.plans import PLANS, DemoPlan, experiment_configs, pretrain_configs
from medtl.demo.runner import (
    STAGES,
    DemoState,
    build_summary,
    ensure_demo_accounts,
    run_demo,
    transfer_arm,
)

__all__ = [
    "PLANS",
    "STAGES",
    "DemoPlan",
    "DemoState",
    "build_summary",
    "ensure_demo_accounts",
    "experiment_configs",
    "pretrain_configs",
    "run_demo",
    "transfer_arm",
]
