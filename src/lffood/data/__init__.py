"""Datasets: the on-disk split format, batched tensor augmentation, and dataset generators/downloaders."""
