"""The Ollama ``Modelfile`` written beside an exported GGUF: FROM, TEMPLATE, PARAMETER stop, SYSTEM.

Ollama renders prompts with Go's ``text/template``; models carry Jinja templates. A Jinja template cannot be
translated in general, so the Go template is *derived from what the model's own template renders* and then
*proven equal to it*:

    probe conversations (sentinel texts) -> tokenizer.apply_chat_template -> per-role prefix/suffix pieces
    -> a Go template of those pieces -> rendered here (Ollama's data: .System, .Messages after collate)
    -> compared with the model's rendering of every probe; any difference refuses the Modelfile

That covers the templates that wrap each turn in fixed text (ChatML, Llama 3, Phi-3, Zephyr, ...), with or
without a default system prompt; templates that move the system prompt into the first user turn (Gemma,
Mistral) are refused with the reason. Tool calls are not templated (Ollama's ``.Tools``/``.ToolCalls``).

``render_go_template`` evaluates the subset of Go's text/template that such a template uses (text, ``{{ .F }}``,
``if``/``else if``/``else``/``end``, ``range .Messages``, ``eq``/``ne``/``not``/``and``/``or``, ``{{-``/``-}}``
trimming), with Ollama's own data shape (``template/template.go::Execute``: ``System`` is every system
message joined by a blank line; ``Messages`` has consecutive same-role turns merged). Anything outside the
subset is an error, never a silent mis-render.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

_SYS, _U1, _A1, _U2 = "SYSPROBE7Q", "USERPROBE1Q", "ANSWERPROBE1Q", "USERPROBE2Q"


@dataclass(frozen=True)
class Modelfile:
    """A parsed (or to-be-written) Modelfile."""

    model: str  # FROM: the GGUF file name, relative to the Modelfile
    template: str
    stop: tuple[str, ...]
    system: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()  # other PARAMETER lines, in order

    def text(self) -> str:
        """The Modelfile's text (Ollama's syntax: ``docs/modelfile.md``)."""
        for name, value in (("TEMPLATE", self.template), ("SYSTEM", self.system or "")):
            if '"""' in value:
                raise TunesmithError(f'The {name} text holds """, which a Modelfile cannot quote.')
        lines = [
            "# Written by `tunesmith export --format gguf`; the template was checked against the model's own.",
            f"FROM ./{self.model}",
            f'TEMPLATE """{self.template}"""',
        ]
        lines += [f"PARAMETER stop {json.dumps(s)}" for s in self.stop]
        lines += [f"PARAMETER {k} {v}" for k, v in self.parameters]
        if self.system:
            lines.append(f'SYSTEM """{self.system}"""')
        return "\n".join(lines) + "\n"


def build_modelfile(tokenizer: Any, gguf_name: str, system: str | None) -> Modelfile:
    """The Modelfile for ``gguf_name``: a Go template proven to render like ``tokenizer``'s chat template,
    the template's end-of-turn tokens as stops, greedy decoding (what tunesmith evaluated) and ``system``.

    Raises:
        TunesmithError: when the chat template cannot be written as an Ollama template (with the reason).
    """
    template, answer_suffix = _derive(tokenizer)
    return Modelfile(
        model=gguf_name,
        template=template,
        stop=stop_strings(tokenizer, answer_suffix),
        system=system or None,
        parameters=(("temperature", "0"),),
    )


def derive_go_template(tokenizer: Any) -> str:
    """A Go template equal to the tokenizer's chat template on system/user/assistant conversations.

    Raises:
        TunesmithError: when the pieces cannot be found or the derived template renders differently.
    """
    return _derive(tokenizer)[0]


