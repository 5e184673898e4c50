"""What the training loop (:func:`lffood.training.train`) lets a caller add to it without naming a method.

A :class:`Hook` sees every step and every epoch's end of a training run:

* ``on_step(model, out, targets)``: after the objective's loss, before the optimiser's step (so the
  head is the one the loss saw); returns device tensors (any shape) that the loop sums over the
  epoch beside its own statistics. No host synchronisation here: the loop reads all the sums once
  per epoch;
* ``on_epoch(row, sums)``: at the epoch's end with its history row and those sums on the host
  (a float per 0-d sum, a list of floats per larger one); returns text for the epoch's log line;
* ``state_dict`` / ``load_state_dict``: what the hook keeps across epochs, saved in the resume state
  (:class:`lffood.checkpoint.ResumeFile`) so a resumed run ends as an uninterrupted one.

A hook must not change the training: no gradients, no draws from a random generator. torch is not
imported here (the report environment imports hook modules for their readers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class Hook:
    """The training loop's extension point; every method is optional (the defaults do nothing)."""

    def on_step(self, model, out, targets) -> Mapping[str, Any]:
        """Per-step sums (device tensors, keys unique to the hook) pooled over the epoch by the loop."""
        return {}

    def on_epoch(self, row: Mapping[str, Any], sums: Mapping[str, Any]) -> str:
        """The epoch is over: ``row`` is its history row, ``sums`` the pooled sums on the host. Returns log text."""
        return ""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        pass


class OnEpoch(Hook):
    """Calls ``fn(row)`` with every epoch's history row (progress reports; tests stop a run with it)."""

    def __init__(self, fn: Callable[[dict], Any]):
        self.fn = fn

    def on_epoch(self, row, sums) -> str:
        self.fn(row)
        return ""
