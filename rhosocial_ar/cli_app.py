"""What the commands share: ``--app``, the user's module that configures connections and
imports models, and suggested commands that carry this run's options.

    load_configured_app("myapp.settings")          # or "myapp/settings.py", "myapp:setup"
    with_options("run `rhosocial-ar db upgrade -c shop`", args)
    # 'run `rhosocial-ar db upgrade -c shop --app myapp.settings`'
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import sys
from pathlib import Path

from .errors import CommandError

__all__ = ["APP_VARIABLE", "load_app", "load_configured_app", "module_of_file", "with_options"]

APP_VARIABLE = "RHOSOCIAL_AR_APP"


def load_app(spec: str | None) -> None:
    """Import the user's app (``package.module``, ``package.module:function`` or ``app.py``)."""
    if not spec:
        return
    target, _, function = spec.partition(":")
    if not {"", os.getcwd()} & set(sys.path):
        sys.path.insert(0, os.getcwd())    # like `python -m`: modules beside you import
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise CommandError(f"app file not found: {path} (--app / ${APP_VARIABLE})")
        target, root = module_of_file(path)
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        # imported by its dotted name, so `from mypkg import models` in it finds its package,
        # and a module importing mypkg.settings gets this same module, not a second copy
        module = importlib.import_module(target)
        if Path(getattr(module, "__file__", None) or "").resolve() != path.resolve():
            raise CommandError(f"app file {path} is hidden by the module {target!r} at "
                               f"{module.__file__} (--app / ${APP_VARIABLE}); rename the file")
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (target == exc.name or target.startswith(exc.name + ".")):
                raise    # the app itself imports something missing: its own error
            raise CommandError(
                f"app module {target!r} not found (--app / ${APP_VARIABLE}); give a module "
                f"importable from {os.getcwd()} or a path to a .py file") from None
    if function:
        setup = getattr(module, function, None)
        if not callable(setup):
            raise CommandError(f"app {spec!r}: {target} has no function {function!r}")
        setup()


def module_of_file(path: Path) -> tuple[str, Path]:
    """The dotted name of a .py file and the directory to import it from, as pytest does:
    up through the directories that hold an ``__init__.py`` (``mypkg/settings.py`` ->
    ``mypkg.settings``, imported from the directory above ``mypkg``)."""
    path = path.resolve()
    parts = [] if path.stem == "__init__" else [path.stem]
    root = path.parent
    while (root / "__init__.py").is_file() and root.parent != root:
        parts.insert(0, root.name)
        root = root.parent
    return ".".join(parts), root


def load_configured_app(spec: str | None) -> None:
    """Import the app (``--app`` or the environment); it must configure some connection."""
    from .connections import ConnectionManager

    load_app(spec or os.environ.get(APP_VARIABLE))
    if not ConnectionManager.names():
        raise CommandError(f"no connections are configured: pass --app MODULE (or set "
                           f"${APP_VARIABLE}) naming the module that configures them")


# a suggested command in a message, e.g. `rhosocial-ar db upgrade -c shop`
_SUGGESTED = re.compile(r"`(rhosocial-ar db [^`]*)`")


def with_options(text: str, args: argparse.Namespace) -> str:
    """``text`` with each suggested ``rhosocial-ar db`` command given this run's --app and
    --directory, so that it can be copied and run as it is."""
    extra = ""
    if getattr(args, "app", None):
        extra += f" --app {shlex.quote(args.app)}"
    directory = getattr(args, "directory", None)
    if directory is not None and Path(directory) != Path("migrations"):
        extra += f" --directory {shlex.quote(str(directory))}"
    return _SUGGESTED.sub(lambda m: f"`{m.group(1)}{extra}`", text) if extra else text
