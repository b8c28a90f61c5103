"""Runbooks (seed 002): definitions loaded from YAML, validated as a DAG, executed step by step with the same
approval gate, audit trail and condition language as actions."""

from saferails.runbooks.definition import RetryPolicy, RunbookDefinition, RunbookInvalid, StepDefinition
from saferails.runbooks.schema import runbook_json_schema
from saferails.runbooks.service import RunbookService
from saferails.runbooks.validation import load_runbook, load_runbook_text
from saferails.runbooks.views import (
    Evidence,
    ExecutionContext,
    ExecutionView,
    LegalBasis,
    LogLine,
    StepView,
    TemplateView,
)

__all__ = [
    "Evidence",
    "ExecutionContext",
    "ExecutionView",
    "LegalBasis",
    "LogLine",
    "RetryPolicy",
    "RunbookDefinition",
    "RunbookInvalid",
    "RunbookService",
    "StepDefinition",
    "StepView",
    "TemplateView",
    "load_runbook",
    "load_runbook_text",
    "runbook_json_schema",
]
