"""Training-framework callbacks. Import the one for your framework; each needs only its own:

- ``factortopy.callbacks.lightning.FactortopyCallback`` (PyTorch Lightning),
- ``factortopy.callbacks.huggingface.FactortopyTrainerCallback`` (Hugging Face transformers).

``MonitorDriver`` is the framework-independent core, for hand-written training loops.
"""

from ._driver import MonitorDriver

__all__ = ["MonitorDriver"]
