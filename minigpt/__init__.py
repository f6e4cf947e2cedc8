"""minigpt-bench: does this transformer change help, and what does it cost?

Importing this package is cheap (no torch): the heavy modules load when used.
"""

from minigpt.config import Config
from minigpt.variants import variant

__all__ = ["Config", "variant"]
__version__ = "0.1.0"
