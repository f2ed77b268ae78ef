"""The one YAML loader for user files (configs, overrides, price files): ``yaml.safe_load`` with limits.

``yaml.safe_load`` refuses Python tags but not the other ways a small file can hurt: an alias bomb (530
bytes that expand to 10^8 nodes once anything walks them), nesting deep enough to overflow the recursion
limit, a 5,000-digit integer, a lone surrogate from a ``\\ud800`` escape, or a key written twice (the last
copy silently wins: a config with two ``model:`` sections trains the second). ``load_yaml`` refuses each
with a ``TunesmithError`` that names the file, the line and the fix, after bounded work:

- size: at most ``MAX_YAML_BYTES`` (1 MiB) of text;
- depth: at most ``MAX_DEPTH`` (64) nested collections, checked while composing (before recursion could
  overflow);
- aliases: allowed (``<<: *defaults`` is a real idiom), but the document *as expanded* may hold at most
  ``MAX_NODES`` (100,000) nodes, counted on the composed graph in linear time (each shared node counted
  once per use, without expanding it); a recursive alias is refused;
- duplicate keys in any mapping (merge keys ``<<`` may still be overridden, as YAML intends);
- integers past Python's 4,300-digit conversion limit and strings holding lone surrogates.

Usage::

    data = load_yaml(text, source="tunesmith.yaml")
    data = load_yaml_file(path)             # bounded read (regular files only), then load_yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from tunesmith.errors import TunesmithError
from tunesmith.textio import InvalidText, clean_strings, read_bounded

MAX_YAML_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLLimitError(yaml.YAMLError):
    """A YAML document over one of this module's limits, or with a duplicate key."""

    def __init__(self, message: str, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line
        self.hint = hint or "Write the value out plainly, without deep nesting or alias expansion."

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


class YAMLSyntaxError(TunesmithError):
    """Text that is not YAML at all (as opposed to YAML over a limit); dotted overrides keep it as a string."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that tracks nesting depth while composing and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YAMLLimitError(
                    f"nested more than {MAX_DEPTH} levels deep; a config needs a few", mark.line + 1
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: SafeConstructor reports it
                    continue
                if first != key_node.start_mark.line + 1:
                    raise YAMLLimitError(
                        f"key {_short(key)} appears twice in one mapping (first on line {first}); "
                        "the second copy would silently replace the first",
                        key_node.start_mark.line + 1,
                        "Keep one copy of the key (merge the two sections into one).",
                    )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str = "YAML") -> Any:
    """Parse one YAML document from ``text`` within the limits of the module docstring.

    Raises:
        TunesmithError: naming ``source`` (and the line where known) for invalid YAML or any limit.
    """
    if len(text) > MAX_YAML_BYTES:
        raise TunesmithError(
            f"{source} is {len(text):,} characters long, over the {MAX_YAML_BYTES:,} limit for YAML.",
            "A config needs a few kilobytes; move data into data files.",
        )
    loader = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node)
        data = loader.construct_document(node)
        return clean_strings(data)
    except YAMLLimitError as exc:
        raise TunesmithError(f"{source}: {exc}.", exc.hint) from None
    except yaml.YAMLError as exc:
        raise YAMLSyntaxError(f"{source} is not valid YAML: {_bounded(str(exc))}", _SYNTAX_HINT) from None
    except InvalidText as exc:
        raise TunesmithError(f"{source}: {exc.message.lstrip('.')}.", "Remove the \\u escape.") from None
    except ValueError as exc:  # int() of a > 4,300-digit scalar
        what = "an integer of more than 4,300 digits" if "digits" in str(exc) else _bounded(str(exc))
        raise TunesmithError(f"{source}: holds {what}.", "Use a number of sensible size.") from None
    except RecursionError:
        raise TunesmithError(f"{source}: nested too deeply.", YAMLLimitError("").hint) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: Path | str, what: str = "YAML file") -> Any:
    """``load_yaml`` of a file read with ``textio.read_bounded`` (regular files only, ``MAX_YAML_BYTES``).

    Raises:
        TunesmithError: for a file that is missing, not a regular file, too large, not UTF-8 or bad YAML.
    """
    raw = read_bounded(path, limit=MAX_YAML_BYTES, what=what)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TunesmithError(f"{path} line {line} is not valid UTF-8.", "Save the file as UTF-8.") from None
    return load_yaml(text, str(path))


_SYNTAX_HINT = "Fix the syntax at the position shown."


def _check_expanded_size(root: Node) -> None:
    """Refuse a graph whose expansion (aliases followed) exceeds ``MAX_NODES``, or that loops."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_NODES:
                raise YAMLLimitError(
                    f"expands to more than {MAX_NODES:,} values through aliases (an alias bomb?)",
                    node.start_mark.line + 1,
                )
            continue
        if key in sizes:
            continue
        if key in active:
            raise YAMLLimitError("an alias refers to the collection that holds it", node.start_mark.line + 1)
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _short(value: Any, limit: int = 60) -> str:
    return _bounded(repr(value), limit)


def _bounded(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"
