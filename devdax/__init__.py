"""devdax: executable, machine-checked reference semantics of Linux device-DAX lifetime.

Layers (dependencies point one way): ``devdax.spec`` is the state machine; ``devdax.model`` and
``devdax.proofs`` check it; ``devdax.impl`` is a contract-annotated emulation verified against it.
"""

__version__ = "0.1.0"
