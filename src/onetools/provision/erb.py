"""ERB-style templates (``<%= expr %>``, ``<% statement %>``) rendered by a sandboxed Jinja2.

The Terraform templates (``templates/<provider>/*.erb``) keep the look of OpenNebula's ERB files,
but nothing in them is Ruby: the tags are Jinja's own delimiters, so

=========================  ====================================================================
``<%= expression %>``      a Jinja expression, printed (``<%= obj.ID %>``,
                           ``<%= x | default("a") %>``)
``<% statement %>``        a Jinja statement (``<% if … %>`` / ``<% else %>`` / ``<% endif %>``,
                           ``<% for … in … %>`` / ``<% endfor %>``, ``<% set … %>``)
``<%# comment %>``         nothing
``<%- … -%>``              strip the white space before / after the tag (Jinja's ``-``)
=========================  ====================================================================

Besides Jinja's pure filters, ``hcl`` quotes a value as an HCL string literal (escapes, and
``${``/``%{`` doubled so a value never becomes a Terraform expression), ``b64encode`` and
``b64decode`` do what they say.

Statement lines vanish entirely (``trim_blocks``/``lstrip_blocks``), like ERB's ``-%>`` mode:
a statement tag also eats the newline right after it when it ends a line of text.
Ruby's ``h['KEY']`` subscript reads the same in Jinja, so most expressions of the original
templates are valid as they are; a missing key is empty (as Ruby's ``nil``) and stays chainable
(``c.TEMPLATE.PROVISION.CIDR | default("10.0.0.0/16")``).

A template never executes code (DESIGN.md: "Templates never execute code"):

* Jinja's ``SandboxedEnvironment`` refuses ``__class__``, ``__globals__``, ``__subclasses__``,
  ``mro``, function internals and unsafe methods of the values passed in;
* ``include``/``import``/``extends`` are refused before rendering (no template reads a file),
  the only globals are a bounded ``range``, and only a short list of pure filters exists (no
  ``attr``, ``map(attribute=…)`` tricks, ``center(10**9)``, ``wordwrap``…);
* every ``for`` loop draws from one iteration budget per render, every call from a call budget,
  ``*``, ``**``, ``%`` and ``~`` refuse results past a size cap, output is capped too, and a
  render stops after a wall-clock limit: a template cannot loop forever or eat the memory.

Every refusal is one ``TemplateError`` (a ``FileParseError``: file and line where known).

Public API::

    render_template(text, variables, path=None) -> str
    render_file(path, variables) -> str
    Template(text, path=None).render(variables) -> str     parse once, render many times
    load_template(path) -> Template
    TemplateError
"""

from __future__ import annotations

import time

from onetools.errors import FileParseError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from typing import Any

#: Loop iterations one render may run, across all its loops (our templates need a handful).
MAX_ITERATIONS = 10_000
#: Function, macro and filter calls one render may make.
MAX_CALLS = 50_000
#: Longest string/list an operator may build, and longest output.
MAX_VALUE_SIZE = 1_000_000
MAX_OUTPUT_SIZE = 4_000_000
#: Largest integer an arithmetic operator may build (bits).
MAX_INT_BITS = 4096
#: Seconds one render may take.
MAX_SECONDS = 5.0

#: The filters a template may use: pure, bounded by their input.
ALLOWED_FILTERS = frozenset(
    {
        "abs",
        "b64decode",
        "b64encode",
        "capitalize",
        "d",
        "default",
        "dictsort",
        "e",
        "escape",
        "first",
        "float",
        "int",
        "items",
        "join",
        "last",
        "length",
        "list",
        "lower",
        "max",
        "min",
        "replace",
        "reverse",
        "round",
        "sort",
        "string",
        "sum",
        "title",
        "tojson",
        "trim",
        "unique",
        "upper",
        "count",
    }
)

_BUDGET_ITERATE = "onetools_bounded_iterate"
_BUDGET_CONCAT = "onetools_bounded_concat"


class TemplateError(FileParseError):
    """A template that does not parse, uses something the sandbox refuses, or runs too long."""


class _Budget:
    """What one render may still spend."""

    __slots__ = ("calls", "deadline", "iterations")

    iterations: int
    calls: int
    deadline: float

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.iterations = MAX_ITERATIONS
        self.calls = MAX_CALLS
        self.deadline = time.monotonic() + MAX_SECONDS

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _LimitExceeded(f"template took longer than {MAX_SECONDS:g} s")