def _derive(tokenizer: Any) -> tuple[str, str]:
    """``(Go template, the fixed text the template writes after an answer)``."""

    def hf(messages: list[dict[str, str]], gen: bool) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)

    sys_, u1, a1, u2 = (
        {"role": "system", "content": _SYS},
        {"role": "user", "content": _U1},
        {"role": "assistant", "content": _A1},
        {"role": "user", "content": _U2},
    )
    try:
        b, c, d, e = hf([u1], False), hf([u1], True), hf([u1, a1], False), hf([sys_, u1], False)
        full = hf([sys_, u1, a1, u2], True)
    except Exception as exc:  # noqa: BLE001 - a template that refuses a probe cannot be checked
        raise _unsupported(f"its chat template failed on a probe conversation ({exc})") from exc
    if not c.startswith(b) or not d.startswith(b) or _U1 not in b or _SYS not in e:
        raise _unsupported("its turns are not rendered one after another")
    default_and_upre, u_suf = b.split(_U1, 1)
    gen = c[len(b) :]
    a_pre, a_suf = d[len(b) :].split(_A1, 1)
    sys_pre, rest = e.split(_SYS, 1)
    sys_suf_and_upre = rest.split(_U1, 1)[0]
    between = full.split(_A1, 1)[1].split(_U2, 1)[0] if _A1 in full and _U2 in full else ""
    if not between.startswith(a_suf):
        raise _unsupported("the text between an answer and the next question is not fixed")
    u_pre = between[len(a_suf) :]
    if not default_and_upre.endswith(u_pre) or not sys_suf_and_upre.endswith(u_pre):
        raise _unsupported("a user turn does not start with the same text every time")
    default = default_and_upre[: len(default_and_upre) - len(u_pre)]
    sys_suf = sys_suf_and_upre[: len(sys_suf_and_upre) - len(u_pre)]
    pieces = [sys_pre, sys_suf, default, u_pre, u_suf, a_pre, a_suf, gen]
    if any("{{" in p or "}}" in p for p in pieces):
        raise _unsupported("its fixed text holds '{{' or '}}'")
    default_branch = f"{{{{ else }}}}{default}" if default else ""
    template = (
        f"{{{{ if .System }}}}{sys_pre}{{{{ .System }}}}{sys_suf}{default_branch}{{{{ end }}}}"
        f'{{{{ range .Messages }}}}{{{{ if eq .Role "user" }}}}{u_pre}{{{{ .Content }}}}{u_suf}'
        f'{{{{ else if eq .Role "assistant" }}}}{a_pre}{{{{ .Content }}}}{a_suf}{{{{ end }}}}{{{{ end }}}}{gen}'
    )
    for conv in _checks():
        ours, theirs = render_ollama(template, conv), hf(conv, True)
        if ours != theirs:
            raise _unsupported(
                f"the derived Ollama template renders {ours!r} where the model's renders {theirs!r}"
            )
    return template, a_suf


def stop_strings(tokenizer: Any, answer_suffix: str) -> tuple[str, ...]:
    """Stop strings: the EOS token and every special token in ``answer_suffix`` (what the template writes
    after an answer: ``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3)."""
    special = set(getattr(tokenizer, "all_special_tokens", None) or [])
    special |= {str(t) for t in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values()}
    found = [str(tokenizer.eos_token)] if tokenizer.eos_token else []
    inside = sorted((t for t in special if t and t in answer_suffix), key=answer_suffix.find)
    return tuple(found + [t for t in inside if t not in found])


def _checks() -> list[list[dict[str, str]]]:
    """Conversations the derived template must render exactly like the model's (with generation prompt)."""
    s = {"role": "system", "content": "You route tickets.\nAnswer with one word."}
    u = [{"role": "user", "content": t} for t in ("Refund my invoice  ", "It crashed\n\ntwice", "ok")]
    a = [{"role": "assistant", "content": t} for t in ("billing", "technical\n")]
    return [[u[0]], [s, u[0]], [s, u[0], a[0], u[1]], [u[0], a[0], u[1], a[1], u[2]]]


def _unsupported(why: str) -> TunesmithError:
    return TunesmithError(
        f"The model's chat template cannot be written as an Ollama template: {why}.",
        "Export without the Modelfile (--no-modelfile) and give Ollama a TEMPLATE by hand; the GGUF keeps "
        "the model's own template in its metadata (tokenizer.chat_template).",
    )


# --------------------------------------------------------------------------- Modelfile files


def write_modelfile(folder: Path, modelfile: Modelfile) -> Path:
    """Write ``folder/Modelfile``."""
    path = Path(folder) / "Modelfile"
    path.write_text(modelfile.text(), encoding="utf-8")
    return path


