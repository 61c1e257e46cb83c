"""bitsandbytes is imported with the Hugging Face Hub offline, so that importing the package downloads nothing.

`import peft` imports bitsandbytes whenever it is installed, and bitsandbytes' CPU backend, on a processor with
AVX512-BF16, asks the Hub for a compiled kernel (`kernels-community/quantization-bitsandbytes`) and loads it, during
that import. No command of this package downloads or runs code the user did not ask for, so the first import of
bitsandbytes runs with the Hub offline: a kernel already in the local Hub cache is still used, nothing is fetched,
and the two warnings that say so stay quiet. `reaemb_trl/__init__.py` installs the guard, before any module of the
package can import peft; it imports nothing heavy until bitsandbytes itself is imported.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import sys

GUARDED = "bitsandbytes"
# they warn, at every import, that the kernel was not fetched: the point of the guard
QUIET_LOGGERS = ("bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub")


@contextlib.contextmanager
def hub_offline():
    """The Hub offline (huggingface_hub's flag, read at each call) and the loggers above at ERROR, for the block."""
    from huggingface_hub import constants

    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    previous = constants.HF_HUB_OFFLINE, [logger.level for logger in loggers]
    constants.HF_HUB_OFFLINE = True
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous[0]
        for logger, level in zip(loggers, previous[1]):
            logger.setLevel(level)


class _OfflineLoader(importlib.abc.Loader):
    """Runs the guarded package's import inside `hub_offline`; anything else goes to the real loader."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with hub_offline():
            self._loader.exec_module(module)

    def __getattr__(self, name):  # resource readers and the like
        return getattr(self._loader, name)


class _OfflineFinder(importlib.abc.MetaPathFinder):
    """Hands out the guarded package's spec with `_OfflineLoader`. It stays installed: a probe such as
    `importlib.util.find_spec` (how transformers and peft look for bitsandbytes) asks it too, without importing."""

    def find_spec(self, name, path=None, target=None):
        if name != GUARDED or name in sys.modules:
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    if spec.loader is not None:
                        spec.loader = _OfflineLoader(spec.loader)
                    return spec
        return None


def install() -> None:
    """Guard the import of bitsandbytes (once per process; nothing to guard where it is already imported)."""
    if GUARDED not in sys.modules and not any(isinstance(finder, _OfflineFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OfflineFinder())
