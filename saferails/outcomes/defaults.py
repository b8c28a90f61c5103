"""The outcome judges' defaults, apart from the judges themselves: the policy's ``outcomes`` section is validated
(``saferails.outcomes.rules``) whenever a policy loads, in every flow-run process, and that must not import numpy
with the judges."""

from __future__ import annotations

from typing import Literal

DEFAULT_JUDGE: Literal["did"] = "did"
DEFAULT_CONFIDENCE = 0.975
DEFAULT_POST_WEEKS = 3  # the did judge's goals are met from three weeks after the change (README "Which judge")
