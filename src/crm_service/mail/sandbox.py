"""Rendering an organization's own mail templates, which an administrator wrote.

They run in jinja2's `SandboxedEnvironment` without a loader (nothing can be included,
imported or extended), with `StrictUndefined`, and HTML-escaping for the html part only. On
top of the sandbox, a template may use only a small language, checked when it is stored:
the kind's variables (kinds.py), `for` over the kind's lists (nested at most twice), `if`,
comparisons, `~`, the attributes the lists' items have (and `loop.*`), and a few filters
and tests that cannot make output grow beyond what the template and its values hold. No
calls, no arithmetic, no `set`, macros, blocks or `autoescape` switches: nothing that could
reach the interpreter's internals, bypass escaping, or spend unbounded time or memory. Each
part is at most `MAX_PART_BYTES` of UTF-8, and rendered output at most `MAX_OUTPUT_CHARS`
(the subject line, made one line, at most `MAX_SUBJECT_CHARS`).
`join` reads only an item's field (`purposes|join(", ", attribute="name")`): its attribute
argument reads past the attribute checks otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, nodes
from jinja2.sandbox import SandboxedEnvironment

from crm_service.mail.kinds import MailKind

MAX_PART_BYTES = 64 * 1024
MAX_OUTPUT_CHARS = 256 * 1024
# A Subject header folded from a quarter of a million characters costs the worker a second
# per attempt and is refused or cut by many mail servers; no subject line needs more.
MAX_SUBJECT_CHARS = 500
MAX_LOOP_DEPTH = 2
PARTS = ("subject", "text", "html")

FILTERS = frozenset(
    {
        "capitalize",
        "count",
        "d",
        "default",
        "e",
        "escape",
        "first",
        "join",
        "last",
        "length",
        "lower",
        "striptags",
        "title",
        "trim",
        "truncate",
        "upper",
        "wordcount",
    }
)
TESTS = frozenset(
    {"defined", "undefined", "none", "string", "number", "sequence", "eq", "ne", "in"}
)
LOOP_ATTRIBUTES = frozenset({"index", "index0", "revindex", "revindex0", "first", "last", "length"})
_COMPARISONS = frozenset({"eq", "ne", "lt", "gt", "lteq", "gteq", "in", "notin"})
# What a part may not hold (kit/schemas.py refuses it in the source); a string literal's
# escapes could make it, and lone surrogates besides.
_UNWRITABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_TEMPLATE_FILE = "<template>"  # the file name jinja2 gives frames of a template from a string


@dataclass(frozen=True)
class TemplateSource:
    """The three parts of one mail as jinja2 source."""

    subject: str
    text: str
    html: str

    def part(self, name: str) -> str:
        return str(getattr(self, name))


@dataclass(frozen=True)
class TemplateProblem:
    """What is wrong with one part of a template: a rule and a message naming the line."""

    part: str
    rule: str
    message: str


class TemplateRefused(Exception):
    """A template that may not be stored or rendered; carries the problems found."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        super().__init__("; ".join(f"{p.part}: {p.message}" for p in problems))
        self.problems = problems


class _Refusal(Exception):
    def __init__(self, line: int | None, rule: str, message: str) -> None:
        super().__init__(message)
        self.line, self.rule, self.message = line, rule, message


class _OutputTooLarge(Exception):
    pass


def _sandbox(autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=None,
        autoescape=autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
    )


_PLAIN = _sandbox(autoescape=False)
_ESCAPED = _sandbox(autoescape=True)


def _environment(part: str) -> SandboxedEnvironment:
    return _ESCAPED if part == "html" else _PLAIN


