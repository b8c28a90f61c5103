"""Scheduled sweeps over the store: expire due approvals, recover interrupted actions.

The core knows nothing of Prefect: whether a flow run is alive is asked through a ``RunProbe`` the caller
passes in (``tasks/sweeps.py`` builds one over the Prefect API).
"""

from saferails.sweeps.agents import AutoResumeSweep
from saferails.sweeps.claims import SweepClaim, claim_due, purge_lapsed, release
from saferails.sweeps.expire import ExpireSweep
from saferails.sweeps.recover import RecoverSweep, RunProbe
from saferails.sweeps.report import SweepItem, SweepProgress, SweepReport

__all__ = [
    "AutoResumeSweep",
    "ExpireSweep",
    "RecoverSweep",
    "RunProbe",
    "SweepClaim",
    "SweepItem",
    "SweepProgress",
    "SweepReport",
    "claim_due",
    "purge_lapsed",
    "release",
]
