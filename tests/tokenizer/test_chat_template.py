"""Chat templates: webinfer's Jinja subset must render what jinja2 renders.

jinja2 is the oracle, configured the way transformers' apply_chat_template
configures it (ImmutableSandboxedEnvironment with trim_blocks/lstrip_blocks,
loop controls, the ``generation`` tag, a json.dumps ``tojson`` and the
``raise_exception``/``strftime_now`` globals, ``tools``/``documents`` None
unless given).  Every comparison is "same output" or "both refuse"; when the
template itself calls raise_exception the messages must match too.
"""

from __future__ import annotations

import ast
import json
import mmap
import os
import random
from datetime import datetime
from pathlib import Path

import pytest

jinja2 = pytest.importorskip("jinja2")
import jinja2.ext  # noqa: E402
import jinja2.nodes  # noqa: E402
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

from webinfer.errors import ChatTemplateError  # noqa: E402
from webinfer.tokenizer import chat_template as ct  # noqa: E402
from webinfer.tokenizer.chat_template import ChatTemplate, render_chat  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data" / "chat_templates"
CACHE = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")
VOCAB_DIR = CACHE / "testdata" / "vocab"


# ============================================================================ the oracle


class _Generation(jinja2.ext.Extension):
    """transformers' AssistantTracker, minus the index tracking."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


_ORACLE = ImmutableSandboxedEnvironment(
    trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
)
_ORACLE.filters["tojson"] = _tojson
_ORACLE.globals["raise_exception"] = _raise_exception
_ORACLE.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)


def _jinja(template, messages, add_generation_prompt=True, bos_token="<s>", eos_token="</s>", **extra):
    """("ok", text) or ("raise", message) or ("error", description), from jinja2."""
    context = {"tools": None, "documents": None, **extra}
    try:
        if isinstance(template, str):
            template = _ORACLE.from_string(template)
        return "ok", template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **context,
        )
    except jinja2.exceptions.TemplateError as e:
        if type(e) is jinja2.exceptions.TemplateError:  # raise_exception() from the template
            return "raise", str(e)
        return "error", f"{type(e).__name__}: {e}"
    except Exception as e:  # TypeError etc. from Python operations
        return "error", f"{type(e).__name__}: {e}"


def _ours(template, messages, add_generation_prompt=True, bos_token="<s>", eos_token="</s>", **extra):
    try:
        if isinstance(template, str):
            template = ChatTemplate(template)
        return "ok", template.render(
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **extra,
        )
    except ChatTemplateError as e:
        return "error", str(e)


def _same(expected, got) -> bool:
    if expected[0] == "ok" or got[0] == "ok":
        return expected == got
    if expected[0] == "raise":  # the template's own message must come through verbatim
        return got[1] == expected[1]
    return True  # both refuse


# ============================================================================ conversations

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "City name, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"},
                    "days": {"type": "integer", "description": "Days ahead", "nullable": True},
                    "options": {
                        "type": "object",
                        "description": "Extra options",
                        "properties": {"detail": {"type": "boolean", "description": "More detail"}},
                        "required": ["detail"],
                    },
                    "hours": {"type": "array", "description": "Hours", "items": {"type": "integer"}},
                },
                "required": ["location"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "add", "description": "Add two numbers", "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        }},
    },
]
COHERE_TOOLS = [
    {
        "name": "internet_search",
        "description": "Returns a list of relevant document snippets for a textual query",
        "parameter_definitions": {
            "query": {"description": "Query to search the internet with", "type": "str", "required": True},
            "limit": {"description": "How many results", "type": "int", "required": False},
        },
    }
]
DOCUMENTS = [
    {"title": "Tall penguins", "text": "Emperor penguins are the tallest growing up to 122 cm."},
    {"title": "Penguin habitats", "text": "Emperor penguins only live in Antarctica."},
]

CONVERSATIONS = {
    "system+user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ],
    "user": [{"role": "user", "content": "  What is 2+2?\n"}],
    "multi-turn": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": " Hello! How can I help? "},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "system+multi-turn": [
        {"role": "system", "content": "Be brief.\nReally brief."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "<think>\nThey want one.\n</think>\n\nBlue."},
        {"role": "user", "content": "Another, with ünïcödé 👋 and \"quotes\" & <tags>."},
        {"role": "assistant", "content": "Red."},
    ],
    "tool-calls": [
        {"role": "system", "content": "Use tools when useful."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call12345",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "22 degrees"},
        {"role": "assistant", "content": "It is 22 degrees in Paris."},
    ],
    "multimodal": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What is this? "}]},
    ],
    "assistant-first": [{"role": "assistant", "content": "I speak first."}],
}
EXTRAS = {
    "plain": {},
    "tools": {"tools": TOOLS},
    "cohere": {"tools": COHERE_TOOLS, "documents": DOCUMENTS},
    "no-thinking": {"enable_thinking": False},
}


def _check_template(source: str) -> int:
    """Render ``source`` over every conversation/extra/generation-prompt combination
    with both engines; returns how many combinations rendered (not refused)."""
    oracle = _ORACLE.from_string(source)
    ours = ChatTemplate(source)
    rendered = 0
    for conv_name, messages in CONVERSATIONS.items():
        for extra_name, extra in EXTRAS.items():
            for agp in (True, False):
                expected = _jinja(oracle, messages, add_generation_prompt=agp, **extra)
                got = _ours(ours, messages, add_generation_prompt=agp, **extra)
                assert _same(expected, got), (
                    f"conversation={conv_name} extra={extra_name} add_generation_prompt={agp}\n"
                    f"jinja2: {expected!r}\nours:   {got!r}"
                )
                rendered += got[0] == "ok"
    return rendered


# ============================================================================ real templates


def test_default_model_template(default_gguf):
    source = default_gguf.metadata["tokenizer.chat_template"]
    assert _check_template(source) > 0
    # And an absolute check, independent of the oracle: SmolLM2 is ChatML.
    text = render_chat(source, [{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def _vocab_files_with_templates() -> list[Path]:
    # Decoding a vocab GGUF's token arrays takes seconds; files that cannot
    # hold the key are skipped with a cheap byte search instead.
    found = []
    for path in sorted(VOCAB_DIR.glob("ggml-vocab-*.gguf")):
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m.find(b"tokenizer.chat_template") != -1:
                found.append(path)
    return found


def _templates_in(path: Path, cache) -> dict[str, str]:
    """Every ``tokenizer.chat_template*`` string in a GGUF, read with webinfer's
    reader (memoised in pytest's cache, keyed on size and mtime)."""
    stat = path.stat()
    key = f"webinfer/chat_templates/{path.name}"
    stamp = [stat.st_size, stat.st_mtime_ns]
    hit = cache.get(key, None) if cache is not None else None
    if hit and hit.get("stamp") == stamp:
        return hit["templates"]
    from webinfer.formats.gguf import GGUFFile

    g = GGUFFile.open(path)
    try:
        templates = {
            k: v for k, v in g.metadata.items() if k.startswith("tokenizer.chat_template") and isinstance(v, str)
        }
    finally:
        g.close()
    if cache is not None:
        cache.set(key, {"stamp": stamp, "templates": templates})
    return templates


@pytest.mark.parametrize("path", _vocab_files_with_templates(), ids=lambda p: p.name)
def test_vocab_file_templates(path, request):
    templates = _templates_in(path, getattr(request.config, "cache", None))  # None: -p no:cacheprovider
    assert templates, f"{path.name} mentions tokenizer.chat_template but has none"
    for key, source in templates.items():
        try:
            assert _check_template(source) > 0, f"{key}: nothing rendered"
        except AssertionError as e:
            raise AssertionError(f"{path.name} {key}: {e}") from None


KNOWN_TEMPLATES = sorted(p.name for p in DATA.glob("*.jinja"))


def test_known_templates_present():
    expected = {"chatml_qwen2", "llama3_instruct", "llama2_chat", "mistral_instruct", "gemma", "phi3", "zephyr"}
    assert expected <= {Path(n).stem for n in KNOWN_TEMPLATES}


@pytest.mark.parametrize("name", KNOWN_TEMPLATES)
def test_known_template(name):
    source = (DATA / name).read_text(encoding="utf-8")
    assert _check_template(source) > 0


def test_template_errors_keep_their_message():
    # Llama-2 insists on alternating roles and says so with raise_exception.
    source = (DATA / "llama2_chat.jinja").read_text(encoding="utf-8")
    with pytest.raises(ChatTemplateError) as info:
        render_chat(source, CONVERSATIONS["assistant-first"])
    assert str(info.value) == "Conversation roles must alternate user/assistant/user/assistant/..."
    assert info.value.line == 1 and info.value.column > 1
    assert isinstance(info.value, ValueError)


# ============================================================================ feature snippets

CONTEXT = {
    "s": "  Hello, World  ",
    "n": 7,
    "f": 2.5,
    "items": [3, 1, 2],
    "words": ["b", "A", "c", "a"],
    "d": {"b": 2, "a": 1, "C": 3},
    "people": [
        {"name": "Ann", "age": 31, "tags": ["x"]},
        {"name": "bob", "age": 25},
        {"name": "Cy", "age": 31, "tags": []},
    ],
    "nested": {"a": {"b": [10, 20, {"c": "deep"}]}},
    "empty": [],
    "nothing": None,
    "flag": True,
}

SNIPPETS = [
    # output and literals
    "{{ 'a' }}{{ \"b\" }}{{ 1 }}{{ 1.5 }}{{ 1_000 }}{{ 0x1f }}{{ 1e3 }}{{ true }}{{ False }}{{ none }}",
    "{{ [1, 'a', none, [true]] }} {{ {'a': 1, 'b': [2]} }} {{ (1, 2) }} {{ (1,) }} {{ () }}",
    "{{ 'a' 'b' }} {{ 'tab\\tnew\\nline \\'q\\' \\u00e9 \\x41 \\\\' }} {{ 'é' }}",
    "{{ n }}{{ nothing }}{{ missing }}{{ d }}{{ f }}{{ flag }}",
    # arithmetic / operators
    "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}",
    "{{ 'ab' * 3 }} {{ [1] + [2] }} {{ 'a' ~ 1 ~ none ~ missing ~ [1] }} {{ -n }} {{ +n }} {{ -1|abs }}",
    "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 2 >= 2 }} {{ 'b' <= 'a' }}",
    "{{ 'ell' in s }} {{ 4 in items }} {{ 'a' in d }} {{ 'z' not in d }} {{ not 'x' in 'abc' }} {{ missing in items }}",
    "{{ flag and n }} {{ nothing or 'dflt' }} {{ 0 or '' or 'last' }} {{ not nothing }} {{ missing and 1 }} {{ (missing or 'm') }}",
    "{{ 'yes' if flag else 'no' }} {{ 'yes' if nothing }}|{{ 'a' if false else 'b' if false else 'c' }}",
    # attribute / item access and slicing
    "{{ d.a }} {{ d['b'] }} {{ d.missing }} {{ nested.a.b[2].c }} {{ nested['a']['b'][-1]['c'] }} {{ items.1 }}",
    "{{ items[1:] }} {{ items[:-1] }} {{ items[::-1] }} {{ s[2:7] }} {{ items[::2] }} {{ items[5] }} {{ s[100:] }}",
    "{{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('z', 9) }} {{ d.get('z') }}",
    "{{ d['items'] }}|{{ people[0].name }}|{{ people[0]['tags'][0] }}|{{ nothing.attr }}|{{ n.real }}",
    # string methods
    "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.upper() }}|{{ s.lower() }}|{{ s.title() }}",
    "{{ s.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a b c'.split(' ', 1) }} {{ 'a-b-c'.rsplit('-', 1) }}",
    "{{ s.startswith('  He') }} {{ s.endswith(('x', '  ')) }} {{ s.replace('l', 'L', 2) }} {{ 'x'.join(['1', '2']) }}",
    "{{ 'abc'.find('c') }} {{ 'aXbX'.count('X') }} {{ ' x '.strip(' x') }} {{ 'Ab'.swapcase() }} {{ 'ab'.capitalize() }}",
    "{{ '{} and {name:>5}|{0}'.format(1, name='x') }} {{ '{:.2f}'.format(f) }} {{ 'ab'.replace('', '-') }} {{ 'x'.zfill(3) }}",
    "{{ 'line1\\nline2'.splitlines() }} {{ '42'.isdigit() }} {{ 'pre_x'.removeprefix('pre_') }} {{ 'x'.center(5) }}|",
    # filters
    "{{ s | trim }}|{{ s | length }}|{{ s | upper }}|{{ s | lower }}|{{ 'hello world-foo(bar' | title }}|{{ 'hELLO' | capitalize }}",
    "{{ missing | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }} {{ nothing | default('d') }} {{ missing | d('x') }}",
    "{{ items | first }} {{ items | last }} {{ empty | first }}|{{ items | join(', ') }} {{ people | join('/', attribute='name') }}",
    "{{ s | replace('l', 'L') }} {{ 3.7 | int }} {{ '42' | int }} {{ 'x' | int }} {{ 'x' | int(5) }} {{ '3.5' | float }} {{ '0x1A' | int(base=16) }}",
    "{{ items | string }} {{ 'abc' | list }} {{ d | list }} {{ d | items | list }} {{ missing | items | list }} {{ n | string | length }}",
    "{{ d | dictsort }} {{ d | dictsort(true) }} {{ d | dictsort(by='value', reverse=true) }}",
    "{{ items | sort }} {{ words | sort }} {{ words | sort(case_sensitive=true) }} {{ people | sort(attribute='age,name') | map(attribute='name') | list }}",
    "{{ words | unique | list }} {{ words | min }} {{ words | max }} {{ items | sum }} {{ people | sum(attribute='age') }} {{ empty | max }}",
    "{{ items | reverse | list }} {{ 'abc' | reverse }} {{ items | map('string') | join }} {{ words | map('upper') | list }}",
    "{{ people | map(attribute='tags', default=['-']) | list }} {{ people | map(attribute='name') | map('lower') | list }}",
    "{{ people | selectattr('age', 'equalto', 31) | map(attribute='name') | list }} {{ people | rejectattr('tags') | list | length }}",
    "{{ people | selectattr('tags', 'defined') | list | length }} {{ items | select('odd') | list }} {{ items | reject('>', 1) | list }}",
    "{{ items | select | list }} {{ [0, 1, '', 'a', none] | select | list }} {{ people | selectattr('name', 'in', ['Ann', 'Cy']) | list | length }}",
    "{{ d | tojson }} {{ 'é<>&\\'' | tojson }} {{ people[0] | tojson(indent=2) }} {{ d | tojson(sort_keys=true) }} {{ [1, 2] | tojson(separators=(',', ':')) }}",
    "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent('> ', blank=true) }}",
    "{{ 2.567 | round }} {{ 2.567 | round(2) }} {{ 2.5 | round(0, 'floor') }} {{ 2.1 | round(0, 'ceil') }} {{ -3 | abs }}",
    "{{ '%s and %d' | format('x', 3) }} {{ 'a b  c' | wordcount }} {{ 'x' | center(7) }}| {{ '<a href=\"x\">&</a>' | e }} {{ 'y' | safe }}",
    "{{ items | batch(2) | list }} {{ items | batch(2, 0) | list }} {{ 'long text here' | truncate(9, leeway=0) }} {{ d | attr('a') }}|",
    "{% for g in people | groupby('age') %}{{ g.grouper }}:{{ g.list | map(attribute='name') | join(',') }};{% endfor %}",
    "{% for age, group in people | groupby('age', default=0) %}{{ age }}={{ group | length }} {% endfor %}{{ words | groupby('lower') }}",
    "{% for k, g in words | groupby(0) %}{{ k }}{{ g }}{% endfor %}|{% for k, g in words | groupby(0, case_sensitive=true) %}{{ k }}{% endfor %}",
    "{{ (items | map('string') | list)[0] }} {{ items | count }} {{ [1, [2, 3]] | length }} {{ items | map('int') | sum }}",
    # tests
    "{{ missing is defined }} {{ missing is undefined }} {{ nothing is none }} {{ n is number }} {{ n is integer }} {{ f is float }}",
    "{{ s is string }} {{ d is mapping }} {{ items is sequence }} {{ s is sequence }} {{ d is iterable }} {{ n is iterable }}",
    "{{ flag is boolean }} {{ flag is true }} {{ false is false }} {{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }}",
    "{{ nothing is sameas none }} {{ 2 is in items }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ 1 is eq 1 }} {{ 2 is gt 1 }} {{ 2 is lessthan 1 }}",
    "{{ n is not none }} {{ not n is none }} {{ missing is not defined }} {{ 'upper' is filter }} {{ 'odd' is test }} {{ range is callable }}",
    "{{ missing is sequence }} {{ missing is iterable }} {{ missing | length }} {{ missing | list }} {{ missing == missing }} {{ missing != 1 }}",
    "{{ (items | map('string')) is sequence }} {{ items | map('string') is iterable }} {{ empty | select is defined }}",
    # statements
    "{% if n > 5 %}big{% elif n > 2 %}mid{% else %}small{% endif %} {% if missing %}x{% elif nothing %}y{% endif %}",
    "{% for i in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
    "{% for i in items %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('a', 'b') }}-{{ loop.depth }}|{% endfor %}",
    "{% for i in [1, 1, 2, 2, 1] %}{% if loop.changed(i) %}{{ i }}{% endif %}{% endfor %}",
    "{% for i in items if i > 1 %}{{ i }}:{{ loop.index }}/{{ loop.length }} {% else %}none{% endfor %}|{% for i in empty %}x{% else %}empty{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k in d %}{{ k }}{% endfor %} {% for c in 'abc' %}{{ c }}.{% endfor %}",
    "{% for a, (b, c) in [(1, (2, 3)), (4, (5, 6))] %}{{ a + b + c }} {% endfor %}{% for x in missing %}never{% endfor %}",
    "{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% for row in [[1, 2], [3]] %}{% for x in row %}{{ loop.index }}{% endfor %}/{{ loop.index }} {% endfor %}",
    "{% set x = 1 %}{% for i in [1, 2] %}[{{ x }}]{% set x = x + 10 %}[{{ x }}]{% endfor %}[{{ x }}]",
    "{% for i in [1, 2] %}{% if i == 1 %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}[{{ y }}]{% set i = 9 %}{% for i in [1] %}{% endfor %}{{ i }}",
    "{% set ns = namespace(total=0, seen=[]) %}{% for p in people %}{% set ns.total = ns.total + p.age %}{% set ns.seen = ns.seen + [p.name] %}{% endfor %}{{ ns.total }} {{ ns.seen }} {{ ns.missing }}",
    "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns['a'] }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, %}{{ t }}{% set c = (3, 4) %}{{ c[1] }}",
    "{% set block %}  inner {{ n }}  {% endset %}[{{ block }}]{% set up | upper | trim %} shout {% endset %}[{{ up }}]",
    "{% with a = 1, b = n %}{{ a + b }}{% set c = 3 %}{% endwith %}{{ a }}{{ c }}",
    "{% filter upper | replace('A', '4') %}abc {{ s }}{% endfilter %}",
    "{% raw %}{{ not parsed }}{% if %}{% endraw %}{%- raw -%}  {{ x }}  {%- endraw -%}|",
    "{% print 'printed' %} {% print n, f %}",
    "{% macro m(a, b=a+1, c='c') %}[{{ a }},{{ b }},{{ c }}]{% endmacro %}{{ m(1) }}{{ m(1, 5) }}{{ m(b=2, a=3) }}{{ m(c=0, a=0) }}",
    "{% macro v(a) %}[{{ a }}|{{ varargs }}|{{ kwargs }}]{% endmacro %}{{ v(1, 2, 3, k=4) }}{{ v() }}",
    "{% macro outer(x) %}<{{ inner(x) | trim }}>{% endmacro %}{% macro inner(y) %}  {{ y * 2 }}  {% endmacro %}{{ outer(21) }}",
    "{% macro fact(k) %}{{ 1 if k <= 1 else k * (fact(k - 1) | int) }}{% endmacro %}{{ fact(10) }}",
    "{% macro show() %}[{{ x }}]{% endmacro %}{% set x = 1 %}{{ show() }}{% set x = 2 %}{{ show() }}",
    "{% for i in [1] %}{% set y = 3 %}{% macro m() %}[{{ y }}|{{ i }}]{% endmacro %}{% set y = 4 %}{{ m() }}{% endfor %}",
    "{% set d2 = dict(a=1, b='x') %}{{ d2 }} {{ range(3) | list }} {{ range(1, 10, 3) | list }} {% set j = joiner('+') %}{% for i in items %}{{ j() }}{{ i }}{% endfor %}",
    "{{ raise_exception('never') if false else 'fine' }}",
    # whitespace control
    "a  {{- ' b ' -}}  c  {{ 'd' }}  e",
    "x\n  {% if true %}\n    y\n  {% endif %}\nz",
    "x\n  {%- if true -%}\n    y\n  {%- endif -%}\nz",
    "x\n  {%+ if true +%}\n    y\n  {%+ endif %}\nz",
    "a\n  {# comment #}\nb {#- c -#} c\n\t{#+ c +#}\nd",
    "{% for i in items %}\n  - {{ i }}\n{% endfor %}\n",
    "{% for i in items -%}\n  {{ i }}\n{%- endfor %}",
    "  {{ 'indented var is not lstripped' }}\n  {% set q = 1 %}  after\n",
    "line\r\nwindows\r\n{% if true %}\r\nx\r\n{% endif %}\r\n",
    "{{ {'a': {'b': 1}} }} {{ {'k': '}}'} }} {{ '{%' ~ '%}' }}",
    "trailing newline is dropped\n",
    "two trailing newlines keep one\n\n",
    # errors both engines must raise
    "{{ missing.attr }}",
    "{{ missing['x'] }}",
    "{{ missing + 1 }}",
    "{{ missing() }}",
    "{{ 'a' + 1 }}",
    "{{ 1 / 0 }}",
    "{{ items | dictsort }}",
    "{{ items.append(4) }}",
    "{{ d.update({'z': 1}) }}",
    "{{ d.pop('a') }}",
    "{{ raise_exception('custom message ' ~ n) }}",
    "{% set x.y = 1 %}",
    "{{ 'x' < 1 }}",
    "{{ missing < 1 }}",
    "{{ m() }}{% macro m(a) %}{% endmacro %}",
    "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}",
    "{% macro m(a) %}{% endmacro %}{{ m(b=2) }}",
    "{% for a, b in [1, 2] %}{% endfor %}",
    "{% for x in 5 %}{% endfor %}",
    "{{ range(100001) | length }}",
    "{{ items | map('string') | length }}",
    "{{ items | map('string') | last }}",
    "{{ nothing | tojson }}{{ missing | tojson }}",
    "{{ items | map('nosuchfilter') | list }}",
    "{{ ''.__class__ }}|{{ d.__class__ }}|{{ d._private }}",
    "{{ ''.__class__.__mro__ }}",
]


@pytest.mark.parametrize("source", SNIPPETS)
def test_snippet_matches_jinja(source):
    messages = [{"role": "user", "content": "hi"}]
    expected = _jinja(source, messages, **CONTEXT)
    got = _ours(source, messages, **CONTEXT)
    assert _same(expected, got), f"\njinja2: {expected!r}\nours:   {got!r}"


def _random_template(rng: random.Random, depth: int = 0) -> str:
    """Random text/tags with every whitespace-control variant, for the lexer."""
    texts = ["", " ", "  ", "\n", " \n ", "\t", "a", "b\n", "\n\n", "x \n  ", "\r\n", "  \n\t"]

    def sign(options=("", "", "-", "+")):
        return rng.choice(options)

    def tag(body):
        return "{%" + sign() + rng.choice(["", " ", "\n "]) + " " + body + " " + rng.choice(["", "\n"]) + sign() + "%}"

    out = []
    for _ in range(rng.randint(1, 5)):
        r = rng.random()
        if r < 0.35:
            out.append(rng.choice(texts))
        elif r < 0.5:
            out.append("{{" + sign(("", "-", "+")) + " 'v' " + sign(("", "-")) + "}}")
        elif r < 0.6:
            out.append("{#" + sign(("", "-", "+")) + " c\n " + sign(("", "-", "+")) + "#}")
        elif r < 0.7:
            out.append(tag("set x = 1"))
        elif r < 0.75:
            out.append(
                "{%" + sign(("", "-", "+")) + " raw " + sign(("", "-")) + "%}" + rng.choice(texts) + "{{ r }}"
                + rng.choice(texts) + "{%" + sign(("", "-", "+")) + " endraw " + sign(("", "-", "+")) + "%}"
            )
        elif depth < 2 and r < 0.88:
            cond = rng.choice(["true", "false"])
            other = tag("else") + _random_template(rng, depth + 1) if rng.random() < 0.5 else ""
            out.append(tag(f"if {cond}") + _random_template(rng, depth + 1) + other + tag("endif"))
        elif depth < 2:
            out.append(tag("for i in [1, 2]") + _random_template(rng, depth + 1) + tag("endfor"))
        else:
            out.append(rng.choice(texts))
    return "".join(out)


def test_whitespace_control_fuzz():
    rng = random.Random(1234)
    for _ in range(300):
        source = _random_template(rng) + rng.choice(["", "\n", "\n\n", " "])
        expected = _jinja(source, [])
        got = _ours(source, [])
        assert _same(expected, got), f"\nsource: {source!r}\njinja2: {expected!r}\nours:   {got!r}"


def _random_expression(rng: random.Random, depth: int = 0) -> str:
    """Random operators/filters/tests/conditionals, for precedence and semantics."""
    atoms = ["1", "2", "0", "-3", "2.5", "'a'", "'bc'", "x", "y", "s", "l", "d", "none", "true", "false",
             "missing", "[1, 2]", "(1, 'a')", "{'k': 1}", "l[0]", "d.k", "d['k']", "s[1:]", "l[-1]"]
    binary = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or"]
    filters = ["|length", "|string", "|upper", "|abs", "|int", "|list", "|first", "|default(7)", "|trim",
               "|join('-')", "|tojson", "|reverse|list", "|sort", "|float", "|round"]
    tests = [" is defined", " is none", " is string", " is number", " is odd", " is not even",
             " is sequence", " is mapping", " is divisibleby 2", " is in [1, 2]", " is sameas none"]
    sub = lambda: _random_expression(rng, depth + 1)  # noqa: E731
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice(atoms)
    if r < 0.55:
        return f"{sub()} {rng.choice(binary)} {sub()}"
    if r < 0.65:
        return rng.choice(["not ", "-", "+"]) + sub()
    if r < 0.75:
        return f"{sub()} if {sub()}" + (f" else {sub()}" if rng.random() < 0.7 else "")
    if r < 0.87:
        return sub() + rng.choice(filters)
    if r < 0.95:
        return sub() + rng.choice(tests)
    return f"({sub()})"


def test_expression_fuzz():
    rng = random.Random(99)
    context = {"x": 5, "y": -2, "s": "hello", "l": [3, 1, 2], "d": {"k": 1, "j": "z"}}
    for _ in range(400):
        source = "{{ " + _random_expression(rng) + " }}"
        expected = _jinja(source, [], **context)
        got = _ours(source, [], **context)
        assert _same(expected, got), f"\nsource: {source!r}\njinja2: {expected!r}\nours:   {got!r}"


def _random_program(rng: random.Random, depth=0, in_loop=False, macros=()) -> str:
    """Random nests of for/if/with/macro with assignments, for Jinja's scoping rules."""
    names = ["a", "b", "i"]
    out = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if r < 0.25:
            value = rng.choice(["1", "a ~ 'x'", "i", "b", "'s'", "(a or 0) ~ 1"])
            out.append(f"{{% set {rng.choice(names)} = {value} %}}")
        elif r < 0.45:
            out.append(f"[{{{{ {rng.choice(names)} }}}}]")
        elif r < 0.5:
            out.append(f"{{% set ns.c = ns.c ~ {rng.choice(names)} %}}")
        elif r < 0.55 and in_loop:
            out.append("{{ loop.index }}" + rng.choice(
                ["", "{% if loop.first %}{% continue %}{% endif %}", "{% if a == 1 %}{% break %}{% endif %}"]))
        elif r < 0.6 and macros:
            out.append(f"{{{{ {rng.choice(macros)}({rng.choice(['', '1', 'a', 'x=i'])}) }}}}")
        elif depth < 3:
            k = rng.random()
            if k < 0.35:
                out.append("{% for i in [1, 2] %}" + _random_program(rng, depth + 1, True, macros) + "{% endfor %}")
            elif k < 0.6:
                cond = rng.choice(["a", "b", "i == 1", "true"])
                out.append(f"{{% if {cond} %}}" + _random_program(rng, depth + 1, in_loop, macros) + "{% else %}"
                           + _random_program(rng, depth + 1, in_loop, macros) + "{% endif %}")
            elif k < 0.75:
                out.append(f"{{% with b = {rng.choice(['2', 'a'])} %}}" + _random_program(rng, depth + 1, False, macros)
                           + "{% endwith %}")
            else:
                name = f"m{len(macros)}"
                body = _random_program(rng, depth + 1, False, macros)
                out.append(f"{{% macro {name}(x=5) %}}<{body}{{{{ x }}}}>{{% endmacro %}}")
                macros = (*macros, name)
    return "".join(out)


def test_scoping_fuzz():
    rng = random.Random(7)
    for _ in range(100):
        source = "{% set ns = namespace(c='') %}" + _random_program(rng) + "|{{ ns.c }}|{{ a }}{{ b }}{{ i }}"
        expected = _jinja(source, [])
        got = _ours(source, [])
        assert _same(expected, got), f"\nsource: {source!r}\njinja2: {expected!r}\nours:   {got!r}"


# ============================================================================ errors with positions


@pytest.mark.parametrize(
    "source, line, column, words, jinja_rejects",
    [
        ("{% if x %}abc", 1, 4, ["if", "endif"], True),
        ("hello\n  {% for m in messages %}\n{{ m }}", 2, 6, ["for", "endfor"], True),
        ("ok\n{% if a %}{% for b in c %}{% endif %}", 2, 30, ["endif", "for"], True),
        ("{{ x ", 1, 1, ["unclosed", "}}"], True),
        ("a\nb {% set x = 1 ", 2, 3, ["unclosed", "%}"], True),
        ("x {# never closed", 1, 3, ["comment"], True),
        ("{% raw %}never closed", 1, 1, ["endraw"], True),
        ("{% endif %}", 1, 4, ["endif"], True),
        ("\n\n   {% foo %}", 3, 7, ["unknown tag", "foo"], True),
        ("{{ a + }}", 1, 8, ["unexpected", "}}"], True),
        ("{{ (1, 2 }}", 1, 10, ["expected ')'"], True),
        ("{{ a b }}", 1, 6, ["'}}'"], True),
        ("{{ 'unterminated }}", 1, 4, ["unexpected character"], True),
        ("{% set 1 = 2 %}", 1, 8, ["assign"], True),
        ("{% macro m(a=1, b) %}{% endmacro %}", 1, 17, ["non-default"], True),
        # jinja2 only fails on these later (Python SyntaxError when compiling,
        # or at render time for lack of a loader); we refuse them up front.
        ("{% break %}", 1, 4, ["break", "loop"], False),
        ("{% for x in y %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}", 1, 35, ["continue"], False),
        ("{% include 'other.jinja' %}", 1, 4, ["include", "not supported"], False),
        ("{% for x in y recursive %}{% endfor %}", 1, 15, ["recursive"], False),
    ],
)
def test_syntax_errors_have_positions(source, line, column, words, jinja_rejects):
    with pytest.raises(ChatTemplateError) as info:
        ChatTemplate(source)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert f"line {line}, column {column}" in str(err)
    for word in words:
        assert word in str(err), str(err)
    if jinja_rejects:
        with pytest.raises(jinja2.exceptions.TemplateSyntaxError):
            _ORACLE.from_string(source)


def test_runtime_errors_have_positions():
    source = "{% for m in messages %}\n  {{ m.content.missing.deeper }}\n{% endfor %}"
    with pytest.raises(ChatTemplateError) as info:
        render_chat(source, [{"role": "user", "content": "hi"}])
    assert info.value.line == 2
    assert "undefined" in str(info.value) or "no attribute" in str(info.value)


def test_raise_exception_position_and_message():
    source = "line one\n{%- if messages | length > 1 %}\n    {{ raise_exception('too many: ' ~ messages | length) }}\n{% endif %}"
    assert render_chat(source, [{"role": "user", "content": "a"}]) == "line one"
    with pytest.raises(ChatTemplateError) as info:
        render_chat(source, [{"role": "user", "content": "a"}] * 3)
    assert str(info.value) == "too many: 3"
    assert (info.value.line, info.value.column) == (3, 8)


def test_error_is_value_error():
    with pytest.raises(ValueError):
        ChatTemplate("{% if %}")
    with pytest.raises(ChatTemplateError):
        ChatTemplate(b"{{ x }}")  # type: ignore[arg-type]


# ============================================================================ sandbox and budgets


def test_templates_cannot_modify_messages():
    messages = [{"role": "user", "content": "hi"}]
    for source in (
        "{{ messages.append({'role': 'x'}) }}",
        "{{ messages[0].update({'role': 'x'}) }}",
        "{{ messages[0].pop('role') }}",
        "{{ messages.clear() }}",
        "{% set _ = messages[0].setdefault('x', 1) %}",
    ):
        with pytest.raises(ChatTemplateError, match="not allowed"):
            render_chat(source, messages)
    assert messages == [{"role": "user", "content": "hi"}]


def test_no_route_to_python_internals():
    for source in (
        "{{ ''.__class__.__base__.__subclasses__() }}",
        "{{ messages.__class__ }}{{ raise_exception.__globals__ }}",
        "{{ '{0.__class__}'.format(1) }}",
        "{{ '{0[0]}'.format('x') }}{{ '{:{w}}'.format(1, w=3) }}",
        "{{ namespace.__init__.__globals__['os'] }}",
        "{{ loop.__class__ }}{% for x in [1] %}{{ loop._items }}{{ loop.__class__.__init__ }}{% endfor %}",
        "{% macro m() %}{% endmacro %}{{ m.renderer }}{{ m.closure }}{{ m.node }}",
    ):
        try:
            text = render_chat(source, [])
        except ChatTemplateError:
            continue
        assert "class" not in text and "module" not in text and "function" not in text, (source, text)
        assert text == "", (source, text)


def test_memory_and_time_bombs_are_refused(monkeypatch):
    for source in (
        "{{ 'x' * 100000000 }}",
        "{{ ('x' * 9000000) + ('y' * 9000000) }}",
        "{{ ('x' * 9000000) ~ ('y' * 9000000) }}",
        "{{ ('x' * 5000) | replace('x', 'y' * 5000) }}",
        "{{ ('x' * 5000).replace('', 'y' * 5000) }}",
        "{{ 'x'.center(10 ** 9) }}{{ 'x' | center(10 ** 9) }}",
        "{% set ns = namespace(s='x' * 1000) %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% for i in range(10000) %}{{ 'x' * 9000000 }}{% endfor %}",
        "{{ [0] * 100000000 }}",
        "{{ 10 ** 10000000 }}",
        "{{ range(10 ** 9) | length }}",
    ):
        with pytest.raises(ChatTemplateError):
            render_chat(source, [])
    with pytest.raises(ChatTemplateError, match="recursion|nested"):
        render_chat("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", [])
    monkeypatch.setattr(ct, "_MAX_STEPS", 1000)
    with pytest.raises(ChatTemplateError, match="budget"):
        render_chat("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", [])


def test_absurd_nesting_is_a_clean_error():
    with pytest.raises(ChatTemplateError, match="nested"):
        ChatTemplate("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")


def test_deep_but_bounded_recursion_works():
    source = "{% macro f(n) %}{% if n > 0 %}({{ f(n - 1) }}){% endif %}{% endmacro %}{{ f(40) }}"
    assert render_chat(source, []) == "(" * 40 + ")" * 40 == _jinja(source, [])[1]


# ============================================================================ API details


def test_render_defaults_and_context():
    t = ChatTemplate(
        "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools is defined }}{{ tools is none }}"
        "|{{ documents is none }}|{{ custom }}|{{ messages | length }}"
    )
    assert t.render([]) == "||True|TrueTrue|True||0"
    assert t.render([{}], bos_token="<s>", eos_token="</s>", add_generation_prompt=False, custom=5) == (
        "<s>|</s>|False|TrueTrue|True|5|1"
    )
    assert t.render([], tools=[1]).endswith("|TrueFalse|True||0")


def test_unknown_filters_fail_only_when_used():
    t = ChatTemplate("{% if messages %}{{ messages | xmlattr }}{% endif %}ok")
    assert t.render([]) == "ok"
    assert any("xmlattr" in u for u in t.unsupported)
    with pytest.raises(ChatTemplateError, match="xmlattr"):
        t.render([{"role": "user"}])
    assert ChatTemplate("{{ x | trim }}").unsupported == ()


def test_strftime_now():
    assert render_chat("{{ strftime_now('%Y') }}", []) == datetime.now().strftime("%Y")


def test_render_chat_matches_chat_template():
    source = (DATA / "chatml_qwen2.jinja").read_text(encoding="utf-8")
    messages = CONVERSATIONS["system+user"]
    assert render_chat(source, messages) == ChatTemplate(source).render(messages)
    assert render_chat(source, messages).endswith("<|im_start|>assistant\n")
    assert not render_chat(source, messages, add_generation_prompt=False).endswith("assistant\n")


def test_module_uses_only_the_standard_library():
    """The engine must run in Pyodide with numpy as its only dependency."""
    tree = ast.parse(Path(ct.__file__).read_text(encoding="utf-8"))
    allowed = {"__future__", "json", "math", "re", "string", "warnings", "collections", "datetime",
               "functools", "itertools", "numbers", "typing", "textwrap"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: webinfer itself
                continue
            names = [node.module.split(".")[0]]
        else:
            continue
        assert set(names) <= allowed, names
