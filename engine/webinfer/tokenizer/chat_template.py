"""A small, sandboxed interpreter for the Jinja2 subset used by chat templates.

GGUF files carry the model's prompt format as ``tokenizer.chat_template``: a
Jinja2 template written for Hugging Face transformers' ``apply_chat_template``.
webinfer has to run inside Pyodide with numpy as its only dependency, so it
cannot import jinja2; this module re-implements the part of Jinja2 that real
chat templates use, with the goal of rendering *exactly* the string
transformers would render (the test-suite checks this against jinja2 itself).

transformers compiles templates with::

    ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                  extensions=[AssistantTracker, loopcontrols])

plus a ``tojson`` filter that is plain :func:`json.dumps` (no HTML escaping,
keys kept in insertion order, ``ensure_ascii=False``) and the globals
``raise_exception`` and ``strftime_now``; it renders with ``messages``,
``tools`` (None unless given), ``documents`` (None unless given),
``add_generation_prompt`` and the special tokens.  We mirror all of that.

Pipeline (each stage is a separate, small piece):

1. :func:`_tokenize` splits the source into text and tag tokens, applying
   Jinja's whitespace control (``{%-``, ``-%}``, trim_blocks, lstrip_blocks)
   to the text *while lexing*, exactly where Jinja's lexer does it.
2. :class:`_Parser` is a recursive-descent parser producing a tree of small
   node classes (statements and expressions), with Jinja's operator precedence.
3. :class:`_Renderer` walks the tree.  Values are plain Python objects (the
   messages are dicts/lists/strings), plus :class:`_Undefined`,
   :class:`_Namespace`, :class:`_Loop` and :class:`_Macro`.

The sandbox: templates come from downloaded model files, so they are
untrusted.  Attribute access is limited to a whitelist of side-effect-free
str/dict/list methods (everything starting with ``_`` is refused, so there is
no route to ``__class__``/``__globals__``), mutating methods raise, ranges are
capped like Jinja's sandbox, and loops/recursion/repetition have budgets so a
hostile template cannot hang the browser tab.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import string
import warnings
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from numbers import Number
from typing import Any

from ..errors import ChatTemplateError

__all__ = ["ChatTemplate", "render_chat"]

# Budgets that keep a hostile template from hanging or exhausting memory.
_MAX_RANGE = 100_000  # same limit as jinja2.sandbox.MAX_RANGE
_MAX_STEPS = 2_000_000  # loop iterations + macro calls per render
_MAX_MACRO_DEPTH = 100  # nested macro calls (recursive macros)
_MAX_SIZE = 10_000_000  # chars/items in any one string or list a template builds
_MAX_OUTPUT = 50_000_000  # chars rendered in total (including macro/set bodies)


# ============================================================================ errors


def _line_col(source: str, pos: int) -> tuple[int, int]:
    """1-based line and column of offset ``pos``."""
    return source.count("\n", 0, pos) + 1, pos - (source.rfind("\n", 0, pos) + 1) + 1


def _error(message: str, source: str | None = None, pos: int | None = None) -> ChatTemplateError:
    """A ChatTemplateError; with a position, its message ends with the line/column.

    ``line`` and ``column`` (None when unknown) are also attributes, so
    callers don't have to parse the message.
    """
    if source is None or pos is None:
        err = ChatTemplateError(message)
        err.line = err.column = None
        return err
    line, column = _line_col(source, pos)
    err = ChatTemplateError(f"{message} (line {line}, column {column})")
    err.line, err.column = line, column
    return err


class _RuntimeFailure(Exception):
    """Raised by value helpers that don't know where in the template they are;
    the evaluator turns it into a ChatTemplateError at the innermost node."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# ============================================================================ lexer

# Everything here mirrors jinja2.lexer with the default delimiters and
# trim_blocks=lstrip_blocks=True, keep_trailing_newline=False.
_TAG_START = re.compile(r"\{([{%#])([-+]?)")
_RAW_BEGIN = re.compile(r"\{%([-+]?)\s*raw\s*(?:-%\}\s*|%\})")
_RAW_END = re.compile(r"\{%([-+]?)\s*endraw\s*(?:\+%\}|-%\}\s*|%\}\n?)")
# trim_blocks: a block or comment end eats one following newline; "-" eats all
# following whitespace; "+" disables trimming.
_COMMENT_END = re.compile(r"\+#\}|-#\}\s*|#\}\n?")
_BLOCK_END = re.compile(r"\+%\}|-%\}\s*|%\}\n?")
_VAR_END = re.compile(r"-\}\}\s*|\}\}")
_WHITESPACE = re.compile(r"\s+")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_FLOAT = re.compile(
    r"(?<!\.)(?:\d+_)*\d+(?:(?:\.(?:\d+_)*\d+)?e[+\-]?(?:\d+_)*\d+|\.(?:\d+_)*\d+)", re.I
)
_INTEGER = re.compile(r"0b(?:_?[01])+|0o(?:_?[0-7])+|0x(?:_?[\da-f])+|[1-9](?:_?\d)*|0(?:_?0)*", re.I)
_NAME = re.compile(r"[^\W\d]\w*")
_STRING = re.compile(r"'([^'\\]*(?:\\.[^'\\]*)*)'|\"([^\"\\]*(?:\\.[^\"\\]*)*)\"", re.S)
_OPERATOR = re.compile(r"//|\*\*|==|!=|>=|<=|[+\-/*%~\[\](){}<>=.:|,;]")
_CLOSING = {"(": ")", "[": "]", "{": "}"}


class _Token:
    __slots__ = ("type", "value", "pos")

    # types: data, var_begin, var_end, block_begin, block_end,
    #        name, string, integer, float, op, eof
    def __init__(self, type: str, value: Any, pos: int):
        self.type, self.value, self.pos = type, value, pos

    def describe(self) -> str:
        if self.type == "eof":
            return "end of template"
        if self.type in ("var_end", "block_end"):
            return "'}}'" if self.type == "var_end" else "'%}'"
        if self.type == "string":
            return "a string"
        if self.type in ("integer", "float"):
            return "a number"
        return repr(str(self.value))

    def __repr__(self) -> str:  # debugging aid
        return f"Token({self.type}, {self.value!r}, {self.pos})"


def _normalize_source(source: str) -> str:
    # Jinja turns every \r\n / \r into \n and (keep_trailing_newline=False)
    # drops a single trailing newline before lexing.
    lines = _NEWLINES.split(source)
    if lines[-1] == "":
        del lines[-1]
    return "\n".join(lines)


def _unescape(body: str, source: str, pos: int) -> str:
    # Jinja decodes string literals with Python's unicode-escape codec after
    # protecting non-ASCII characters, so '\n', '\u00e9', '\x41', '\'' work.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes like '\d' stay as-is
            return body.encode("ascii", "backslashreplace").decode("unicode-escape")
    except UnicodeDecodeError as e:
        raise _error(f"invalid escape in string literal: {e.reason}", source, pos) from None


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, n = 0, len(source)
    # True when the previous tag's match ended with a newline (or at the very
    # start): lstrip_blocks then also strips indentation with no "\n" before it.
    line_starting = True

    def strip_before(text: str, sign: str, is_variable: bool) -> str:
        """Whitespace control for the text in front of a tag."""
        if sign == "-":
            return text.rstrip()
        if sign != "+" and not is_variable:  # lstrip_blocks: not for {{ }}
            l_pos = text.rfind("\n") + 1
            if (l_pos > 0 or line_starting) and _WHITESPACE.fullmatch(text, l_pos):
                return text[:l_pos]
        return text

    while pos < n:
        m = _TAG_START.search(source, pos)
        if m is None:
            tokens.append(_Token("data", source[pos:], pos))
            break
        start, kind = m.start(), m.group(1)
        raw = _RAW_BEGIN.match(source, start) if kind == "%" else None
        text = strip_before(source[pos:start], raw.group(1) if raw else m.group(2), kind == "{")
        if text:
            tokens.append(_Token("data", text, pos))

        if raw:  # {% raw %}...{% endraw %}: the body is literal text
            line_starting = raw.group().endswith("\n")
            end = _RAW_END.search(source, raw.end())
            if end is None:
                raise _error("unclosed '{% raw %}' block (missing '{% endraw %}')", source, start)
            body = strip_before(source[raw.end() : end.start()], end.group(1), False)
            if body:
                tokens.append(_Token("data", body, raw.end()))
            pos = end.end()
            line_starting = end.group().endswith("\n")
            continue

        if kind == "#":
            end = _COMMENT_END.search(source, m.end())
            if end is None:
                raise _error("unclosed comment: '{#' without a matching '#}'", source, start)
            pos = end.end()
            line_starting = end.group().endswith("\n")
            continue

        # {{ expression }} or {% statement %}
        is_var = kind == "{"
        tokens.append(_Token("var_begin" if is_var else "block_begin", None, start))
        end_re = _VAR_END if is_var else _BLOCK_END
        pos = m.end()
        balance: list[str] = []  # "}}" inside {{ {'a': {}} }} is not the end
        while True:
            if pos >= n:
                opener = "{{" if is_var else "{%"
                closer = "}}" if is_var else "%}"
                raise _error(f"unclosed tag: '{opener}' without a matching '{closer}'", source, start)
            if not balance:
                e = end_re.match(source, pos)
                if e:
                    tokens.append(_Token("var_end" if is_var else "block_end", None, pos))
                    pos = e.end()
                    line_starting = e.group().endswith("\n")
                    break
            w = _WHITESPACE.match(source, pos)
            if w:
                pos = w.end()
                continue
            t = _FLOAT.match(source, pos)
            if t:
                tokens.append(_Token("float", float(t.group().replace("_", "")), pos))
                pos = t.end()
                continue
            t = _INTEGER.match(source, pos)
            if t:
                tokens.append(_Token("integer", int(t.group().replace("_", ""), 0), pos))
                pos = t.end()
                continue
            t = _NAME.match(source, pos)
            if t:
                if not t.group().isidentifier():
                    raise _error("invalid character in identifier", source, pos)
                tokens.append(_Token("name", t.group(), pos))
                pos = t.end()
                continue
            t = _STRING.match(source, pos)
            if t:
                body = _NEWLINES.sub("\n", t.group()[1:-1])
                tokens.append(_Token("string", _unescape(body, source, pos), pos))
                pos = t.end()
                continue
            t = _OPERATOR.match(source, pos)
            if t:
                op = t.group()
                if op in _CLOSING:
                    balance.append(_CLOSING[op])
                elif op in (")", "]", "}"):
                    if not balance:
                        raise _error(f"unexpected '{op}'", source, pos)
                    expected = balance.pop()
                    if expected != op:
                        raise _error(f"unexpected '{op}', expected '{expected}'", source, pos)
                tokens.append(_Token("op", op, pos))
                pos = t.end()
                continue
            raise _error(f"unexpected character {source[pos]!r}", source, pos)
    tokens.append(_Token("eof", None, n))
    return tokens


