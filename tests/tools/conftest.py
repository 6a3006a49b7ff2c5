"""Fixtures of the tools' tests: a tool module loaded from tools/, the registry, measured.json."""
import pytest
from _tools import load_tool


@pytest.fixture(scope="module")
def gen():
    return load_tool("gen_cards")


@pytest.fixture(scope="module")
def registry():
    from zoo.hub.registry import get_registry
    return get_registry()


@pytest.fixture(scope="module")
def measured(gen):
    return gen._read_measured()