class _LimitExceeded(Exception):
    """Raised inside a render; becomes a TemplateError with the template's line."""


def _size(value: Any, depth: int = 0) -> int:
    """How much text ``value`` stands for: string lengths, summed through containers.

    A list holding one long string a thousand times weighs a thousand strings (``join`` or
    ``tojson`` would build them all).  The walk stops as soon as the limit is passed.
    """
    if isinstance(value, (str, bytes)):
        return len(value)
    if depth > 32:
        return MAX_VALUE_SIZE + 1
    items: Iterable[Any]
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return 0
    total = len(items) if isinstance(items, (list, tuple, set, frozenset)) else 0
    for item in items:
        total += _size(item, depth + 1)
        if total > MAX_VALUE_SIZE:
            break
    return total


def _check_size(value: Any) -> Any:
    if _size(value) > MAX_VALUE_SIZE:
        raise _LimitExceeded(f"value longer than {MAX_VALUE_SIZE} characters")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _LimitExceeded(f"number larger than {MAX_INT_BITS} bits")
    return value


def _environment(budget: _Budget) -> Any:
    """A fresh sandbox whose hooks charge ``budget`` (one per render: budgets never leak)."""
    import base64
    import json

    from jinja2 import ChainableUndefined, nodes
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.utils import missing

    class ErbUndefined(ChainableUndefined):
        """A missing key is empty and chainable (Ruby's nil); a missing *name* is an error."""

        __slots__ = ()

        def _top_level(self) -> bool:
            return self._undefined_obj is missing and self._undefined_hint is None

        def __getattr__(self, name: str) -> Any:
            if name[:2] == "__" or self._top_level():
                self._fail_with_undefined_error()
            return self

        def __getitem__(self, name: Any) -> Any:
            if self._top_level():
                self._fail_with_undefined_error()
            return self

        def __str__(self) -> str:
            if self._top_level():
                self._fail_with_undefined_error()
            return ""

    class ErbSandbox(ImmutableSandboxedEnvironment):
        # Only operators that can build huge values in one step are intercepted.
        intercepted_binops = frozenset({"*", "**", "%", "+"})

        def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
            if op == "**":
                if not isinstance(left, (int, float)) or not isinstance(right, (int, float)):
                    raise _LimitExceeded("'**' needs numbers")
                if (
                    isinstance(left, int)
                    and isinstance(right, int)
                    and right > 0
                    and max(abs(left), 2).bit_length() * right > MAX_INT_BITS
                ):
                    raise _LimitExceeded(f"number larger than {MAX_INT_BITS} bits")
            if op == "*":
                # a sequence repeated: check the size before building it
                for seq, count in ((left, right), (right, left)):
                    if (
                        _size(seq)
                        and isinstance(count, int)
                        and _size(seq) * count > MAX_VALUE_SIZE
                    ):
                        raise _LimitExceeded(f"value longer than {MAX_VALUE_SIZE} characters")
                if (
                    isinstance(left, int)
                    and isinstance(right, int)
                    and left.bit_length() + right.bit_length() > MAX_INT_BITS
                ):
                    raise _LimitExceeded(f"number larger than {MAX_INT_BITS} bits")
            if op == "%" and isinstance(left, str):
                # printf formatting can pad to any width ('%999999999d')
                raise _LimitExceeded("'%' formatting of strings is not allowed")
            if op == "+" and _size(left) + _size(right) > MAX_VALUE_SIZE:
                raise _LimitExceeded(f"value longer than {MAX_VALUE_SIZE} characters")
            result = super().call_binop(context, op, left, right)
            return _check_size(result)

        def getattr(self, obj: Any, attribute: str) -> Any:
            # a missing dunder would otherwise be a quiet Undefined: refuse every one loudly
            if attribute.startswith("__"):
                self.unsafe_undefined(obj, attribute)
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            if isinstance(argument, str) and argument.startswith("__"):
                self.unsafe_undefined(obj, argument)
            return super().getitem(obj, argument)

        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            # The stock sandbox returns an Undefined that prints as ''; refuse loudly instead.
            raise SecurityError(
                f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
            )

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            budget.calls -= 1
            if budget.calls < 0:
                raise _LimitExceeded(f"more than {MAX_CALLS} calls")
            budget.check_time()
            # str.ljust(10**9), zfill, center, expandtabs...: refuse a size before building it
            check_arguments(args, kwargs)
            owner = getattr(__obj, "__self__", None)
            name = getattr(__obj, "__name__", "")
            qualified = getattr(__obj, "__qualname__", "")
            # the sandbox hands str.format out wrapped in a plain function named str.format
            if qualified in ("str.format", "str.format_map") or (
                isinstance(owner, str) and name in ("format", "format_map")
            ):
                # a format spec pads to any width ('{:>999999999}')
                raise _LimitExceeded("str.format is not allowed")
            if isinstance(owner, str) and name == "replace" and len(args) >= 2:
                return bounded_replace(owner, *args)
            return _check_size(super().call(__context, __obj, *args, **kwargs))

    def check_arguments(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and abs(value) > MAX_VALUE_SIZE:
                raise _LimitExceeded(f"argument larger than {MAX_VALUE_SIZE}")
        if _size(args) + _size(list(kwargs.values())) > MAX_VALUE_SIZE:
            raise _LimitExceeded(f"arguments longer than {MAX_VALUE_SIZE} characters")

    def bounded_filter(function: Any) -> Any:
        # filters are called directly by the compiled template, not through call(): check
        # their arguments here, and their result
        def checked(*args: Any, **kwargs: Any) -> Any:
            budget.calls -= 1
            if budget.calls < 0:
                raise _LimitExceeded(f"more than {MAX_CALLS} calls")
            check_arguments(args, kwargs)
            return _check_size(function(*args, **kwargs))

        for marker in ("jinja_pass_arg",):  # pass_context/pass_environment... markers
            if hasattr(function, marker):
                setattr(checked, marker, getattr(function, marker))
        return checked

    def bounded_range(*args: int) -> range:
        values = range(*args)
        if len(values) > MAX_ITERATIONS:
            raise _LimitExceeded(f"range longer than {MAX_ITERATIONS}")
        return values

    def bounded_iterate(iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            budget.iterations -= 1
            if budget.iterations < 0:
                raise _LimitExceeded(f"more than {MAX_ITERATIONS} loop iterations")
            budget.check_time()
            yield item

    def bounded_concat(*parts: Any) -> str:
        text = "".join(str(part) for part in parts)
        return str(_check_size(text))

    def bounded_replace(value: Any, old: str, new: str, count: int | None = None) -> str:
        text = str(value)
        if old == "" or len(new) > len(old):
            growth = (len(new) - len(old)) * (text.count(old) if old else len(text) + 1)
            if len(text) + growth > MAX_VALUE_SIZE:
                raise _LimitExceeded(f"value longer than {MAX_VALUE_SIZE} characters")
        return text.replace(old, new) if count is None else text.replace(old, new, count)

    def hcl(value: Any) -> str:
        # JSON's string escapes are HCL's; "${" and "%{" would start HCL templates
        text = "" if value is None or isinstance(value, ChainableUndefined) else str(value)
        quoted = json.dumps(text, ensure_ascii=False)
        return quoted.replace("${", "$${").replace("%{", "%%{")

    def b64encode(value: Any) -> str:
        data = value if isinstance(value, bytes) else str(value).encode()
        return base64.b64encode(data).decode("ascii")

    def b64decode(value: Any) -> str:
        return base64.b64decode(str(value)).decode("utf-8", "replace")

    env = ErbSandbox(
        block_start_string="<%",
        block_end_string="%>",
        variable_start_string="<%=",
        variable_end_string="%>",
        comment_start_string="<%#",
        comment_end_string="%>",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        undefined=ErbUndefined,
        # no loader: nothing can be read from disk; no extensions (no 'do', no i18n)
    )
    filters = {name: env.filters[name] for name in ALLOWED_FILTERS if name in env.filters}
    filters.update(b64encode=b64encode, b64decode=b64decode, replace=bounded_replace, hcl=hcl)
    env.filters = {name: bounded_filter(function) for name, function in filters.items()}
    env.tests = dict(env.tests)
    env.globals = {
        "range": bounded_range,
        _BUDGET_ITERATE: bounded_iterate,
        _BUDGET_CONCAT: bounded_concat,
    }
    env.onetools_nodes = nodes  # type: ignore[attr-defined]
    return env


def _harden(tree: Any, nodes: Any, path: str | None) -> None:
    """Refuse file access in ``tree``; route its loops and ``~`` through the budget."""
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        raise TemplateError(
            "templates may not include, import or extend other files", path, node.lineno
        )
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Call(
            nodes.Name(_BUDGET_ITERATE, "load", lineno=loop.lineno),
            [loop.iter],
            [],
            None,
            None,
            lineno=loop.lineno,
        )
    for concat in list(tree.find_all(nodes.Concat)):
        call = nodes.Call(
            nodes.Name(_BUDGET_CONCAT, "load", lineno=concat.lineno),
            list(concat.nodes),
            [],
            None,
            None,
            lineno=concat.lineno,
        )
        # Concat nodes have no parent pointer: rewrite in place by turning the node into a
        # one-element concat of the bounded call (keeps every reference to it valid).
        concat.nodes = [call]


def _line_of(exc: BaseException) -> int | None:
    """The template line an exception raised during rendering points at, if any."""
    # Jinja rewrites the traceback of a render error so that its frames carry the template's
    # file name ("<template>" for templates made from a string) and template line numbers.
    traceback = exc.__traceback__
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain data (dict, list, str, numbers, None): no object's methods reach a
    template (a ``Path`` passed in would offer ``write_text``)."""
    if depth > 64:
        raise TemplateError("template variables nested too deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1) for item in value]
    return str(value)


class Template:
    """An ERB-style template parsed and checked once, rendered any number of times.

    Each ``render`` gets a fresh budget (iterations, calls, time).
    """

    def __init__(self, text: str, path: str | None = None) -> None:
        """Parse ``text``; raises ``TemplateError`` for a syntax error or a refused construct."""
        from jinja2 import TemplateSyntaxError

        self.path = path
        self._budget = _Budget()
        env = _environment(self._budget)
        nodes = env.onetools_nodes
        try:
            tree = env.parse(text, name=path)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}", path, exc.lineno) from None
        _harden(tree, nodes, path)
        unknown = sorted(
            {node.name for node in tree.find_all(nodes.Filter) if node.name not in env.filters}
            | {node.name for node in tree.find_all(nodes.Test) if node.name not in env.tests}
        )
        if unknown:
            raise TemplateError(f"filter or test not allowed: {', '.join(unknown)}", path)
        try:
            self._template = env.from_string(tree)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}", path, exc.lineno) from None

    def render(self, variables: Mapping[str, Any]) -> str:
        """The text for ``variables`` (made plain data first); ``TemplateError`` on any failure."""
        from jinja2.exceptions import SecurityError, UndefinedError

        path = self.path
        self._budget.reset()
        try:
            out: list[str] = []
            size = 0
            for chunk in self._template.generate(_plain(dict(variables))):
                size += len(chunk)
                if size > MAX_OUTPUT_SIZE:
                    raise _LimitExceeded(f"output longer than {MAX_OUTPUT_SIZE} characters")
                out.append(chunk)
        except SecurityError as exc:
            raise TemplateError(f"refused by the sandbox: {exc}", path, _line_of(exc)) from None
        except _LimitExceeded as exc:
            raise TemplateError(f"template limit: {exc}", path, _line_of(exc)) from None
        except RecursionError as exc:
            raise TemplateError("template recursion too deep", path, _line_of(exc)) from None
        except UndefinedError as exc:
            raise TemplateError(f"undefined value: {exc.message}", path, _line_of(exc)) from None
        except Exception as exc:  # any failure of user code is one clear line
            raise TemplateError(
                f"template error: {type(exc).__name__}: {exc}", path, _line_of(exc)
            ) from None
        return "".join(out)


def load_template(path: str) -> Template:
    """The ERB-style template file ``path`` (UTF-8), parsed."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read template: {exc}", path) from None
    return Template(text, path)


def render_template(text: str, variables: Mapping[str, Any], path: str | None = None) -> str:
    """Render ERB-style ``text`` with ``variables`` (made plain data first) in the sandbox.

    ``path`` names the template in error messages.  Raises ``TemplateError`` for a syntax
    error, anything the sandbox refuses, a budget exceeded, or any error while rendering.
    """
    return Template(text, path).render(variables)


def render_file(path: str, variables: Mapping[str, Any]) -> str:
    """Render the ERB-style template file ``path`` (UTF-8) with ``variables``."""
    return load_template(path).render(variables)
