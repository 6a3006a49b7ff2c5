"""Read a YAML file that may come from anyone: bounded, strict, and naming the file in every message.

``yaml.safe_load`` builds no objects, but it still reads a FIFO forever, keeps the last of two
duplicate keys, accepts any hashable key, names a text "<unicode string>", and expands aliases
without limit: 1 KB of nested aliases (the "billion laughs") becomes gigabytes once walked. Here
only a regular file of at most MAX_FILE_BYTES is read, as UTF-8; mapping keys must be unique
strings; nesting is limited to MAX_DEPTH; and the alias graph is measured (in linear time) before
any value is built.
"""
import os
import stat

import yaml

from zoo.errors import RegistryError, ZooError
from zoo.hub._schema import show

# Limits on a file, far above what a catalogue needs (the built-in one: 64 KB, 2,400
# YAML nodes, 6 levels deep). They keep a hostile or broken file from hanging a process or
# exhausting its memory: a FIFO blocks a read forever, and 1 KB of nested YAML aliases
# ("billion laughs") expands to gigabytes.
MAX_FILE_BYTES = 4 * 2 ** 20
MAX_NODES = 200_000   # YAML nodes once every alias is expanded
MAX_DEPTH = 24        # nesting of mappings and lists


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate and non-string mapping keys and deep nesting."""

    def __init__(self, text, name):
        super().__init__(text)
        self.name = name  # marks (and so every message) name the file, not "<unicode string>"
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise RegistryError(f"{self.name}: line {mark.line + 1}: mappings and lists are nested more "
                                    f"than {MAX_DEPTH} levels deep; a registry file is a few levels deep - "
                                    "fix the file.")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            what = show(key) if isinstance(key_node, yaml.ScalarNode) else \
                "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
            raise RegistryError(
                f"{node.start_mark.name}: line {line}: the key {what} is not a string; keys (names, fields, "
                "keyword arguments) are strings - quote it, e.g. '123':")
        if key in seen:
            raise RegistryError(
                f"{node.start_mark.name}: duplicate key {key!r} at line {line}"
                f" (first at line {seen[key] + 1}); each key may appear once - remove one of them.")
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


def _construct_int(loader, node):
    digits = sum(c.isdigit() for c in str(node.value))
    if digits > 30:  # int() of a 5,000-digit literal fails (and would be no size or count anyway)
        raise RegistryError(f"{node.start_mark.name}: line {node.start_mark.line + 1}: an integer of {digits} "
                            "digits; no value in a registry is that large - fix the number.")
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_expansion(node, name):
    """Refuse alias cycles and documents whose aliases expand beyond MAX_NODES or MAX_DEPTH
    (computed on the node graph in linear time, without expanding anything)."""
    size, depth, active = {}, {}, set()
    stack = [(node, False)]
    while stack:
        current, done = stack.pop()
        key = id(current)
        if done:
            active.discard(key)
            children = _children(current)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES or depth[key] > MAX_DEPTH:
                what = (f"expands to more than {MAX_NODES:,} values" if size[key] > MAX_NODES
                        else f"nests more than {MAX_DEPTH} levels deep")
                raise RegistryError(
                    f"{name}: the document {what} once its YAML aliases (*name) are expanded (the value at "
                    f"line {current.start_mark.line + 1}); a registry file never needs that - remove the "
                    "repeated aliases.")
            continue
        if key in size:
            continue
        if key in active:
            raise RegistryError(f"{name}: line {current.start_mark.line + 1}: a YAML alias refers to a value "
                                "that contains it (a recursive structure); remove the alias.")
        active.add(key)
        stack.append((current, True))
        stack.extend((c, False) for c in _children(current) if id(c) not in size)


def _children(node):
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _read_bytes(path, what, hint):
    """The bytes of a regular file of at most MAX_FILE_BYTES (a FIFO, device or folder is refused
    before it is read, so it cannot block)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise RegistryError(f"{what} {str(path)!r} cannot be read ({e.strerror}); {hint}.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO (named pipe)" if \
                stat.S_ISFIFO(info.st_mode) else "not a regular file (a device or socket)"
            raise RegistryError(f"{what} {str(path)!r} is {kind}; a YAML file must be a regular file - {hint}.")
        if info.st_size > MAX_FILE_BYTES:
            raise RegistryError(f"{what} {str(path)!r} is {info.st_size:,} bytes, more than the "
                                f"{MAX_FILE_BYTES:,} a YAML file here may have; {hint}.")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise RegistryError(f"{what} {str(path)!r} cannot be read ({e.strerror}); {hint}.") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise RegistryError(f"{what} {str(path)!r} grew beyond {MAX_FILE_BYTES:,} bytes while being read.")
    return data


def read_yaml(path, what="YAML file", hint="check the path"):
    """The data of the YAML file ``path`` (``what`` it is and a ``hint`` go into the messages)."""
    name = str(path)
    raw = _read_bytes(path, what, hint)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise RegistryError(f"{what} {name!r} is not UTF-8 text: byte {raw[e.start]:#04x} at line {line} "
                            f"(offset {e.start}) cannot be decoded. Save the file as UTF-8.") from None
    loader = None
    try:
        loader = _UniqueKeyLoader(text, name)  # the reader already refuses NUL and other control characters
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, name)
        data = loader.construct_document(node) if node is not None else None
    except ZooError:
        raise
    except yaml.YAMLError as e:
        detail = str(e).replace('"<unicode string>"', repr(name)).replace("<unicode string>", name)
        raise RegistryError(f"{what} {name!r} is not valid YAML: {detail}") from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:  # e.g. a 5000-digit int
        raise RegistryError(f"{what} {name!r} is not valid YAML: {type(e).__name__}: "
                            f"{' '.join(str(e).split())[:300]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data
