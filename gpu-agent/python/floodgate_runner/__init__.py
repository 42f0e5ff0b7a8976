"""
Floodgate's PyTorch runner: serves model versions to a GPU agent over the runner protocol
(docs/runner-protocol.md). A model is a small class (`Model`); the runner owns batching,
progress, previews, cancel, errors and the decode stage.
"""

from .model import InvalidInput, JobFailure, Manifest, Model, Sample, load_model

__version__ = "0.1.0"
__all__ = ["InvalidInput", "JobFailure", "Manifest", "Model", "Sample", "load_model", "__version__"]
