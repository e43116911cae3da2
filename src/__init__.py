"""leadscore: a reproducible, leak-free B2B lead propensity pipeline."""

__version__ = "0.1.0"
