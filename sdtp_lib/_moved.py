"""Import paths of modules that moved into subpackages keep working: `import sdtp_lib.policies` gives a module that
reads each name from where it lives now (and warns once, naming the new path); a name that is gone raises an error
that names the new modules. Only the names in MOVED are handled; nothing else is touched."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# old module (under sdtp_lib) -> the modules its names live in now, searched in order
MOVED = {
    "policies": ("scorers",),
    "predictor": ("scorers.predictor", "scorers.registry"),
    "saliency": ("training.saliency", "scorers.oracle"),
    "data": ("training.data",),
    "masked": ("training.masked",),
    "train": ("training.train",),
    "validate": ("training.validate",),
    "training_run": ("training.run",),
    "kernels": ("speed.kernels", "ops"),
    "memory": ("speed.memory",),
    "decode": ("speed.decode",),
    "profiling": ("speed.profiling",),
    "notebook_pipeline": ("workspace.pipeline",),
    "viz": ("workspace.explorer",),
    "plots": ("workspace.plots",),
}
PACKAGE = __name__.rpartition(".")[0]  # "sdtp_lib"


def new_paths(old: str) -> list[str]:
    """["sdtp_lib.scorers", ...] for "sdtp_lib.policies" (or "policies")."""
    short = old.removeprefix(PACKAGE + ".")
    return [f"{PACKAGE}.{m}" for m in MOVED[short]]


class _MovedModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        targets = new_paths(self.__name__)
        for path in targets:
            mod = importlib.import_module(path)
            if hasattr(mod, name):
                if name not in self._warned:
                    self._warned.add(name)
                    warnings.warn(f"{self.__name__}.{name} moved: import it from {path}", DeprecationWarning,
                                  stacklevel=2)
                return getattr(mod, name)
        # ImportError, not AttributeError: `from old import name` then shows this message instead of Python's own
        raise ImportError(f"{self.__name__} moved to {' / '.join(targets)}, and none of them has {name!r}")

    def __dir__(self):
        return sorted({n for p in new_paths(self.__name__) for n in dir(importlib.import_module(p))})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        head, _, short = fullname.rpartition(".")
        if head == PACKAGE and short in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        mod = _MovedModule(spec.name, f"moved to {' / '.join(new_paths(spec.name))}")
        mod._warned = set()
        return mod

    def exec_module(self, module):
        pass


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