_TRIPLE = re.compile(r'"""(.*?)"""', re.S)


def parse_modelfile(text: str) -> Modelfile:
    """Read a Modelfile's FROM, TEMPLATE, SYSTEM and PARAMETER lines (``\"\"\"`` blocks may span lines).

    Raises:
        TunesmithError: on an instruction this reader does not know, or a missing FROM/TEMPLATE.
    """
    fields: dict[str, str] = {}
    stops: list[str] = []
    params: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        line = text[pos : end if end >= 0 else len(text)]
        if not line.strip() or line.lstrip().startswith("#"):
            pos = (end + 1) if end >= 0 else len(text)
            continue
        name, _, value = line.strip().partition(" ")
        name = name.upper()
        if value.startswith('"""'):
            m = _TRIPLE.match(text, pos + line.index('"""'))
            if m is None:
                raise TunesmithError(f'Modelfile: the """ block of {name} is not closed.')
            value, pos = m.group(1), m.end()
            pos = text.find("\n", pos) + 1 or len(text)
        else:
            pos = (end + 1) if end >= 0 else len(text)
        if name in ("FROM", "TEMPLATE", "SYSTEM"):
            fields[name] = value
        elif name == "PARAMETER":
            key, _, val = value.partition(" ")
            val = json.loads(val) if val.startswith('"') else val
            (stops.append(val) if key == "stop" else params.append((key, val)))
        else:
            raise TunesmithError(f"Modelfile: unknown instruction {name}.")
    if "FROM" not in fields or "TEMPLATE" not in fields:
        raise TunesmithError("Modelfile: FROM and TEMPLATE are both required.")
    return Modelfile(
        model=fields["FROM"].removeprefix("./"),
        template=fields["TEMPLATE"],
        stop=tuple(stops),
        system=fields.get("SYSTEM"),
        parameters=tuple(params),
    )


# --------------------------------------------------------------------------- Go template subset


def render_ollama(template: str, messages: list[dict[str, str]], system: str | None = None) -> str:
    """Render ``messages`` as Ollama does with ``template`` (``system``: the Modelfile's SYSTEM, used when
    the conversation has no system message)."""
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    sys_parts = [m["content"] for m in messages if m["role"] == "system"]
    collated: list[dict[str, str]] = []
    for m in messages:  # Ollama's collate: consecutive turns of one role are merged
        if collated and collated[-1]["Role"] == m["role"] and m["role"] != "tool":
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    return render_go_template(template, {"System": "\n\n".join(sys_parts), "Messages": collated})


_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)


def render_go_template(template: str, data: dict[str, Any]) -> str:
    """Evaluate ``template`` (the Go text/template subset in the module docstring) on ``data``.

    Raises:
        TunesmithError: on a construct outside the subset or an unbalanced if/range/end.
    """
    tokens: list[tuple[str, str]] = []  # ("text", s) | ("action", s)
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if tokens and tokens[-1][0] == "trim":
            tokens.pop()
            text = text.lstrip(" \t\r\n")
        tokens.append(("text", text))
        tokens.append(("action", m.group(2)))
        if m.group(3):
            tokens.append(("trim", ""))
        pos = m.end()
    tail = template[pos:]
    if tokens and tokens[-1][0] == "trim":
        tokens.pop()
        tail = tail.lstrip(" \t\r\n")
    tokens.append(("text", tail))
    tree, i = _parse(tokens, 0, top=True)
    out: list[str] = []
    _exec(tree, [data], out)
    return "".join(out)


