"""ODIN (Liang et al., 2018): temperature scaling plus input pre-processing. Needs the network.

Reference (facebookresearch/odin): the loss is the cross-entropy of ``logits / T`` with the predicted
class; the input moves against the sign of its gradient (``torch.ge(grad, 0)``, so a zero gradient
counts as positive), the step scaled per channel by 1 / std because the network sees normalised
inputs; the score is the maximum softmax of the perturbed input's ``logits / T``.
torch is imported inside the functions: ``lffood.scorers`` stays importable without it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..checks import Param
from .base import Scorer, register
from .logit_based import TEMPERATURE

log = logging.getLogger("lffood.scorers.odin")


def odin_perturb(model, x, temperature: float, epsilon: float, std: Sequence[float]):
    """``x - epsilon * sign(grad_x CE(f(x) / T, argmax f(x))) / std`` (x normalised, (B, C, H, W))."""
    import torch

    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float() / temperature, logits.argmax(1), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    direction = torch.where(grad >= 0, 1.0, -1.0).to(x.dtype)
    scale = torch.as_tensor(list(std), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - epsilon * direction / scale).detach()


def odin_score_batch(model, x, temperature: float, epsilon: float, std: Sequence[float]):
    import torch

    if epsilon != 0:
        x = odin_perturb(model, x, temperature, epsilon, std)
    with torch.no_grad():
        # float64: at T = 1000 the float32 softmax rounds near-equal confidences to the same value (ties)
        return torch.softmax(model(x).double() / temperature, dim=1).max(1).values


@register("odin", "ODIN", order=20, in_paper=True)
class ODIN(Scorer):
    """ODIN: max softmax at temperature T of the input perturbed by epsilon towards higher confidence."""

    defaults = {"temperature": 1000.0, "epsilon": 0.0014}
    #: epsilon: the step in units of the pixel range (divided by the channel's std as the network sees
    #: normalised inputs); ODIN's grid is 0..0.004, and a step of 1 already moves a pixel across its range
    params_spec = {"temperature": TEMPERATURE,
                   "epsilon": Param("float", 0, 1, why="a step of 1 moves every pixel across its whole range; "
                                                       "ODIN's grid is 0..0.004")}
    score_on = "network"

    def score_network(self, model, data, *, batch_size: int, device) -> np.ndarray:
        import torch

        from ..runtime import Progress

        model.eval().to(device)
        out, done, progress = [], 0, Progress(len(data))  # a line every PROGRESS_EVERY_S in a long split
        for idx in data.index_batches(batch_size):
            x, _ = data.batch(idx)
            out.append(odin_score_batch(model, x, self.params["temperature"], self.params["epsilon"],
                                        data.std).cpu())
            done += len(idx)
            if progress.due(done):
                log.info("ODIN: %s", progress.text(done, "images"))
        return torch.cat(out).double().numpy()
