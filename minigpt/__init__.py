"""minigpt-bench: does this transformer change help, and what does it cost?

Importing this package is cheap (no torch): the heavy modules load when used.
"""

from importlib.metadata import PackageNotFoundError, version

from minigpt.config import Config
from minigpt.variants import variant

__all__ = ["Config", "variant"]
try:
    __version__ = version("minigpt-bench")  # pyproject.toml's, the one place it is written
except PackageNotFoundError:  # a source tree used without installing it
    __version__ = "0+unknown"