# ============================================================================ AST


class _Node:
    """Base of all AST nodes: ``pos`` is the source offset used in errors."""

    __slots__ = ("pos",)
    fields: tuple[str, ...] = ()

    def __init__(self, pos: int, *values: Any):
        self.pos = pos
        for name, value in zip(self.fields, values, strict=True):
            setattr(self, name, value)

    def __repr__(self) -> str:  # debugging aid
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.fields)
        return f"{type(self).__name__}({inner})"


def _node(name: str, *fields: str) -> type:
    return type(name, (_Node,), {"__slots__": fields, "fields": fields})


# statements
_Output = _node("_Output", "text")
_Print = _node("_Print", "expr")
_If = _node("_If", "branches", "else_")  # branches: [(test, body)]
_For = _node("_For", "target", "iter", "cond", "body", "else_")
_Set = _node("_Set", "target", "expr")
_SetBlock = _node("_SetBlock", "target", "body", "filter")
_MacroDef = _node("_MacroDef", "name", "params", "defaults", "body", "varargs", "kwargs")
_With = _node("_With", "targets", "values", "body")
_FilterBlock = _node("_FilterBlock", "filter", "body")
_Scoped = _node("_Scoped", "body")  # {% generation %}: renders its body in a child scope
_BreakStmt = _node("_BreakStmt")
_ContinueStmt = _node("_ContinueStmt")
# expressions
_Const = _node("_Const", "value")
_Name = _node("_Name", "name")
_NSRef = _node("_NSRef", "name", "attr")  # assignment target `ns.attr`
_ListLit = _node("_ListLit", "items")
_TupleLit = _node("_TupleLit", "items")
_DictLit = _node("_DictLit", "pairs")
_Getattr = _node("_Getattr", "node", "attr")
_Getitem = _node("_Getitem", "node", "arg")
_Slice = _node("_Slice", "start", "stop", "step")
_Call = _node("_Call", "node", "args", "kwargs")
_Filter = _node("_Filter", "node", "name", "args", "kwargs")  # node None: filter block input
_Test = _node("_Test", "node", "name", "args", "kwargs")
_Not = _node("_Not", "node")
_Neg = _node("_Neg", "node")
_Pos = _node("_Pos", "node")
_BinOp = _node("_BinOp", "op", "left", "right")
_And = _node("_And", "left", "right")
_Or = _node("_Or", "left", "right")
_Concat = _node("_Concat", "nodes")
_Compare = _node("_Compare", "expr", "ops")  # ops: [(op, node)]
_CondExpr = _node("_CondExpr", "test", "expr1", "expr2")


# ============================================================================ parser

_COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")
# Jinja tags that make sense only with a template loader or autoescaping.
_UNSUPPORTED_TAGS = frozenset(
    ["block", "extends", "include", "import", "from", "call", "autoescape", "do", "trans"]
)