class _Checker:
    """Walks a parsed template and refuses anything outside the small language."""

    def __init__(self, kind: MailKind) -> None:
        self.kind = kind

    def template(self, tree: nodes.Template) -> None:
        for node in tree.body:
            self.statement(node, frozenset(), 0)

    def statement(self, node: nodes.Node, bound: frozenset[str], depth: int) -> None:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if not isinstance(child, nodes.TemplateData):
                    self.expression(child, bound)
        elif isinstance(node, nodes.If):
            self.expression(node.test, bound)
            for inner in [*node.body, *node.else_]:
                self.statement(inner, bound, depth)
            for elif_ in node.elif_:
                self.statement(elif_, bound, depth)
        elif isinstance(node, nodes.For):
            self.loop(node, bound, depth)
        else:
            raise self.refuse(node, "not_allowed", f"{_describe(node)} is not allowed")

    def loop(self, node: nodes.For, bound: frozenset[str], depth: int) -> None:
        if depth >= MAX_LOOP_DEPTH:
            raise self.refuse(node, "not_allowed", "loops may be nested at most twice")
        if node.recursive:
            raise self.refuse(node, "not_allowed", "recursive loops are not allowed")
        iterable = node.iter
        if not (isinstance(iterable, nodes.Name) and iterable.name in self.kind.lists):
            lists = ", ".join(sorted(self.kind.lists)) or "none in this mail"
            raise self.refuse(node, "not_allowed", f"a loop may only go over a list ({lists})")
        if not isinstance(node.target, nodes.Name):
            raise self.refuse(node, "not_allowed", "a loop takes one name per item")
        inside = bound | {node.target.name, "loop"}
        if node.test is not None:
            self.expression(node.test, inside)
        for child in node.body:
            self.statement(child, inside, depth + 1)
        for child in node.else_:
            self.statement(child, bound, depth)

    def expression(self, node: nodes.Node, bound: frozenset[str]) -> None:
        if isinstance(node, nodes.Const):
            if not isinstance(node.value, str | int | bool | None):
                raise self.refuse(node, "not_allowed", "only text, whole numbers and booleans")
            if isinstance(node.value, str) and _UNWRITABLE.search(node.value):
                # A string's escapes ("\x00", "\ud800") make what the part itself may not hold:
                # control characters, or a lone surrogate that no mail can be encoded with.
                raise self.refuse(
                    node, "not_allowed", "text may not hold control characters or lone surrogates"
                )
        elif isinstance(node, nodes.Name):
            if node.name not in self.kind.variables and node.name not in bound:
                known = ", ".join(sorted(self.kind.variables))
                raise self.refuse(
                    node,
                    "undefined_variable",
                    f"'{node.name}' is not a variable of this mail (it has: {known})",
                )
        elif isinstance(node, nodes.Getattr | nodes.Getitem):
            self.attribute(node, bound)
        elif isinstance(node, nodes.Filter):
            self.filter(node, bound)
        elif isinstance(node, nodes.Test):
            if node.name not in TESTS:
                raise self.refuse(node, "not_allowed", f"the test '{node.name}' is not allowed")
            self.arguments(node, bound)
            self.expression(node.node, bound)
        elif isinstance(node, nodes.Concat):
            for child in node.nodes:
                self.expression(child, bound)
        elif isinstance(node, nodes.And | nodes.Or):
            self.expression(node.left, bound)
            self.expression(node.right, bound)
        elif isinstance(node, nodes.Not):
            self.expression(node.node, bound)
        elif isinstance(node, nodes.CondExpr):
            for expression in (node.test, node.expr1, node.expr2):
                if expression is not None:
                    self.expression(expression, bound)
        elif isinstance(node, nodes.Compare):
            self.expression(node.expr, bound)
            for operand in node.ops:
                if operand.op not in _COMPARISONS:
                    raise self.refuse(node, "not_allowed", "that comparison is not allowed")
                self.expression(operand.expr, bound)
        elif isinstance(node, nodes.Tuple | nodes.List):
            for child in node.items:
                self.expression(child, bound)
        else:
            raise self.refuse(node, "not_allowed", f"{_describe(node)} is not allowed")

    def attribute(self, node: nodes.Getattr | nodes.Getitem, bound: frozenset[str]) -> None:
        if isinstance(node, nodes.Getattr):
            name: object = node.attr
        elif isinstance(node.arg, nodes.Const):
            name = node.arg.value
        else:
            raise self.refuse(node, "not_allowed", "an item is read by a fixed name")
        base = node.node
        if isinstance(base, nodes.Name) and base.name == "loop" and "loop" in bound:
            allowed = LOOP_ATTRIBUTES
        elif isinstance(base, nodes.Name) and base.name in bound:
            allowed = self.kind.item_fields
        else:
            allowed = frozenset()
        if not isinstance(name, str):
            raise self.refuse(node, "not_allowed", "items are read by name (`item.name`)")
        if name not in allowed:
            raise self.refuse(node, "not_allowed", f"the attribute '{name}' is not allowed")

    def filter(self, node: nodes.Filter, bound: frozenset[str]) -> None:
        if node.name not in FILTERS:
            raise self.refuse(node, "not_allowed", f"the filter '{node.name}' is not allowed")
        if node.name == "join":
            self.join_attribute(node)
        self.arguments(node, bound)
        if node.node is not None:
            self.expression(node.node, bound)

    def join_attribute(self, node: nodes.Filter) -> None:
        """`join`'s attribute (its second argument) reads what it names of each item (a dotted
        path, an index, a method) past the attribute checks: only an item field, by name."""
        named = [keyword.value for keyword in node.kwargs if keyword.key == "attribute"]
        for attribute in [*node.args[1:2], *named]:
            name = attribute.value if isinstance(attribute, nodes.Const) else None
            if not isinstance(name, str) or name not in self.kind.item_fields:
                fields = ", ".join(sorted(self.kind.item_fields)) or "none in this mail"
                raise self.refuse(
                    node, "not_allowed", f"join may only read an item's field ({fields})"
                )

    def arguments(self, node: nodes.Filter | nodes.Test, bound: frozenset[str]) -> None:
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            raise self.refuse(node, "not_allowed", "arguments are written out, not unpacked")
        for argument in node.args:
            self.expression(argument, bound)
        for keyword in node.kwargs:
            self.expression(keyword.value, bound)

    @staticmethod
    def refuse(node: nodes.Node, rule: str, message: str) -> _Refusal:
        # A block such as {% autoescape %} has no line of its own; its first statement has.
        line = getattr(node, "lineno", None) or next(
            (inner.lineno for inner in node.find_all(nodes.Node) if inner.lineno), None
        )
        return _Refusal(line, rule, message)


