"""LogitNorm (Wei et al., "Mitigating Neural Network Overconfidence with Logit Normalization",
ICML 2022, https://arxiv.org/abs/2205.09310; code: hongxin001/logitnorm_ood).

Cross-entropy of the logits divided by their L2 norm and a temperature tau, as the official code
computes it: ``CE(logits / ((||logits||_2 + 1e-7) * tau), y)``. The logits' norm can then no longer
grow to make the softmax over-confident. Trained from scratch (its published protocol: 200 epochs,
SGD 0.1, wd 5e-4, cosine); any post-hoc scorer applies, the paper uses MSP.

Usage (config; tau 0.04 for CIFAR-10, 0.0085 for CIFAR-100 ResNet-34 per the author, issue #2)::

    logitnorm: {tau: 0.04}
    variants:
      logitnorm: {objective: logitnorm, label: LogitNorm, scorer: msp, stage_overrides: {epochs: 200}}
"""

from __future__ import annotations

from .base import F, Forward, Objective, register


def logitnorm_loss(logits, targets, tau: float):
    norms = logits.norm(p=2, dim=-1, keepdim=True) + 1e-7
    return F.cross_entropy(logits / (norms * tau), targets)


@register("logitnorm", "LogitNorm")
class LogitNorm(Objective):
    """CE on L2-normalised logits at temperature tau."""

    params_schema = {
        "tau": {"description": "Temperature: CE(logits / (||logits|| tau)). LogitNorm's CIFAR-10 value 0.04; "
                               "0.0085 for CIFAR-100 ResNet-34 (author's recommendation).",
                "type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.04},
    }
    stats = {"logit_norm": "mean L2 norm of the raw logits"}

    def loss(self, out: Forward, targets):
        loss = logitnorm_loss(out.logits, targets, self.params["tau"])
        return loss, {"logit_norm": out.logits.detach().norm(dim=-1).sum()}