class _Parser:
    """Recursive descent over the token list, following jinja2.parser."""

    def __init__(self, tokens: list[_Token], source: str):
        self.tokens = tokens
        self.i = 0
        self.source = source
        self.loop_depth = 0  # break/continue are only valid inside a for body
        self.macro_names: list[set[str]] = []  # names read in each enclosing macro body
        self.unsupported: list[str] = []  # unknown filters/tests (fail only if executed)

    # ---------------------------------------------------------------- helpers
    @property
    def cur(self) -> _Token:
        return self.tokens[self.i]

    def look(self) -> _Token:
        return self.tokens[min(self.i + 1, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.type != "eof":
            self.i += 1
        return tok

    def fail(self, message: str, tok: _Token | None = None) -> ChatTemplateError:
        return _error(message, self.source, (tok or self.cur).pos)

    def is_op(self, op: str, tok: _Token | None = None) -> bool:
        tok = tok or self.cur
        return tok.type == "op" and tok.value == op

    def is_name(self, name: str, tok: _Token | None = None) -> bool:
        tok = tok or self.cur
        return tok.type == "name" and tok.value == name

    def skip_op(self, op: str) -> bool:
        if self.is_op(op):
            self.advance()
            return True
        return False

    def skip_name(self, name: str) -> bool:
        if self.is_name(name):
            self.advance()
            return True
        return False

    def expect_op(self, op: str) -> _Token:
        if not self.is_op(op):
            raise self.fail(f"expected '{op}', got {self.cur.describe()}")
        return self.advance()

    def expect_name(self) -> str:
        if self.cur.type != "name":
            raise self.fail(f"expected a name, got {self.cur.describe()}")
        return self.advance().value

    def expect_end(self, type_: str = "block_end") -> None:
        if self.cur.type != type_:
            want = "'%}'" if type_ == "block_end" else "'}}'"
            raise self.fail(f"expected {want}, got {self.cur.describe()}")
        self.advance()

    # ---------------------------------------------------------------- template
    def parse_template(self) -> list:
        return self.subparse((), None)

    def subparse(self, end_tags: tuple[str, ...], opener: _Token | None) -> list:
        """Parse nodes until a ``{% tag %}`` with ``tag`` in ``end_tags``.

        Stops with ``self.cur`` on that tag's name token.  ``opener`` is the
        name token of the enclosing block, used to explain unclosed blocks.
        """
        body: list = []
        while True:
            tok = self.cur
            if tok.type == "data":
                self.advance()
                body.append(_Output(tok.pos, tok.value))
            elif tok.type == "var_begin":
                self.advance()
                expr = self.parse_tuple()
                self.expect_end("var_end")
                body.append(_Print(tok.pos, expr))
            elif tok.type == "block_begin":
                self.advance()
                name_tok = self.cur
                if name_tok.type != "name":
                    raise self.fail(f"expected a tag name after '{{%', got {name_tok.describe()}")
                if name_tok.value in end_tags:
                    return body
                if name_tok.value.startswith("end") or name_tok.value in ("elif", "else"):
                    if opener is None:
                        raise self.fail(f"unexpected '{name_tok.value}': no open block to close")
                    raise self.fail(
                        f"unexpected '{name_tok.value}' inside the '{opener.value}' block opened at "
                        f"{self._where(opener)} (expected {' or '.join(repr(t) for t in end_tags)})"
                    )
                body.append(self.parse_statement())
            elif tok.type == "eof":
                if opener is not None:
                    raise self.fail(
                        f"unclosed '{{% {opener.value} %}}' block: expected '{{% end{opener.value} %}}' "
                        "before the end of the template",
                        opener,
                    )
                return body
            else:  # pragma: no cover - the lexer only yields the types above here
                raise self.fail(f"unexpected {tok.describe()}")

    def _where(self, tok: _Token) -> str:
        line, column = _line_col(self.source, tok.pos)
        return f"line {line}, column {column}"

    def close(self, tag: str) -> None:
        """Consume ``tag %}`` (the end tag subparse stopped at)."""
        assert self.cur.value == tag
        self.advance()
        self.expect_end()

    # ---------------------------------------------------------------- statements
    def parse_statement(self):
        tok = self.cur
        name = tok.value
        method = getattr(self, f"stmt_{name}", None)
        if method is None:
            if name in _UNSUPPORTED_TAGS:
                raise self.fail(f"the '{name}' tag is not supported in chat templates")
            raise self.fail(f"unknown tag '{name}'")
        self.advance()
        return method(tok)

    def stmt_if(self, tok: _Token):
        branches = []
        else_: list = []
        test = self.parse_tuple(with_condexpr=False)
        self.expect_end()
        body = self.subparse(("elif", "else", "endif"), tok)
        branches.append((test, body))
        while True:
            tag = self.advance().value
            if tag == "elif":
                test = self.parse_tuple(with_condexpr=False)
                self.expect_end()
                branches.append((test, self.subparse(("elif", "else", "endif"), tok)))
            elif tag == "else":
                self.expect_end()
                else_ = self.subparse(("endif",), tok)
                self.close("endif")
                break
            else:  # endif
                self.expect_end()
                break
        return _If(tok.pos, branches, else_)

    def stmt_for(self, tok: _Token):
        target = self.parse_assign_target(extra_end=("in",))
        if not self.skip_name("in"):
            raise self.fail(f"expected 'in' in the for loop, got {self.cur.describe()}")
        iterable = self.parse_tuple(with_condexpr=False, extra_end=("recursive",))
        cond = self.parse_expression() if self.skip_name("if") else None
        if self.is_name("recursive"):
            raise self.fail("recursive for loops are not supported in chat templates")
        self.expect_end()
        self.loop_depth += 1
        body = self.subparse(("endfor", "else"), tok)
        self.loop_depth -= 1
        else_: list = []
        if self.advance().value == "else":
            self.expect_end()
            else_ = self.subparse(("endfor",), tok)
            self.close("endfor")
        else:
            self.expect_end()
        return _For(tok.pos, target, iterable, cond, body, else_)

    def stmt_set(self, tok: _Token):
        target = self.parse_assign_target(with_namespace=True)
        if self.skip_op("="):
            expr = self.parse_tuple()
            self.expect_end()
            return _Set(tok.pos, target, expr)
        # block form: {% set x %}...{% endset %}, optionally {% set x | filter %}
        filt = self.parse_filter(None) if self.is_op("|") else None
        self.expect_end()
        body = self.subparse(("endset",), tok)
        self.close("endset")
        return _SetBlock(tok.pos, target, body, filt)

    def stmt_macro(self, tok: _Token):
        name = self.expect_name()
        params: list[str] = []
        defaults: dict[str, Any] = {}
        self.expect_op("(")
        while not self.is_op(")"):
            if params:
                self.expect_op(",")
            ptok = self.cur
            pname = self.expect_name()
            if self.skip_op("="):
                defaults[pname] = self.parse_expression()
            elif defaults:
                raise self.fail("non-default argument follows default argument", ptok)
            params.append(pname)
        self.expect_op(")")
        self.expect_end()
        saved_depth, self.loop_depth = self.loop_depth, 0  # no break out of a macro
        self.macro_names.append(set())
        body = self.subparse(("endmacro",), tok)
        used = self.macro_names.pop()
        self.loop_depth = saved_depth
        self.close("endmacro")
        # Like Jinja, a macro accepts extra positional/keyword arguments only
        # if its body reads `varargs` / `kwargs`.
        return _MacroDef(tok.pos, name, params, defaults, body, "varargs" in used, "kwargs" in used)

    def stmt_with(self, tok: _Token):
        targets, values = [], []
        while self.cur.type != "block_end":
            if targets:
                self.expect_op(",")
            targets.append(self.parse_assign_target())
            self.expect_op("=")
            values.append(self.parse_expression())
        self.expect_end()
        body = self.subparse(("endwith",), tok)
        self.close("endwith")
        return _With(tok.pos, targets, values, body)

    def stmt_filter(self, tok: _Token):
        filt = self.parse_filter(None, start_inline=True)
        self.expect_end()
        body = self.subparse(("endfilter",), tok)
        self.close("endfilter")
        return _FilterBlock(tok.pos, filt, body)

    def stmt_print(self, tok: _Token):
        # {% print a, b %} prints a then b (unlike {{ a, b }}, which prints a tuple)
        exprs = []
        while self.cur.type != "block_end":
            if exprs:
                self.expect_op(",")
            exprs.append(self.parse_expression())
        self.expect_end()
        return _Print(tok.pos, _Concat(tok.pos, exprs))

    def stmt_generation(self, tok: _Token):
        # transformers' AssistantTracker tag: marks assistant text for masks;
        # for rendering it is just its body (in its own scope, as a caller()).
        self.expect_end()
        body = self.subparse(("endgeneration",), tok)
        self.close("endgeneration")
        return _Scoped(tok.pos, body)

    def stmt_break(self, tok: _Token):
        if not self.loop_depth:
            raise self.fail("'break' outside of a for loop", tok)
        self.expect_end()
        return _BreakStmt(tok.pos)

    def stmt_continue(self, tok: _Token):
        if not self.loop_depth:
            raise self.fail("'continue' outside of a for loop", tok)
        self.expect_end()
        return _ContinueStmt(tok.pos)

    def parse_assign_target(self, with_namespace: bool = False, extra_end: tuple[str, ...] = ()):
        if with_namespace and self.cur.type == "name" and self.is_op(".", self.look()):
            tok = self.advance()
            self.advance()
            return _NSRef(tok.pos, tok.value, self.expect_name())
        start = self.cur
        target = self.parse_tuple(simplified=True, extra_end=extra_end)
        self._check_target(target, start)
        return target

    def _check_target(self, node, tok: _Token) -> None:
        if isinstance(node, _TupleLit):
            for item in node.items:
                self._check_target(item, tok)
        elif not isinstance(node, _Name) or node.name in ("loop", "self"):
            raise self.fail("can't assign to this expression", tok)

    # ---------------------------------------------------------------- expressions
    def parse_tuple(
        self,
        with_condexpr: bool = True,
        extra_end: tuple[str, ...] = (),
        explicit_parens: bool = False,
        simplified: bool = False,
    ):
        """A comma-separated expression list; a tuple only if there is a comma."""
        pos = self.cur.pos
        items = []
        is_tuple = False
        while True:
            if items:
                self.expect_op(",")
            if self._is_tuple_end(extra_end):
                break
            if simplified:
                items.append(self.parse_primary())
            else:
                items.append(self.parse_expression(with_condexpr))
            if self.is_op(","):
                is_tuple = True
            else:
                break
        if not is_tuple:
            if items:
                return items[0]
            if not explicit_parens:
                raise self.fail(f"expected an expression, got {self.cur.describe()}")
        return _TupleLit(pos, items)

    def _is_tuple_end(self, extra_end: tuple[str, ...]) -> bool:
        tok = self.cur
        if tok.type in ("var_end", "block_end", "eof") or self.is_op(")"):
            return True
        return tok.type == "name" and tok.value in extra_end

    def parse_expression(self, with_condexpr: bool = True):
        return self.parse_condexpr() if with_condexpr else self.parse_or()

    def parse_condexpr(self):
        expr = self.parse_or()
        while self.is_name("if"):
            pos = self.advance().pos
            test = self.parse_or()
            other = self.parse_condexpr() if self.skip_name("else") else None
            expr = _CondExpr(pos, test, expr, other)
        return expr

    def parse_or(self):
        left = self.parse_and()
        while self.is_name("or"):
            pos = self.advance().pos
            left = _Or(pos, left, self.parse_and())
        return left

    def parse_and(self):
        left = self.parse_not()
        while self.is_name("and"):
            pos = self.advance().pos
            left = _And(pos, left, self.parse_not())
        return left

    def parse_not(self):
        if self.is_name("not"):
            pos = self.advance().pos
            return _Not(pos, self.parse_not())
        return self.parse_compare()

    def parse_compare(self):
        expr = self.parse_math1()
        ops = []
        while True:
            tok = self.cur
            if tok.type == "op" and tok.value in _COMPARE_OPS:
                self.advance()
                ops.append((tok.value, self.parse_math1()))
            elif self.is_name("in"):
                self.advance()
                ops.append(("in", self.parse_math1()))
            elif self.is_name("not") and self.is_name("in", self.look()):
                self.advance()
                self.advance()
                ops.append(("not in", self.parse_math1()))
            else:
                break
        return _Compare(expr.pos, expr, ops) if ops else expr

    def parse_math1(self):
        left = self.parse_concat()
        while self.cur.type == "op" and self.cur.value in ("+", "-"):
            tok = self.advance()
            left = _BinOp(tok.pos, tok.value, left, self.parse_concat())
        return left

    def parse_concat(self):
        items = [self.parse_math2()]
        while self.is_op("~"):
            self.advance()
            items.append(self.parse_math2())
        return items[0] if len(items) == 1 else _Concat(items[0].pos, items)

    def parse_math2(self):
        left = self.parse_pow()
        while self.cur.type == "op" and self.cur.value in ("*", "/", "//", "%"):
            tok = self.advance()
            left = _BinOp(tok.pos, tok.value, left, self.parse_pow())
        return left

    def parse_pow(self):
        left = self.parse_unary()
        while self.is_op("**"):
            tok = self.advance()
            left = _BinOp(tok.pos, "**", left, self.parse_unary())
        return left

    def parse_unary(self, with_filter: bool = True):
        # As in Jinja, `-x|abs` is abs(-x): the sign binds to the bare operand,
        # then postfix operators and filters apply to the signed value.
        tok = self.cur
        if self.is_op("-"):
            self.advance()
            node = _Neg(tok.pos, self.parse_unary(False))
        elif self.is_op("+"):
            self.advance()
            node = _Pos(tok.pos, self.parse_unary(False))
        else:
            node = self.parse_primary()
        node = self.parse_postfix(node)
        if with_filter:
            node = self.parse_filter_expr(node)
        return node

    def parse_primary(self):
        tok = self.cur
        if tok.type == "name":
            self.advance()
            if tok.value in ("true", "True"):
                return _Const(tok.pos, True)
            if tok.value in ("false", "False"):
                return _Const(tok.pos, False)
            if tok.value in ("none", "None"):
                return _Const(tok.pos, None)
            if self.macro_names:
                self.macro_names[-1].add(tok.value)
            return _Name(tok.pos, tok.value)
        if tok.type == "string":
            parts = []
            while self.cur.type == "string":  # 'a' 'b' is 'ab', as in Python
                parts.append(self.advance().value)
            return _Const(tok.pos, "".join(parts))
        if tok.type in ("integer", "float"):
            self.advance()
            return _Const(tok.pos, tok.value)
        if self.is_op("("):
            self.advance()
            node = self.parse_tuple(explicit_parens=True)
            self.expect_op(")")
            return node
        if self.is_op("["):
            self.advance()
            items = []
            while not self.is_op("]"):
                if items:
                    self.expect_op(",")
                if self.is_op("]"):
                    break
                items.append(self.parse_expression())
            self.expect_op("]")
            return _ListLit(tok.pos, items)
        if self.is_op("{"):
            self.advance()
            pairs = []
            while not self.is_op("}"):
                if pairs:
                    self.expect_op(",")
                if self.is_op("}"):
                    break
                key = self.parse_expression()
                self.expect_op(":")
                pairs.append((key, self.parse_expression()))
            self.expect_op("}")
            return _DictLit(tok.pos, pairs)
        raise self.fail(f"unexpected {tok.describe()}")

    def parse_postfix(self, node):
        while True:
            if self.is_op(".") or self.is_op("["):
                node = self.parse_subscript(node)
            elif self.is_op("("):
                node = self.parse_call(node)
            else:
                return node

    def parse_filter_expr(self, node):
        while True:
            if self.is_op("|"):
                node = self.parse_filter(node)
            elif self.is_name("is"):
                node = self.parse_test(node)
            elif self.is_op("("):
                node = self.parse_call(node)
            else:
                return node

    def parse_subscript(self, node):
        tok = self.advance()
        if tok.value == ".":
            attr = self.advance()
            if attr.type == "name":
                return _Getattr(tok.pos, node, attr.value)
            if attr.type == "integer":  # foo.0 is foo[0]
                return _Getitem(tok.pos, node, _Const(attr.pos, attr.value))
            raise self.fail("expected an attribute name or number after '.'", attr)
        args = []
        while not self.is_op("]"):
            if args:
                self.expect_op(",")
            args.append(self.parse_subscribed())
        self.expect_op("]")
        if not args:
            raise self.fail("expected a subscript expression", tok)
        arg = args[0] if len(args) == 1 else _TupleLit(tok.pos, args)
        return _Getitem(tok.pos, node, arg)

    def parse_subscribed(self):
        pos = self.cur.pos
        if self.is_op(":"):
            self.advance()
            start = None
        else:
            expr = self.parse_expression()
            if not self.is_op(":"):
                return expr
            self.advance()
            start = expr

        def bound():
            if self.is_op(":") or self.is_op("]") or self.is_op(","):
                return None
            return self.parse_expression()

        stop = bound()
        step = None
        if self.skip_op(":"):
            step = bound()
        return _Slice(pos, start, stop, step)

    def parse_call_args(self):
        self.expect_op("(")
        args, kwargs = [], {}
        while not self.is_op(")"):
            if args or kwargs:
                self.expect_op(",")
                if self.is_op(")"):  # trailing comma
                    break
            if self.is_op("*") or self.is_op("**"):
                raise self.fail("'*'/'**' argument unpacking is not supported in chat templates")
            if self.cur.type == "name" and self.is_op("=", self.look()):
                key = self.advance().value
                self.advance()
                kwargs[key] = self.parse_expression()
            else:
                if kwargs:
                    raise self.fail("positional argument follows keyword argument")
                args.append(self.parse_expression())
        self.expect_op(")")
        return args, kwargs

    def parse_call(self, node):
        # Errors in `f(...)` point at `f` when it is a plain name (raise_exception).
        pos = node.pos if isinstance(node, _Name) else self.cur.pos
        args, kwargs = self.parse_call_args()
        return _Call(pos, node, args, kwargs)

    def _dotted_name(self) -> str:
        name = self.expect_name()
        while self.is_op("."):
            self.advance()
            name += "." + self.expect_name()
        return name

    def parse_filter(self, node, start_inline: bool = False):
        while self.is_op("|") or start_inline:
            if not start_inline:
                self.advance()
            start_inline = False
            tok = self.cur
            name = self._dotted_name()
            if name not in _FILTERS:
                self.unsupported.append(f"filter '{name}' ({self._where(tok)})")
            args, kwargs = self.parse_call_args() if self.is_op("(") else ([], {})
            node = _Filter(tok.pos, node, name, args, kwargs)
        return node

    def parse_test(self, node):
        is_tok = self.advance()
        negated = self.skip_name("not")
        tok = self.cur
        name = self._dotted_name()
        if name not in _TESTS:
            self.unsupported.append(f"test '{name}' ({self._where(tok)})")
        args, kwargs = [], {}
        if self.is_op("("):
            args, kwargs = self.parse_call_args()
        elif (
            self.cur.type in ("name", "string", "integer", "float")
            or self.is_op("[")
            or self.is_op("{")
        ) and not (self.is_name("else") or self.is_name("or") or self.is_name("and")):
            # `x is divisibleby 3`, `x is sameas none`: one argument, no parens
            if self.is_name("is"):
                raise self.fail("you cannot chain multiple tests with 'is'")
            args = [self.parse_postfix(self.parse_primary())]
        node = _Test(tok.pos, node, name, args, kwargs)
        return _Not(is_tok.pos, node) if negated else node


# ============================================================================ runtime values


class _Undefined:
    """Jinja's default ``Undefined``: prints as '', is falsy, iterates as empty,
    equals only another Undefined, but fails on attribute/item access, calls
    and arithmetic.  ``hint`` says why it is undefined (for the error)."""

    __slots__ = ("hint", "unsafe")

    def __init__(self, hint: str = "value is undefined", unsafe: bool = False):
        self.hint = hint
        self.unsafe = unsafe  # a refused attribute: calling it is a sandbox error

    def __str__(self) -> str:
        return ""

    def __repr__(self) -> str:
        return "Undefined"

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self):
        return iter(())

    def __eq__(self, other: object) -> bool:
        return type(other) is _Undefined

    def __ne__(self, other: object) -> bool:
        return type(other) is not _Undefined

    def __hash__(self) -> int:
        return id(_Undefined)

    def fail(self):
        raise _RuntimeFailure(self.hint)


class _Namespace:
    """``namespace(...)``: the one object templates may assign attributes to
    (``{% set ns.x = 1 %}``), which is how state escapes a for-loop scope."""

    __slots__ = ("attrs",)

    def __init__(self, attrs: dict):
        self.attrs = attrs

    def __repr__(self) -> str:
        return f"<Namespace {self.attrs!r}>"


class _Loop:
    """The ``loop`` variable inside a for loop."""

    __slots__ = ("_items", "index0", "_last_changed")
    ATTRS = frozenset(
        "index index0 revindex revindex0 first last length previtem nextitem depth depth0 "
        "cycle changed".split()
    )

    def __init__(self, items: list):
        self._items = items
        self.index0 = 0
        self._last_changed: Any = _Undefined()

    index = property(lambda self: self.index0 + 1)
    length = property(lambda self: len(self._items))
    revindex = property(lambda self: len(self._items) - self.index0)
    revindex0 = property(lambda self: len(self._items) - self.index0 - 1)
    first = property(lambda self: self.index0 == 0)
    last = property(lambda self: self.index0 == len(self._items) - 1)
    depth = property(lambda self: 1)
    depth0 = property(lambda self: 0)

    @property
    def previtem(self):
        if self.index0 == 0:
            return _Undefined("there is no previous item")
        return self._items[self.index0 - 1]

    @property
    def nextitem(self):
        if self.index0 + 1 >= len(self._items):
            return _Undefined("there is no next item")
        return self._items[self.index0 + 1]

    def cycle(self, *args):
        if not args:
            raise _RuntimeFailure("no items for cycling given")
        return args[self.index0 % len(args)]

    def changed(self, *value):
        if value != self._last_changed:
            self._last_changed = value
            return True
        return False

    def __repr__(self) -> str:
        return f"<LoopContext {self.index}/{self.length}>"


class _GroupTuple(tuple):
    """A ``(grouper, list)`` pair from the groupby filter (also ``.grouper``/``.list``)."""

    __slots__ = ()
    ATTRS = frozenset(["grouper", "list"])
    grouper = property(lambda self: self[0])
    list = property(lambda self: self[1])


class _Macro:
    """A ``{% macro %}``: a callable that renders its body in a new scope whose
    parent is the scope the macro was defined in (Jinja macros are closures
    that see the defining scope's *current* values at call time)."""

    __slots__ = ("node", "closure", "renderer")

    def __init__(self, node, closure, renderer):
        self.node, self.closure, self.renderer = node, closure, renderer

    def __call__(self, *args, **kwargs):
        return self.renderer.call_macro(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<Macro {self.node.name!r}>"


class _Scope:
    """A variable scope.  Jinja scoping as the tests pin it down:

    * ``if``/``elif``/``else`` do not open a scope;
    * every iteration of a ``for`` body gets a fresh scope (assignments don't
      leak out of the loop, nor into the next iteration);
    * macros, ``with`` and block bodies open scopes;
    * lookups walk outwards to the render context and then the globals.
    """

    __slots__ = ("vars", "parent")

    def __init__(self, parent: _Scope | None, vars: dict | None = None):
        self.parent = parent
        self.vars = {} if vars is None else vars

    def lookup(self, name: str) -> Any:
        scope = self
        while scope is not None:
            if name in scope.vars:
                return scope.vars[name]
            scope = scope.parent
        return _Undefined(f"'{name}' is undefined")


def _type_name(obj: Any) -> str:
    return f"'{type(obj).__name__} object'"


# --- sandboxed attribute / item access ---------------------------------------

# Side-effect-free methods templates may call.  str.format is wrapped (format
# fields could walk attributes: "{0.__class__}"), and so are the methods that
# can blow a string up (replace, padding).
_STR_METHODS = frozenset(
    """capitalize casefold center count endswith find format index isalnum isalpha isascii
    isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle isupper join
    ljust lower lstrip partition removeprefix removesuffix replace rfind rindex rjust rpartition
    rsplit rstrip split splitlines startswith strip swapcase title upper zfill""".split()
)
_MAPPING_METHODS = frozenset(["get", "items", "keys", "values", "copy"])
_SEQUENCE_METHODS = frozenset(["index", "count", "copy"])
_NUMBER_ATTRS = frozenset(
    "real imag numerator denominator conjugate is_integer bit_length as_integer_ratio".split()
)
# jinja2's ImmutableSandboxedEnvironment refuses these (templates must not
# modify the caller's messages); calling one is an error, as there.
_MUTATING_METHODS = frozenset(
    """append clear extend insert pop remove reverse sort popitem setdefault update add discard
    difference_update intersection_update symmetric_difference_update""".split()
)


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > _MAX_SIZE:
        raise _RuntimeFailure(f"result too large (over {_MAX_SIZE} items)")
    return value


def _safe_replace(s: str, old: Any, new: Any, count: int = -1) -> str:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        n = len(s) + 1 if old == "" else s.count(old)
        if count >= 0:
            n = min(n, count)
        if len(s) + n * (len(new) - len(old)) > _MAX_SIZE:
            raise _RuntimeFailure(f"result too large (over {_MAX_SIZE} items)")
    return s.replace(old, new, count)


def _safe_format(s: str, args: tuple, kwargs: dict) -> str:
    # Plain "{}", "{0}", "{name:>8}" only: a field like "{0.__class__}" or
    # "{0[key]}" would walk attributes/items behind the sandbox's back.
    for _, field, spec, _ in string.Formatter().parse(s):
        if field is not None and ("." in field or "[" in field or "{" in (spec or "")):
            raise _RuntimeFailure("str.format fields may not use '.', '[' or nested fields in templates")
    return _check_size(s.format(*args, **kwargs))


def _guard_width(method):
    def padded(width, *rest):
        if isinstance(width, int) and width > _MAX_SIZE:
            raise _RuntimeFailure(f"result too large (over {_MAX_SIZE} items)")
        return method(width, *rest)

    return padded


_GUARDED_STR_METHODS = {
    "replace": lambda s: lambda old, new, count=-1: _safe_replace(s, old, new, count),
    "format": lambda s: lambda *args, **kwargs: _safe_format(s, args, kwargs),
    "center": lambda s: _guard_width(s.center),
    "ljust": lambda s: _guard_width(s.ljust),
    "rjust": lambda s: _guard_width(s.rjust),
    "zfill": lambda s: _guard_width(s.zfill),
}


def _getattr(obj: Any, name: str) -> Any:
    """``obj.name`` with Jinja's rules (attribute first, then ``obj[name]``)
    restricted to the whitelists above."""
    if isinstance(obj, _Undefined):
        obj.fail()
    if name.startswith("_"):
        return _Undefined(
            f"access to attribute {name!r} of {type(obj).__name__!r} object is unsafe", unsafe=True
        )
    if isinstance(obj, _Namespace):
        if name in obj.attrs:
            return obj.attrs[name]
        return _Undefined(f"namespace has no attribute {name!r}")
    if isinstance(obj, _Loop):
        if name in _Loop.ATTRS:
            return getattr(obj, name)
        return _Undefined(f"loop has no attribute {name!r}")
    if isinstance(obj, _GroupTuple) and name in _GroupTuple.ATTRS:
        return getattr(obj, name)
    if isinstance(obj, str):
        allowed = _STR_METHODS
    elif isinstance(obj, Mapping):
        allowed = _MAPPING_METHODS
    elif isinstance(obj, (list, tuple)):
        allowed = _SEQUENCE_METHODS
    elif isinstance(obj, (int, float)):
        allowed = _NUMBER_ATTRS
    else:
        allowed = frozenset()
    if name in allowed and hasattr(obj, name):
        if isinstance(obj, str) and name in _GUARDED_STR_METHODS:
            return _GUARDED_STR_METHODS[name](obj)
        return getattr(obj, name)
    if name in _MUTATING_METHODS and hasattr(obj, name):
        return _Undefined(
            f"calling {type(obj).__name__}.{name}() is not allowed: chat templates cannot modify "
            "their inputs",
            unsafe=True,
        )
    if isinstance(obj, Mapping):
        try:
            return obj[name]
        except (KeyError, TypeError):
            pass
    return _Undefined(f"{_type_name(obj)} has no attribute {name!r}")


def _getitem(obj: Any, key: Any) -> Any:
    """``obj[key]`` with Jinja's rules (item first, then attribute for str keys)."""
    if isinstance(obj, _Undefined):
        obj.fail()
    if isinstance(obj, (str, list, tuple, Mapping, range)):
        try:
            return obj[key]
        except (LookupError, TypeError, ValueError):
            pass
    if isinstance(key, str):
        return _getattr(obj, key)
    return _Undefined(f"{_type_name(obj)} has no element {key!r}")


def _iterate(value: Any) -> list:
    """The items a for loop (or unpacking) sees."""
    if isinstance(value, _Undefined):
        return []
    if isinstance(value, (_Namespace, _Loop, _Macro, Number)) or value is None:
        raise _RuntimeFailure(f"{_type_name(value)} is not iterable")
    try:
        return list(value)  # dict -> keys, str -> characters
    except TypeError:
        raise _RuntimeFailure(f"{_type_name(value)} is not iterable") from None


def _to_str(value: Any) -> str:
    return value if type(value) is str else str(value)


# ============================================================================ globals


def _raise_exception(message: Any = "") -> None:
    # Recognised by the evaluator (which attaches the position); this body is
    # only reached if a filter such as map() calls it indirectly.
    raise _error(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _range(*args: Any) -> range:
    rng = range(*args)
    if len(rng) > _MAX_RANGE:
        raise _RuntimeFailure(f"range too big: the sandbox allows at most {_MAX_RANGE} items")
    return rng


def _namespace(*args: Any, **kwargs: Any) -> _Namespace:
    return _Namespace(dict(*args, **kwargs))


def _dict(*args: Any, **kwargs: Any) -> dict:
    return dict(*args, **kwargs)


def _joiner(sep: str = ", "):
    used = []

    def joiner() -> str:
        if used:
            return sep
        used.append(True)
        return ""

    return joiner


_GLOBALS = {
    "range": _range,
    "dict": _dict,
    "namespace": _namespace,
    "joiner": _joiner,
    "raise_exception": _raise_exception,
    "strftime_now": _strftime_now,
}


# ============================================================================ filters


def _ignore_case(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _attribute_parts(attribute: Any) -> list:
    if attribute is None:
        return []
    if isinstance(attribute, str):
        return [int(p) if p.isdigit() else p for p in attribute.split(".")]
    return [attribute]


def _attrgetter(attribute: Any, postprocess=None, default: Any = None):
    """Jinja's make_attrgetter: "a.b.0" walks items/attributes."""
    parts = _attribute_parts(attribute)

    def get(item: Any) -> Any:
        for part in parts:
            item = _getitem(item, part)
            if default is not None and isinstance(item, _Undefined):
                item = default
        return postprocess(item) if postprocess is not None else item

    return get


def _multi_attrgetter(attribute: Any, postprocess=None):
    attrs = attribute.split(",") if isinstance(attribute, str) else [attribute]
    getters = [_attrgetter(a, postprocess) for a in attrs]
    return lambda item: [g(item) for g in getters]


def _f_default(value, default_value="", boolean=False):
    if isinstance(value, _Undefined) or (boolean and not value):
        return default_value
    return value


def _f_length(value):
    return len(value)


def _f_first(seq):
    for item in seq:
        return item
    return _Undefined("no first item, sequence was empty")


def _f_last(seq):
    if isinstance(seq, _Undefined):
        return _Undefined("no last item, sequence was empty")
    for item in reversed(seq):
        return item
    return _Undefined("no last item, sequence was empty")


def _f_join(value, d="", attribute=None):
    if attribute is not None:
        value = map(_attrgetter(attribute), value)
    return str(d).join(map(str, value))


def _f_replace(s, old, new, count=None):
    return _safe_replace(str(s), str(old), str(new), -1 if count is None else count)


def _f_title(s):
    # Not str.title(): Jinja capitalises after whitespace, '-', and brackets.
    return "".join(
        item[0].upper() + item[1:].lower() for item in re.split(r"([-\s({\[<]+)", str(s)) if item
    )


def _f_int(value, default=0, base=10):
    if isinstance(value, _Undefined):
        value.fail()
    try:
        if isinstance(value, str):
            return int(value, base)
        return int(value)
    except (TypeError, ValueError):
        try:  # "42.23"|int is 42
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return default


def _f_float(value, default=0.0):
    if isinstance(value, _Undefined):
        value.fail()
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _f_items(value):
    if isinstance(value, _Undefined):
        return iter(())
    if not isinstance(value, Mapping):
        raise _RuntimeFailure("the items filter needs a mapping")
    return iter(list(value.items()))


def _f_dictsort(value, case_sensitive=False, by="key", reverse=False):
    if by not in ("key", "value"):
        raise _RuntimeFailure('dictsort can only sort by "key" or "value"')
    index = 0 if by == "key" else 1
    if isinstance(value, _Undefined):
        value.fail()

    def key(item):
        v = item[index]
        return v if case_sensitive else _ignore_case(v)

    return sorted(value.items(), key=key, reverse=reverse)


def _f_sort(value, reverse=False, case_sensitive=False, attribute=None):
    key = _multi_attrgetter(attribute, None if case_sensitive else _ignore_case)
    return sorted(value, key=key, reverse=reverse)


def _f_unique(value, case_sensitive=False, attribute=None):
    getter = _attrgetter(attribute, None if case_sensitive else _ignore_case)
    seen = set()
    for item in value:
        key = getter(item)
        if key not in seen:
            seen.add(key)
            yield item


def _min_max(func, value, case_sensitive, attribute):
    items = list(value)
    if not items:
        return _Undefined("no aggregated item, sequence was empty")
    return func(items, key=_attrgetter(attribute, None if case_sensitive else _ignore_case))


def _f_min(value, case_sensitive=False, attribute=None):
    return _min_max(min, value, case_sensitive, attribute)


def _f_max(value, case_sensitive=False, attribute=None):
    return _min_max(max, value, case_sensitive, attribute)


def _f_sum(iterable, attribute=None, start=0):
    if attribute is not None:
        iterable = map(_attrgetter(attribute), iterable)
    return sum(iterable, start)


def _f_groupby(value, attribute, default=None, case_sensitive=False):
    key = _attrgetter(attribute, None if case_sensitive else _ignore_case, default=default)
    groups = [_GroupTuple((k, list(g))) for k, g in itertools.groupby(sorted(value, key=key), key)]
    if not case_sensitive:  # report the first item's original spelling as the grouper
        original = _attrgetter(attribute, default=default)
        groups = [_GroupTuple((original(g[1][0]), g[1])) for g in groups]
    return groups


def _f_reverse(value):
    if isinstance(value, str):
        return value[::-1]
    if isinstance(value, _Undefined):
        return iter(())
    try:
        return reversed(value)
    except TypeError:
        items = list(value)
        items.reverse()
        return items


def _f_list(value):
    return list(value)


def _f_tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers replaces Jinja's HTML-escaping tojson with this.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _f_indent(s, width=4, first=False, blank=False):
    if isinstance(s, _Undefined):
        s.fail()
    if not isinstance(s, str):
        raise _RuntimeFailure(f"indent needs a string, got {_type_name(s)}")
    indention = width if isinstance(width, str) else " " * width
    s += "\n"  # as in Jinja, so that splitlines keeps a trailing empty line
    if blank:
        rv = ("\n" + indention).join(s.splitlines())
    else:
        lines = s.splitlines()
        rv = lines.pop(0)
        if lines:
            rv += "\n" + "\n".join(indention + line if line else line for line in lines)
    return indention + rv if first else rv


def _f_round(value, precision=0, method="common"):
    if method == "common":
        return round(value, precision)
    if method not in ("ceil", "floor"):
        raise _RuntimeFailure("round method must be common, ceil or floor")
    func = math.ceil if method == "ceil" else math.floor
    return func(value * (10**precision)) / (10**precision)


def _f_format(value, *args, **kwargs):
    if args and kwargs:
        raise _RuntimeFailure("format can't take positional and keyword arguments at once")
    return str(value) % (kwargs or args)


def _f_truncate(s, length=255, killwords=False, end="...", leeway=None):
    leeway = 5 if leeway is None else leeway
    if len(s) <= length + leeway:
        return s
    if killwords:
        return s[: length - len(end)] + end
    return s[: length - len(end)].rsplit(" ", 1)[0] + end


def _f_wordwrap(s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True):
    import textwrap

    wrapstring = "\n" if wrapstring is None else wrapstring
    return wrapstring.join(
        wrapstring.join(
            textwrap.wrap(
                line,
                width=width,
                expand_tabs=False,
                replace_whitespace=False,
                break_long_words=break_long_words,
                break_on_hyphens=break_on_hyphens,
            )
        )
        for line in str(s).splitlines()
    )


def _f_escape(value):
    return (
        str(value)
        .replace("&", "&amp;")
        .replace(">", "&gt;")
        .replace("<", "&lt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def _f_batch(value, linecount, fill_with=None):
    tmp = []
    for item in value:
        if len(tmp) == linecount:
            yield tmp
            tmp = []
        tmp.append(item)
    if tmp:
        if fill_with is not None and len(tmp) < linecount:
            tmp += [fill_with] * (linecount - len(tmp))
        yield tmp


def _f_attr(obj, name):
    # Like obj.name but without falling back to obj[name].
    if isinstance(obj, (_Namespace, _Loop)):
        return _getattr(obj, name)
    if isinstance(obj, Mapping) and name not in _MAPPING_METHODS:
        return _Undefined(f"{_type_name(obj)} has no attribute {name!r}")
    return _getattr(obj, name)


def _f_map(value, *args, **kwargs):
    # A generator, like Jinja's: always truthy, and |length on it fails.
    if value:
        if not args and "attribute" in kwargs:
            attribute = kwargs.pop("attribute")
            default = kwargs.pop("default", None)
            if kwargs:
                raise _RuntimeFailure(f"unexpected keyword argument {next(iter(kwargs))!r}")
            func = _attrgetter(attribute, default=default)
        else:
            if not args:
                raise _RuntimeFailure("map requires a filter argument")
            name, rest = args[0], args[1:]
            filt = _FILTERS.get(name)
            if filt is None:
                raise _RuntimeFailure(f"no filter named {name!r}")

            def func(item):
                return filt(item, *rest, **kwargs)

        for item in value:
            yield func(item)


def _select_or_reject(value, args, kwargs, select: bool, lookup_attr: bool):
    if value:
        if lookup_attr:
            if not args:
                raise _RuntimeFailure("missing parameter for attribute name")
            transform = _attrgetter(args[0])
            args = args[1:]
        else:

            def transform(x):
                return x

        if args:
            test = _TESTS.get(args[0])
            if test is None:
                raise _RuntimeFailure(f"no test named {args[0]!r}")
            rest = args[1:]

            def check(item):
                return test(item, *rest, **kwargs)
        else:
            check = bool
        for item in value:
            if bool(check(transform(item))) == select:
                yield item


def _f_select(value, *args, **kwargs):
    return _select_or_reject(value, args, kwargs, True, False)


def _f_reject(value, *args, **kwargs):
    return _select_or_reject(value, args, kwargs, False, False)


def _f_selectattr(value, *args, **kwargs):
    return _select_or_reject(value, args, kwargs, True, True)


def _f_rejectattr(value, *args, **kwargs):
    return _select_or_reject(value, args, kwargs, False, True)


_FILTERS = {
    "abs": abs,
    "attr": _f_attr,
    "batch": _f_batch,
    "capitalize": lambda s: str(s).capitalize(),
    "center": lambda s, width=80: _guard_width(str(s).center)(width),
    "count": _f_length,
    "d": _f_default,
    "default": _f_default,
    "dictsort": _f_dictsort,
    "e": _f_escape,
    "escape": _f_escape,
    "first": _f_first,
    "float": _f_float,
    "format": _f_format,
    "groupby": _f_groupby,
    "indent": _f_indent,
    "int": _f_int,
    "items": _f_items,
    "join": _f_join,
    "last": _f_last,
    "length": _f_length,
    "list": _f_list,
    "lower": lambda s: str(s).lower(),
    "map": _f_map,
    "max": _f_max,
    "min": _f_min,
    "reject": _f_reject,
    "rejectattr": _f_rejectattr,
    "replace": _f_replace,
    "reverse": _f_reverse,
    "round": _f_round,
    "safe": str,
    "select": _f_select,
    "selectattr": _f_selectattr,
    "sort": _f_sort,
    "string": str,
    "sum": _f_sum,
    "title": _f_title,
    "tojson": _f_tojson,
    "trim": lambda s, chars=None: str(s).strip(chars),
    "truncate": _f_truncate,
    "unique": _f_unique,
    "upper": lambda s: str(s).upper(),
    "wordcount": lambda s: len(re.findall(r"\w+", str(s))),
    "wordwrap": _f_wordwrap,
}


# ============================================================================ tests


def _t_sequence(value):
    if isinstance(value, _Undefined):
        return True  # Jinja's Undefined has __len__ and __getitem__
    try:
        len(value)
        value.__getitem__  # noqa: B018
    except Exception:
        return False
    return True


def _t_iterable(value):
    if isinstance(value, (_Undefined, str)):
        return True
    if isinstance(value, (_Namespace, _Loop, _Macro)):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True


_TESTS = {
    "defined": lambda v: not isinstance(v, _Undefined),
    "undefined": lambda v: isinstance(v, _Undefined),
    "none": lambda v: v is None,
    "boolean": lambda v: v is True or v is False,
    "false": lambda v: v is False,
    "true": lambda v: v is True,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, float),
    "number": lambda v: isinstance(v, Number),
    "string": lambda v: isinstance(v, str),
    "mapping": lambda v: isinstance(v, Mapping),
    "sequence": _t_sequence,
    "iterable": _t_iterable,
    "callable": lambda v: isinstance(v, _Undefined) or callable(v),
    "sameas": lambda v, other: v is other,
    "escaped": lambda v: False,
    "in": lambda v, seq: v in seq,
    "odd": lambda v: v % 2 == 1,
    "even": lambda v: v % 2 == 0,
    "divisibleby": lambda v, num: v % num == 0,
    "lower": lambda v: str(v).islower(),
    "upper": lambda v: str(v).isupper(),
    "filter": lambda v: v in _FILTERS,
    "test": lambda v: v in _TESTS,
    "eq": lambda a, b: a == b,
    "equalto": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lessthan": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "greaterthan": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}
# Jinja also registers the comparison operators themselves: select('>', 1).
_TESTS.update({"==": _TESTS["eq"], "!=": _TESTS["ne"], "<": _TESTS["lt"], "<=": _TESTS["le"],
               ">": _TESTS["gt"], ">=": _TESTS["ge"]})


# ============================================================================ evaluator

_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
}


def _arith(op: str, left: Any, right: Any) -> Any:
    for value in (left, right):
        if isinstance(value, _Undefined):
            value.fail()
    if op == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            if len(left) + len(right) > _MAX_SIZE:
                raise _RuntimeFailure(f"result too large (over {_MAX_SIZE} items)")
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        # Guard 'x' * 10**9 style memory bombs.
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                if len(seq) * count > _MAX_SIZE:
                    raise _RuntimeFailure(f"result too large (over {_MAX_SIZE} items)")
        return left * right
    if op == "/":
        return left / right
    if op == "//":
        return left // right
    if op == "%":
        return left % right
    if op == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if right * abs(left).bit_length() > 100_000:
                raise _RuntimeFailure("power result is too large")
        return left**right
    raise AssertionError(op)  # pragma: no cover


class _Renderer:
    """Tree-walking evaluator.  One instance per render() call (it holds the
    step budget and macro depth)."""

    def __init__(self, source: str):
        self.source = source
        self.steps = 0
        self.macro_depth = 0
        self.output_chars = 0
        self.exec_table = {
            _Output: self.exec_output,
            _Print: self.exec_print,
            _If: self.exec_if,
            _For: self.exec_for,
            _Set: self.exec_set,
            _SetBlock: self.exec_set_block,
            _MacroDef: self.exec_macro_def,
            _With: self.exec_with,
            _FilterBlock: self.exec_filter_block,
            _Scoped: self.exec_scoped,
            _BreakStmt: self.exec_break,
            _ContinueStmt: self.exec_continue,
        }
        self.eval_table = {
            _Const: lambda node, scope: node.value,
            _Name: lambda node, scope: scope.lookup(node.name),
            _ListLit: lambda node, scope: [self.eval(i, scope) for i in node.items],
            _TupleLit: lambda node, scope: tuple(self.eval(i, scope) for i in node.items),
            _DictLit: self.eval_dict,
            _Getattr: lambda node, scope: _getattr(self.eval(node.node, scope), node.attr),
            _Getitem: self.eval_getitem,
            _Call: self.eval_call,
            _Filter: self.eval_filter,
            _Test: self.eval_test,
            _Not: lambda node, scope: not self.eval(node.node, scope),
            _Neg: self.eval_unary,
            _Pos: self.eval_unary,
            _BinOp: lambda n, s: _arith(n.op, self.eval(n.left, s), self.eval(n.right, s)),
            _And: lambda n, s: self.eval(n.left, s) and self.eval(n.right, s),
            _Or: lambda n, s: self.eval(n.left, s) or self.eval(n.right, s),
            _Concat: lambda n, s: _check_size("".join(_to_str(self.eval(i, s)) for i in n.nodes)),
            _Compare: self.eval_compare,
            _CondExpr: self.eval_condexpr,
        }

    def error(self, message: str, node) -> ChatTemplateError:
        return _error(message, self.source, node.pos)

    def tick(self, node) -> None:
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise self.error("template exceeded its execution budget (infinite loop?)", node)

    # ---------------------------------------------------------------- statements
    def exec_body(self, body: list, scope: _Scope, out: list) -> None:
        table = self.exec_table
        for node in body:
            table[type(node)](node, scope, out)

    def emit(self, text: str, node, out: list) -> None:
        self.output_chars += len(text)
        if self.output_chars > _MAX_OUTPUT:
            raise self.error(f"template output exceeds {_MAX_OUTPUT} characters", node)
        out.append(text)

    def exec_output(self, node, scope, out):
        self.emit(node.text, node, out)

    def exec_print(self, node, scope, out):
        self.emit(_to_str(self.eval(node.expr, scope)), node, out)

    def exec_if(self, node, scope, out):
        for test, body in node.branches:
            if self.eval(test, scope):
                self.exec_body(body, scope, out)
                return
        self.exec_body(node.else_, scope, out)

    def exec_for(self, node, scope, out):
        items = self.guard(node.iter, _iterate, self.eval(node.iter, scope))
        if node.cond is not None:  # {% for x in xs if cond %}: filter before `loop` exists
            kept = []
            for item in items:
                inner = _Scope(scope)
                self.assign(node.target, item, inner)
                if self.eval(node.cond, inner):
                    kept.append(item)
            items = kept
        if not items:
            self.exec_body(node.else_, _Scope(scope), out)
            return
        loop = _Loop(items)
        for index, item in enumerate(items):
            self.tick(node)
            inner = _Scope(scope)
            loop.index0 = index
            self.assign(node.target, item, inner)
            inner.vars["loop"] = loop
            try:
                self.exec_body(node.body, inner, out)
            except _Break:
                break
            except _Continue:
                continue

    def exec_set(self, node, scope, out):
        self.assign(node.target, self.eval(node.expr, scope), scope)

    def exec_set_block(self, node, scope, out):
        buf: list[str] = []
        self.exec_body(node.body, _Scope(scope), buf)
        value: Any = "".join(buf)
        if node.filter is not None:
            value = self.apply_filter_chain(node.filter, value, scope)
        self.assign(node.target, value, scope)

    def exec_macro_def(self, node, scope, out):
        scope.vars[node.name] = _Macro(node, scope, self)

    def exec_with(self, node, scope, out):
        inner = _Scope(scope)
        values = [self.eval(v, scope) for v in node.values]  # evaluated in the outer scope
        for target, value in zip(node.targets, values):
            self.assign(target, value, inner)
        self.exec_body(node.body, inner, out)

    def exec_filter_block(self, node, scope, out):
        buf: list[str] = []
        self.exec_body(node.body, _Scope(scope), buf)
        self.emit(_to_str(self.apply_filter_chain(node.filter, "".join(buf), scope)), node, out)

    def exec_scoped(self, node, scope, out):
        self.exec_body(node.body, _Scope(scope), out)

    def exec_break(self, node, scope, out):
        raise _Break

    def exec_continue(self, node, scope, out):
        raise _Continue

    def assign(self, target, value: Any, scope: _Scope) -> None:
        if isinstance(target, _Name):
            scope.vars[target.name] = value
        elif isinstance(target, _TupleLit):
            values = self.guard(target, _iterate, value)
            if len(values) != len(target.items):
                raise self.error(
                    f"cannot unpack {len(values)} values into {len(target.items)} names", target
                )
            for sub, item in zip(target.items, values):
                self.assign(sub, item, scope)
        else:  # _NSRef
            ns = scope.lookup(target.name)
            if not isinstance(ns, _Namespace):
                raise self.error(
                    f"cannot assign attribute on non-namespace object '{target.name}'", target
                )
            ns.attrs[target.attr] = value

    def call_macro(self, macro: _Macro, args: tuple, kwargs: dict) -> str:
        node = macro.node
        if len(args) > len(node.params) and not node.varargs:
            raise _RuntimeFailure(
                f"macro {node.name!r} takes not more than {len(node.params)} argument(s)"
            )
        kwargs = dict(kwargs)
        scope = _Scope(macro.closure)
        for index, pname in enumerate(node.params):
            if index < len(args):
                if pname in kwargs:
                    raise _RuntimeFailure(f"macro {node.name!r} got multiple values for {pname!r}")
                value = args[index]
            elif pname in kwargs:
                value = kwargs.pop(pname)
            elif pname in node.defaults:
                value = self.eval(node.defaults[pname], scope)  # may use earlier params
            else:
                value = _Undefined(f"parameter {pname!r} was not provided")
            scope.vars[pname] = value
        if node.varargs:
            scope.vars["varargs"] = tuple(args[len(node.params) :])
        if node.kwargs:
            scope.vars["kwargs"] = kwargs
        elif kwargs:
            raise _RuntimeFailure(
                f"macro {node.name!r} takes no keyword argument {next(iter(kwargs))!r}"
            )
        self.tick(node)
        if self.macro_depth >= _MAX_MACRO_DEPTH:
            raise _RuntimeFailure("macro calls nested too deeply (unbounded recursion?)")
        self.macro_depth += 1
        try:
            out: list[str] = []
            self.exec_body(node.body, scope, out)
        finally:
            self.macro_depth -= 1
        return "".join(out)

    # ---------------------------------------------------------------- expressions
    def eval(self, node, scope: _Scope) -> Any:
        try:
            return self.eval_table[type(node)](node, scope)
        except ChatTemplateError:
            raise
        except _RuntimeFailure as e:
            raise self.error(str(e), node) from None
        except RecursionError:
            raise self.error("template nested too deeply", node) from None
        except (TypeError, ValueError, LookupError, ArithmeticError, AttributeError) as e:
            raise self.error(f"{type(e).__name__}: {e}", node) from None

    def guard(self, node, func, *args):
        """Call a helper, attributing its failure to ``node``."""
        try:
            return func(*args)
        except _RuntimeFailure as e:
            raise self.error(str(e), node) from None

    def eval_dict(self, node, scope):
        return {self.eval(k, scope): self.eval(v, scope) for k, v in node.pairs}

    def eval_getitem(self, node, scope):
        obj = self.eval(node.node, scope)
        arg = node.arg
        if isinstance(arg, _Slice):
            parts = [None if p is None else self.eval(p, scope) for p in (arg.start, arg.stop, arg.step)]
            key: Any = slice(*parts)
        else:
            key = self.eval(arg, scope)
        return _getitem(obj, key)

    def eval_call(self, node, scope):
        func = self.eval(node.node, scope)
        args = [self.eval(a, scope) for a in node.args]
        kwargs = {k: self.eval(v, scope) for k, v in node.kwargs.items()}
        if isinstance(func, _Undefined):
            func.fail()
        if func is _raise_exception:
            # The template's own error message, verbatim, with a position.
            err = _error(str(args[0]) if args else "raise_exception() called")
            err.line, err.column = _line_col(self.source, node.pos)
            raise err
        if not callable(func) or isinstance(func, type):
            raise _RuntimeFailure(f"{_type_name(func)} is not callable")
        return _check_size(func(*args, **kwargs))

    def eval_filter(self, node, scope):
        value = self.eval(node.node, scope)
        return self.call_filter(node, value, scope)

    def call_filter(self, node, value, scope):
        func = _FILTERS.get(node.name)
        if func is None:
            raise _RuntimeFailure(f"no filter named {node.name!r} (not supported by webinfer)")
        args = [self.eval(a, scope) for a in node.args]
        kwargs = {k: self.eval(v, scope) for k, v in node.kwargs.items()}
        return _check_size(func(value, *args, **kwargs))

    def apply_filter_chain(self, node, value, scope):
        """Filters of a block (``{% filter %}``, ``{% set x | f %}``) applied to
        the rendered body; the chain's innermost node is None."""
        if node.node is not None:
            value = self.apply_filter_chain(node.node, value, scope)
        try:
            return self.call_filter(node, value, scope)
        except ChatTemplateError:
            raise
        except _RuntimeFailure as e:
            raise self.error(str(e), node) from None
        except (TypeError, ValueError, LookupError, ArithmeticError, AttributeError) as e:
            raise self.error(f"{type(e).__name__}: {e}", node) from None

    def eval_test(self, node, scope):
        func = _TESTS.get(node.name)
        if func is None:
            raise _RuntimeFailure(f"no test named {node.name!r} (not supported by webinfer)")
        value = self.eval(node.node, scope)
        args = [self.eval(a, scope) for a in node.args]
        kwargs = {k: self.eval(v, scope) for k, v in node.kwargs.items()}
        return func(value, *args, **kwargs)

    def eval_unary(self, node, scope):
        value = self.eval(node.node, scope)
        if isinstance(value, _Undefined):
            value.fail()
        return -value if isinstance(node, _Neg) else +value

    def eval_compare(self, node, scope):
        left = self.eval(node.expr, scope)
        for op, right_node in node.ops:
            right = self.eval(right_node, scope)
            if op not in ("==", "!=", "in", "not in"):
                for value in (left, right):
                    if isinstance(value, _Undefined):
                        value.fail()
            if not _COMPARE[op](left, right):
                return False
            left = right
        return True

    def eval_condexpr(self, node, scope):
        if self.eval(node.test, scope):
            return self.eval(node.expr1, scope)
        if node.expr2 is None:
            return _Undefined("the inline if-expression was false and has no else")
        return self.eval(node.expr2, scope)


# ============================================================================ public API


class ChatTemplate:
    """A parsed chat template, rendered like transformers' apply_chat_template.

    >>> t = ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")
    >>> t.render([{"role": "user", "content": "hi"}], add_generation_prompt=False)
    '<user>hi'

    Parsing happens once, here; syntax this engine cannot handle raises
    :class:`~webinfer.errors.ChatTemplateError` with ``line``/``column``.
    Filters or tests that webinfer does not implement are *not* a parse
    error (a template may only use them on paths that never run); they are
    listed in :attr:`unsupported` and fail with a ChatTemplateError only if
    rendering reaches them.
    """

    def __init__(self, source: str):
        if not isinstance(source, str):
            raise _error(f"a chat template must be a str, not {type(source).__name__}")
        self.source = source
        self._text = _normalize_source(source)
        parser = _Parser(_tokenize(self._text), self._text)
        try:
            self._body = parser.parse_template()
        except RecursionError:
            raise _error("chat template is nested too deeply to parse") from None
        self.unsupported: tuple[str, ...] = tuple(parser.unsupported)

    def render(
        self,
        messages: list[dict],
        *,
        add_generation_prompt: bool = True,
        bos_token: str = "",
        eos_token: str = "",
        **extra: Any,
    ) -> str:
        """Render the conversation.

        ``extra`` becomes template variables too (``tools``, ``documents``,
        ``enable_thinking``, other special tokens...).  As in transformers,
        ``tools`` and ``documents`` are ``None`` unless given, so ``tools is
        defined`` is true but ``{% if tools %}`` is false.
        """
        context = {"tools": None, "documents": None}
        context.update(extra)
        context.update(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
        renderer = _Renderer(self._text)
        scope = _Scope(_Scope(None, dict(_GLOBALS)), context)
        out: list[str] = []
        try:
            renderer.exec_body(self._body, scope, out)
        except RecursionError:
            raise _error("chat template nested too deeply") from None
        return "".join(out)

    __call__ = render

    def __repr__(self) -> str:
        return f"ChatTemplate({self.source[:40]!r}{'...' if len(self.source) > 40 else ''})"


@lru_cache(maxsize=16)
def _cached(source: str) -> ChatTemplate:
    return ChatTemplate(source)


def render_chat(source: str, messages: list[dict], **kw: Any) -> str:
    """Parse (cached) and render ``source``; keywords as for :meth:`ChatTemplate.render`."""
    return _cached(source).render(messages, **kw)
