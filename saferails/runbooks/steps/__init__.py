"""One module per step type. Each exposes ``start(run) -> StepResult`` and, for steps that wait,
``poll(run, row) -> StepResult | None`` (None: still waiting). Steps never touch the runbook tables: the engine
persists what they return."""
