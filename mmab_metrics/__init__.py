"""mmab-metrics: the management server of a checkpoint/restore service for AWS Batch."""

__version__ = "0.1.0"
