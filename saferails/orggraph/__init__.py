"""Org graph: interactions and wellbeing data, the sample generator, graph metrics and shared snapshots."""

from saferails.orggraph.errors import OrgDataInvalid
from saferails.orggraph.loading import insert_interactions, insert_wellbeing, validate_interactions, validate_wellbeing
from saferails.orggraph.metrics import MetricParams, Window, compute_metrics, read_window
from saferails.orggraph.sample import SampleOrg, generate_org, insert_sample
from saferails.orggraph.snapshots import Snapshot, SnapshotCache, default_cache
from saferails.orggraph.tables import Interaction, MetricSnapshotRow, OutcomeCheck, Wellbeing

__all__ = [
    "Interaction",
    "MetricParams",
    "MetricSnapshotRow",
    "OrgDataInvalid",
    "OutcomeCheck",
    "SampleOrg",
    "Snapshot",
    "SnapshotCache",
    "Wellbeing",
    "Window",
    "compute_metrics",
    "default_cache",
    "generate_org",
    "insert_interactions",
    "insert_sample",
    "insert_wellbeing",
    "read_window",
    "validate_interactions",
    "validate_wellbeing",
]
