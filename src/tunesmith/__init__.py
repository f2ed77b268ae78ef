"""tunesmith: a self-hosted fine-tuning workbench."""

__version__ = "0.1.0"
