"""Evaluate your own model with lffood: every OOD scorer in one call, and one detector in your own loop.

Runs offline on the CPU in about half a minute: it generates a small copy of the project's embedded
benchmark in memory (digits on scene backgrounds; OOD: procedural textures and typeset letters),
trains a small CNN of its own for a few epochs with a plain PyTorch loop, then

1. ``evaluate``: fits every applicable scorer on the ID training images and prints the OOD metrics
   of the ID test images against both OOD sets (the workflow's metrics, as fractions);
2. ``detector``: fits one scorer once and scores batches from a DataLoader, as a user's own
   evaluation or deployment loop would.

The model is small and briefly trained (about 55% ID accuracy on these 16 x 16 images): the numbers
show the API, not the methods (the workflow's embedded run trains the project's model to 96%).

    python examples/evaluate_own_model.py
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lffood.data.embedded import generate
from lffood.evaluate import detector, evaluate, wrap


def as_tensors(split, mean, std):
    """uint8 (N, H, W, 3) images -> normalised float (N, 3, H, W), and the labels."""
    x = torch.from_numpy(np.asarray(split.images)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    return x, torch.from_numpy(split.labels)


class SmallNet(nn.Module):
    """Your own model: three conv stages (``features``), global average pooling, a linear ``fc``."""

    def __init__(self, num_classes: int):
        super().__init__()

        def stage(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.features = nn.Sequential(stage(3, 16, 1), stage(16, 32, 2), stage(32, 64, 2))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def main() -> None:
    torch.manual_seed(0)
    splits = generate({"train_per_class": 100, "test_per_class": 50, "ood_size": 200}, seed=0)
    mean, std = splits["train"].meta["mean"], splits["train"].meta["std"]
    train, test = as_tensors(splits["train"], mean, std), as_tensors(splits["test"], mean, std)
    textures, _ = as_tensors(splits["textures"], mean, std)
    far, _ = as_tensors(splits["far"], mean, std)

    # --- your model and your training loop
    net = SmallNet(num_classes=len(splits["train"].meta["classes"]))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*train), batch_size=64, shuffle=True)
    for _ in range(8):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()

    # --- 1. every scorer in one call: name the last feature map, the head and (for FeatureNorm) the blocks
    model = wrap(net, feature_layer="features", head="fc", blocks=["features.0", "features.1", "features.2"])
    table = evaluate(model, id_train=train, id_test=test, ood={"textures": textures, "far": far},
                     std=std, params={"knn": {"k": 10}, "csd": {"k": 10}})
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"skipped: {sorted(table.attrs['skipped'])}")

    # --- 2. one detector in your own loop: fit once, then score batches (higher = more in-distribution)
    det = detector("knn", model=model, k=10).fit(train)
    threshold = np.quantile(det.score(test[0]), 0.05)  # keeps 95% of the ID test images
    stream = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(far), batch_size=100)
    flagged = sum(int((det.score(batch[0]) < threshold).sum()) for batch in stream)
    print(f"knn detector: {flagged} of {len(far)} 'far' images flagged as OOD at 95% ID acceptance")


if __name__ == "__main__":
    main()
