"""lffood: local background feature fine-tuning (LFF) for out-of-distribution detection.

The library behind the Snakemake workflow in this repository. Every piece of logic lives here
(data, models, losses, training, extraction, scorers, metrics, reporting); the workflow's rule
scripts only wire Snakemake's inputs and outputs to these functions.
"""

__version__ = "0.1.0"