def _parse(tokens: list[tuple[str, str]], i: int, top: bool = False) -> tuple[list[Any], int]:
    """Nodes until a matching ``else``/``end``; returns (nodes, index of the stopping token)."""
    nodes: list[Any] = []
    while i < len(tokens):
        kind, s = tokens[i]
        if kind == "text":
            nodes.append(("text", s))
        elif s == "end" or s == "else" or s.startswith("else if "):
            if top:
                raise TunesmithError(f"Go template: {{{{ {s} }}}} without an open if/range.")
            return nodes, i
        elif s.startswith("if "):
            node, i = _parse_if(tokens, i, s[3:])
            nodes.append(node)
        elif s.startswith("range "):
            body, j = _parse(tokens, i + 1)
            if tokens[j][1] != "end":
                raise TunesmithError("Go template: range with else is not supported here.")
            nodes.append(("range", s[6:].strip(), body))
            i = j
        else:
            nodes.append(("value", s))
        i += 1
    if not top:
        raise TunesmithError("Go template: an if/range has no {{ end }}.")
    return nodes, i


def _parse_if(tokens: list[tuple[str, str]], i: int, cond: str) -> tuple[Any, int]:
    branches: list[tuple[str | None, list[Any]]] = []
    while True:
        body, j = _parse(tokens, i + 1)
        branches.append((cond, body))
        s = tokens[j][1]
        if s == "end":
            return ("if", branches), j
        if s == "else":
            body, j = _parse(tokens, j + 1)
            if tokens[j][1] != "end":
                raise TunesmithError("Go template: {{ else }} must be the last branch of an if.")
            branches.append((None, body))
            return ("if", branches), j
        cond, i = s[len("else if ") :], j


def _exec(nodes: list[Any], scope: list[Any], out: list[str]) -> None:
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(str(_eval(node[1], scope)))
        elif node[0] == "if":
            for cond, body in node[1]:
                if cond is None or _truthy(_eval(cond, scope)):
                    _exec(body, scope, out)
                    break
        elif node[0] == "range":
            for item in _eval(node[1], scope) or []:
                _exec(node[2], [*scope, item], out)


_ARG = re.compile(r'"(?:[^"\\]|\\.)*"|[()]|[^\s()]+')
_FUNCS = ("eq", "ne", "not", "and", "or")


def _eval(expr: str, scope: list[Any]) -> Any:
    tokens = _ARG.findall(expr)
    value, i = _expr(tokens, 0, scope)
    if i != len(tokens):
        raise TunesmithError(f"Go template: cannot read {{{{ {expr} }}}}.")
    return value


def _expr(tokens: list[str], i: int, scope: list[Any]) -> tuple[Any, int]:
    """A command: a function and its arguments, or one operand; stops at ``)`` or the end."""
    if i >= len(tokens):
        raise TunesmithError("Go template: an empty action.")
    head = tokens[i]
    if head not in _FUNCS:
        if len(tokens) > i + 1 and tokens[i + 1] != ")":
            raise TunesmithError(f"Go template: the function {head!r} is not supported here.")
        return _term(tokens, i, scope)
    args: list[Any] = []
    i += 1
    while i < len(tokens) and tokens[i] != ")":
        value, i = _term(tokens, i, scope)
        args.append(value)
    if head == "eq":
        return any(args[0] == a for a in args[1:]), i
    if head == "ne":
        return args[0] != args[1], i
    if head == "not":
        return not _truthy(args[0]), i
    if head == "and":
        return all(_truthy(a) for a in args), i
    return any(_truthy(a) for a in args), i


def _term(tokens: list[str], i: int, scope: list[Any]) -> tuple[Any, int]:
    if tokens[i] == "(":
        value, i = _expr(tokens, i + 1, scope)
        if i >= len(tokens) or tokens[i] != ")":
            raise TunesmithError("Go template: a '(' is not closed.")
        return value, i + 1
    return _operand(tokens[i], scope), i + 1


def _operand(token: str, scope: list[Any]) -> Any:
    if token.startswith('"'):
        return json.loads(token)
    if token.startswith("$."):
        return _field(scope[0], token[2:])
    if token == ".":
        return scope[-1]
    if token.startswith("."):
        return _field(scope[-1], token[1:])
    raise TunesmithError(f"Go template: {token!r} is not supported here (fields and strings only).")


def _field(obj: Any, path: str) -> Any:
    for name in path.split("."):
        if not isinstance(obj, dict) or name not in obj:
            raise TunesmithError(f"Go template: no field .{name} here.")
        obj = obj[name]
    return obj


def _truthy(v: Any) -> bool:
    return bool(v)