def _describe(node: nodes.Node) -> str:
    names = {
        "Call": "calling a function or method",
        "Include": "{% include %}",
        "Import": "{% import %}",
        "FromImport": "{% from ... import %}",
        "Extends": "{% extends %}",
        "Block": "{% block %}",
        "Macro": "{% macro %}",
        "CallBlock": "{% call %}",
        "Assign": "{% set %}",
        "AssignBlock": "{% set %}",
        "With": "{% with %}",
        "FilterBlock": "{% filter %}",
        "Scope": "{% autoescape %}",
        "ScopedEvalContextModifier": "{% autoescape %}",
        "EvalContextModifier": "{% autoescape %}",
        "Slice": "slicing",
        "Dict": "a mapping",
    }
    name = type(node).__name__
    if name in names:
        return names[name]
    if isinstance(node, nodes.BinExpr | nodes.UnaryExpr):
        return "arithmetic"
    return f"'{name}'"


def _line(message: str, line: int | None) -> str:
    return f"line {line}: {message}" if line is not None else message


def _template_line(traceback: TracebackType | None) -> int | None:
    """The template line an exception was raised at (jinja2 rewrites the traceback so the
    template's own frames carry its line numbers)."""
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == _TEMPLATE_FILE:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


@lru_cache(maxsize=256)
def _compiled(kind: MailKind, part: str, source: str) -> Template:
    """The part compiled, once it passed the checks; cached by its source."""
    if len(source.encode()) > MAX_PART_BYTES:
        raise _Refusal(None, "too_large", f"a part is at most {MAX_PART_BYTES} bytes of UTF-8")
    environment = _environment(part)
    try:
        tree = environment.parse(source)
        _Checker(kind).template(tree)
        return environment.from_string(tree)
    except TemplateSyntaxError as exc:
        raise _Refusal(exc.lineno, "template_syntax", f"does not compile: {exc.message}") from None
    except RecursionError:
        raise _Refusal(None, "not_allowed", "the template is nested too deeply") from None


def _render_part(template: Template, context: Mapping[str, object]) -> str:
    pieces: list[str] = []
    length = 0
    for piece in template.generate(**context):
        length += len(piece)
        if length > MAX_OUTPUT_CHARS:
            raise _OutputTooLarge
        pieces.append(piece)
    return "".join(pieces)


def _parts(source: TemplateSource) -> Iterator[tuple[str, str]]:
    for part in PARTS:
        yield part, source.part(part)


def render_override(
    kind: MailKind, source: TemplateSource, context: Mapping[str, object]
) -> tuple[str, str, str]:
    """Subject line (collapsed to one line), text and html of an organization's template;
    raises TemplateRefused when a part is refused or fails with these values."""
    rendered: dict[str, str] = {}
    for part, text in _parts(source):
        try:
            template = _compiled(kind, part, text)
            rendered[part] = _render_part(template, context)
        except _Refusal as refusal:
            message = _line(refusal.message, refusal.line)
            raise TemplateRefused([TemplateProblem(part, refusal.rule, message)]) from None
        except _OutputTooLarge:
            message = f"renders to more than {MAX_OUTPUT_CHARS} characters"
            raise TemplateRefused([TemplateProblem(part, "too_large", message)]) from None
        except Exception as exc:  # noqa: BLE001 - any failure of the admin's template is theirs
            undefined = isinstance(exc, UndefinedError)
            reason = (
                "a variable or attribute it uses is undefined"
                if undefined
                else f"it fails ({type(exc).__name__})"
            )
            line = _template_line(exc.__traceback__)
            message = _line(f"does not render with this mail's values: {reason}", line)
            rule = "undefined_variable" if undefined else "render_failed"
            raise TemplateRefused([TemplateProblem(part, rule, message)]) from None
    # One line, whatever the context held: a header never carries a line break.
    subject = " ".join(rendered["subject"].split())
    if len(subject) > MAX_SUBJECT_CHARS:
        message = f"the subject line is longer than {MAX_SUBJECT_CHARS} characters"
        raise TemplateRefused([TemplateProblem("subject", "too_large", message)])
    return subject, rendered["text"], rendered["html"]


def check(kind: MailKind, source: TemplateSource) -> None:
    """Refuse (TemplateRefused, every part's problem) a template that would not be stored:
    too large, not compiling, outside the allowed language, or failing with the kind's
    sample values."""
    problems: list[TemplateProblem] = []
    for part, text in _parts(source):
        try:
            render_override(kind, TemplateSource(**{**_blank(), part: text}), kind.sample)
        except TemplateRefused as refused:
            problems += refused.problems
    if problems:
        raise TemplateRefused(problems)


def _blank() -> dict[str, str]:
    return dict.fromkeys(PARTS, "")
