"""mdistiller: knowledge distillation benchmark (mdistiller-compatible) with Wasserstein/OT distillers."""
__version__ = "0.2.0"
