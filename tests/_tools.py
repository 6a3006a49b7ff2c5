"""The maintainer tools of tools/ as modules, for their tests."""
import importlib.util
import sys

from _proc import ROOT


def load_tool(name):
    """tools/NAME.py as a module (tools/ is not a package; its modules import each other by name)."""
    if str(ROOT / "tools") not in sys.path:
        sys.path.insert(0, str(ROOT / "tools"))
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
