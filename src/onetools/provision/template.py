"""Provision templates: the YAML language of ``oneprovision`` (``reference/oneprovision.md`` §2).

Public API (all the lifecycle needs; nothing here talks to OpenNebula, Terraform or Ansible):

``load(path) -> RawTemplate``
    Read a template and everything it ``extends`` (recursively, paths relative to the file
    that names them, cycles refused), merged with the rules of §2.2; top-level nulls dropped.
    The result remembers, for every key, the file and line it came from.  Unreadable files and
    bad YAML raise ``FileParseError`` (``file.yml: … at line N``).
``validate(raw, provider=None) -> list[TemplateProblem]``
    The structure and ``${...}`` rule checks of §2.12 (plus a few of ours: meta, Ansible
    versions, playbook names, counts).  Content problems are returned, never raised; each names
    the file the offending key came from and its line.  ``provider`` (a provider body or YAML
    mapping) contributes its ``inputs`` as ``create`` does.
``resolve(raw, inputs, prompt=None, provider_inputs=()) -> ProvisionPlan``
    Validate (``TemplateError`` with every problem), merge provider inputs, give every
    referenced input a value (caller's mapping, then a ``value`` already carried, then
    ``prompt``, then the default), substitute ``${input.X}``, spread ``defaults`` into the
    objects (each object gets its own deep copy), expand host groups into hosts with GLOBAL
    indexes (``${index}`` substituted), replicate network ARs, and return the typed plan.
``substitute(value, context) -> value``
    Evaluate the late placeholders (``${provision}``, ``${provision_id}``, ``${index}``,
    ``${TYPE.REF.ATTR}`` through a lookup callback, ``${updates.KEY}``) in a nested value;
    a placeholder whose source the context does not give is left as it is.

Decisions where the original is inconsistent (§8.1), documented in ``docs/oneprovision.md``:

* ``defaults`` never override what an object writes itself: the object's own ``provision``
  (``connection``, ``configuration``) keys win over ``defaults`` for every kind (the original
  let defaults win for cluster/datastores/networks and lost them entirely for datastores and
  networks whenever the template had hosts, §8.1 #5).
* Host indexes are global: the second group's first host follows the first group's last one
  (the original added the group ordinal, giving duplicates, §8.1 #3).
* Built-in connection defaults are copied per host (§8.1 #4).
* Ansible versions are strings taken from the YAML text: ``ver_max: 2.10`` is ``"2.10"``, not
  the float 2.1 (§6.2).
"""

from __future__ import annotations

import base64
import copy
import os
import re
from dataclasses import dataclass, field

from onetools.errors import FileParseError, OnetoolsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from typing import Any

    Path = tuple[Any, ...]
    Prompt = Callable[["InputSpec", "str | None"], str]
    Lookup = Callable[[str, str, str], Any]

#: Top-level keys of the language; any other key is an "extra" kept in the provision document.
KNOWN_KEYS = (
    "name",
    "description",
    "extends",
    "playbook",
    "ansible",
    "defaults",
    "inputs",
    "cluster",
    "hosts",
    "datastores",
    "networks",
    "images",
    "marketplaceapps",
    "templates",
    "vntemplates",
    "flowtemplates",
    "ceph_vars",
)
#: Keys the document itself owns: dropped from a template's extras (§2.1).
RESERVED_KEYS = frozenset({"state", "provider", "provision", "start_time"})
#: The sections of ``defaults`` (§2.3).
DEFAULT_SECTIONS = ("provision", "connection", "configuration")
#: Built-in host connection settings (§2.3); every host gets its own copy.
BUILTIN_CONNECTION: tuple[tuple[str, Any], ...] = (
    ("remote_user", "root"),
    ("remote_port", 22),
    ("public_key", "/var/lib/one/.ssh-oneprovision/id_rsa.pub"),
    ("private_key", "/var/lib/one/.ssh-oneprovision/id_rsa"),
)
#: Object lists in creation order (§2.9, §2.11): an object may reference earlier kinds only.
#: Each entry: (template key, reference type, plan kind).
OBJECT_LISTS: tuple[tuple[str, str], ...] = (
    ("datastores", "datastore"),
    ("networks", "network"),
    ("hosts", "host"),
    ("images", "image"),
    ("marketplaceapps", "marketplaceapp"),
    ("templates", "template"),
    ("vntemplates", "vntemplate"),
    ("flowtemplates", "flowtemplate"),
)
#: ``TYPE`` of ``${TYPE.REF.ATTR}`` → the creation rank of that kind.
REFERENCE_TYPES: dict[str, int] = {
    "cluster": 0,
    "datastore": 1,
    "network": 2,
    "host": 3,
    "image": 4,
    "marketplaceapp": 5,
    "template": 6,
    "vntemplate": 7,
}
#: Creation rank of the objects of each template section.
SECTION_RANK: dict[str, int] = {
    "cluster": 0,
    "datastores": 1,
    "networks": 2,
    "hosts": 3,
    "images": 4,
    "marketplaceapps": 5,
    "templates": 6,
    "vntemplates": 7,
    "flowtemplates": 8,
}
#: ``${updates.KEY}`` keys the lifecycle fills after configuration (§2.11).
UPDATE_KEYS = frozenset({"first_host", "ceph_hosts_list", "ceph_secret", "default_ipv4_nic"})
#: Input types (§2.4).
INPUT_TYPES = (
    "text",
    "text64",
    "boolean",
    "password",
    "number",
    "number-float",
    "range",
    "range-float",
    "list",
    "array",
    "fixed",
)
#: The ``ceph_*_count`` keys of a cloud HCI host group and the ``ceph_group`` each gives.
CEPH_COUNTS = (
    ("ceph_full_count", "osd,mon"),
    ("ceph_osd_count", "osd"),
    ("ceph_client_count", "clients"),
)

_EXPRESSION = re.compile(r"\$\{([^}]*)\}")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_VERSION = re.compile(r"^\d+(\.\d+)*$")
_PLAYBOOK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
_OCTET = re.compile(r"^[0-7]{3}$")


# -- errors and locations -----------------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    """Where a key came from: the file (as the user named it, or relative to it) and line."""

    file: str
    line: int | None = None


@dataclass(frozen=True)
class TemplateProblem:
    """One content problem of a template: the message and where it is."""

    message: str
    file: str
    line: int | None = None

    def __str__(self) -> str:
        text = f"{self.file}: {self.message}"
        return text if self.line is None else f"{text} at line {self.line}"


class TemplateError(OnetoolsError):
    """A template (or the inputs given for it) cannot be used: ``problems`` says why."""

    def __init__(self, problems: Sequence[TemplateProblem | str]) -> None:
        self.problems = [
            p if isinstance(p, TemplateProblem) else TemplateProblem(p, "") for p in problems
        ]
        first = self.problems[0] if self.problems else TemplateProblem("invalid template", "")
        text = str(first) if first.file else first.message
        if len(self.problems) > 1:
            text += f" (and {len(self.problems) - 1} more problems)"
        super().__init__(text)


# -- loading ------------------------------------------------------------------------------------
@dataclass
class _Layer:
    """One file's data merged so far, with the origin of every path and raw scalar texts."""

    data: dict[str, Any]
    origins: dict[Path, Location]
    scalars: dict[Path, str]
    files: list[str]


@dataclass
class RawTemplate:
    """A loaded template: ``extends`` merged, nothing resolved.

    ``data`` is the merged mapping; ``origins`` maps a key path (``("hosts", 0, "im_mad")``)
    to the file and line it came from; ``scalars`` keeps the YAML text of scalars (so that a
    version written ``2.10`` is not read as the float 2.1); ``files`` lists every file read.
    """

    path: str
    data: dict[str, Any]
    origins: dict[Path, Location] = field(default_factory=dict)
    scalars: dict[Path, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def location(self, path: Sequence[Any]) -> Location:
        """Where ``path`` (or its nearest known parent) came from."""
        key = tuple(path)
        while key:
            found = self.origins.get(key)
            if found is not None:
                return found
            key = key[:-1]
        return Location(self.path)

    def problem(self, message: str, path: Sequence[Any] = ()) -> TemplateProblem:
        where = self.location(path)
        return TemplateProblem(message, where.file, where.line)

    def to_yaml(self) -> str:
        """The merged template as YAML (``oneprovision validate --dump``)."""
        import yaml

        return yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True)


def _loader_class() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _record(
    node: Any,
    path: Path,
    line: int,
    shown: str,
    origins: dict[Path, Location],
    scalars: dict[Path, str],
    depth: int = 0,
) -> None:
    """Record the origin of ``path`` and below from the YAML node tree."""
    import yaml

    origins[path] = Location(shown, line)
    if depth > 64:  # aliases can nest deeply; positions below this are not worth it
        return
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            if key_node.value in seen:
                # YAML says keys are unique; PyYAML would silently keep the last value,
                # hiding e.g. a second `provision:` of a host that replaces the first
                raise FileParseError(
                    f"Failed to read template: duplicate key {key_node.value}",
                    shown,
                    key_node.start_mark.line + 1,
                )
            seen.add(key_node.value)
            _record(
                value_node,
                (*path, key_node.value),
                key_node.start_mark.line + 1,
                shown,
                origins,
                scalars,
                depth + 1,
            )
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _record(
                item,
                (*path, position),
                item.start_mark.line + 1,
                shown,
                origins,
                scalars,
                depth + 1,
            )
    elif isinstance(node, yaml.ScalarNode):
        scalars[path] = node.value


def _read_yaml(real: str, shown: str) -> _Layer:
    import yaml

    try:
        with open(real, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise FileParseError("Failed to read template: file not found", shown) from None
    except IsADirectoryError:
        raise FileParseError("Failed to read template: is a directory", shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise FileParseError(f"Failed to read template: {reason}", shown) from None
    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "syntax error"
        raise FileParseError(f"Failed to read template: {reason}", shown, line) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise FileParseError(f"Failed to read template: {exc}", shown) from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        line = node.start_mark.line + 1 if node is not None else None
        raise FileParseError("Failed to read template: not a YAML mapping", shown, line)
    origins: dict[Path, Location] = {}
    scalars: dict[Path, str] = {}
    if node is not None:
        _record(node, (), 1, shown, origins, scalars)
    return _Layer(data, origins, scalars, [shown])


def _move(
    source: Mapping[Path, Any],
    target: dict[Path, Any],
    prefix: Path,
    new_prefix: Path | None = None,
) -> None:
    """Copy ``source``'s entries under ``prefix`` into ``target`` (re-rooted at ``new_prefix``)."""
    size = len(prefix)
    for path, value in source.items():
        if path[:size] == prefix and len(path) >= size:
            target[(new_prefix or prefix) + path[size:]] = value


def _drop(target: dict[Path, Any], prefix: Path) -> None:
    size = len(prefix)
    for path in [p for p in target if p[:size] == prefix]:
        del target[path]


def _as_playbook_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        flat: list[Any] = []
        for item in value:
            flat.extend(_as_playbook_list(item) if isinstance(item, list) else [item])
        return flat
    return [value]


def _merge(base: _Layer, top: _Layer) -> _Layer:
    """``top`` (the extending file) merged over ``base`` (one file it extends), §2.2."""
    data = dict(base.data)
    origins = dict(base.origins)
    scalars = dict(base.scalars)
    tracks: tuple[dict[Path, Any], ...] = (origins, scalars)
    sources: tuple[dict[Path, Any], ...] = (top.origins, top.scalars)
    for key, value in top.data.items():
        if key in ("defaults", "playbook"):
            continue
        old = data.get(key)
        if isinstance(old, list) and isinstance(value, list):
            data[key] = old + value  # lists concatenate: base items first
            for position in range(len(value)):
                for track, source in zip(tracks, sources, strict=True):
                    _move(source, track, (key, position), (key, len(old) + position))
        else:
            data[key] = value  # scalars and maps: the extending file wins, wholesale
            for track, source in zip(tracks, sources, strict=True):
                _drop(track, (key,))
                _move(source, track, (key,))
    # playbook: the base's (flattened) then the extending file's
    if "playbook" in base.data or "playbook" in top.data:
        old_list = _as_playbook_list(base.data.get("playbook"))
        new_list = _as_playbook_list(top.data.get("playbook"))
        data["playbook"] = old_list + new_list
        if "playbook" in top.data:
            if ("playbook",) not in origins and ("playbook",) in top.origins:
                origins[("playbook",)] = top.origins[("playbook",)]
            for position in range(len(new_list)):
                for track, source in zip(tracks, sources, strict=True):
                    single = not isinstance(top.data.get("playbook"), list)
                    from_path = ("playbook",) if single else ("playbook", position)
                    _move(source, track, from_path, ("playbook", len(old_list) + position))
    # defaults: section by section, key by key, the extending file winning
    top_defaults = top.data.get("defaults")
    if isinstance(top_defaults, dict):
        base_defaults = data.get("defaults")
        merged = dict(base_defaults) if isinstance(base_defaults, dict) else {}
        if not isinstance(base_defaults, dict):
            for track in tracks:
                _drop(track, ("defaults",))
            if ("defaults",) in top.origins:
                origins[("defaults",)] = top.origins[("defaults",)]
        for section, values in top_defaults.items():
            old_section = merged.get(section)
            if isinstance(values, dict) and isinstance(old_section, dict):
                merged[section] = {**old_section, **values}
                for name in values:
                    for track, source in zip(tracks, sources, strict=True):
                        _drop(track, ("defaults", section, name))
                        _move(source, track, ("defaults", section, name))
            elif values is not None or section not in merged:
                merged[section] = values
                for track, source in zip(tracks, sources, strict=True):
                    _drop(track, ("defaults", section))
                    _move(source, track, ("defaults", section))
        data["defaults"] = merged
    elif "defaults" in top.data and top_defaults is not None:
        data["defaults"] = top_defaults  # not a map: kept for validate to report
        for track, source in zip(tracks, sources, strict=True):
            _drop(track, ("defaults",))
            _move(source, track, ("defaults",))
    return _Layer(data, origins, scalars, base.files + top.files)


def _load_layer(real: str, shown: str, stack: tuple[str, ...]) -> _Layer:
    layer = _read_yaml(real, shown)
    extends = layer.data.pop("extends", None)
    if extends is None:
        return layer
    entries = extends if isinstance(extends, list) else [extends]
    here_real = os.path.dirname(real)
    here_shown = os.path.dirname(shown)
    bases: list[_Layer] = []
    for position, entry in enumerate(entries):
        where = layer.origins.get(
            ("extends", position) if isinstance(extends, list) else ("extends",)
        ) or layer.origins.get(("extends",), Location(shown))
        if not isinstance(entry, str) or not entry.strip():
            raise FileParseError(
                "Failed to read template: extends must name files", shown, where.line
            )
        base_real = os.path.realpath(os.path.join(here_real, os.path.expanduser(entry)))
        base_shown = os.path.normpath(os.path.join(here_shown, os.path.expanduser(entry)))
        if base_real in stack:
            chain = " -> ".join([*(os.path.basename(p) for p in stack), os.path.basename(entry)])
            raise FileParseError(f"extends cycle: {chain}", shown, where.line)
        if not os.path.exists(base_real):
            raise FileParseError(
                f"Failed to read template: extended file {entry} not found", shown, where.line
            )
        bases.append(_load_layer(base_real, base_shown, (*stack, base_real)))
    _drop(layer.origins, ("extends",))
    _drop(layer.scalars, ("extends",))
    merged = layer
    for base in reversed(bases):  # extends: [a, b, c] = a, then b, c and the file on top
        merged = _merge(base, merged)
    return merged


def load(path: str | os.PathLike[str]) -> RawTemplate:
    """Load a provision template and what it ``extends`` (§2.2); ``FileParseError`` if a
    file cannot be read or is not YAML (the message names the file and the line)."""
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    layer = _load_layer(real, shown, (real,))
    data = {key: value for key, value in layer.data.items() if value is not None}
    for key in [k for k, v in layer.data.items() if v is None]:
        _drop(layer.origins, (key,))
    return RawTemplate(shown, data, layer.origins, layer.scalars, tuple(dict.fromkeys(layer.files)))


# -- inputs -------------------------------------------------------------------------------------
@dataclass
class InputSpec:
    """A user input (§2.4): what a prompt shows and what a value must be."""

    name: str
    type: str = "text"
    description: str = ""
    default: Any = None
    options: tuple[str, ...] = ()
    min_value: Any = None
    max_value: Any = None
    value: Any = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, item: Mapping[str, Any]) -> InputSpec:
        options = item.get("options")
        return cls(
            name=str(item.get("name", "")),
            type=str(item.get("type") or "text"),
            description=str(item.get("description") or ""),
            default=item.get("default"),
            options=tuple(str(o) for o in options) if isinstance(options, list) else (),
            min_value=item.get("min_value"),
            max_value=item.get("max_value"),
            value=item.get("value"),
            raw=dict(item),
        )

    def definition_problem(self) -> str | None:
        """What is wrong with this input's definition (§2.12 texts), or None."""
        default = None if self.default is None else str(self.default)
        if self.type not in INPUT_TYPES:
            return f"input type {self.type} is not one of {', '.join(INPUT_TYPES)}"
        if self.type == "boolean" and default is not None and default not in ("YES", "NO"):
            return f"default {default} is invalid"
        if self.type == "list":
            if not self.options:
                return "input type list needs options"
            if default not in (None, "") and default not in self.options:
                return f"default {default} is not in list"
        if self.type == "array" and default not in (None, "") and not _split_array(default):
            return f"default {default} invalid format"
        if self.type in ("range", "range-float"):
            if self.min_value is None or self.max_value is None:
                return f"input type {self.type} needs min_value and max_value"
            number = _as_int if self.type == "range" else _as_float
            low, high = number(self.min_value), number(self.max_value)
            if low is None or high is None:
                kind = "integer" if self.type == "range" else "numbers"
                return f"min_value and max_value must be {kind}"
            if low > high:
                return "min_value is greater than max_value"
        if self.type in ("number", "number-float", "range", "range-float") and default not in (
            None,
            "",
        ):
            problem = self.value_problem(default)
            if problem:
                return f"default {default}: {problem}"
        return None

    def value_problem(self, text: str) -> str | None:
        """Why ``text`` is not a value of this input, or None."""
        if self.type == "boolean" and text.upper() not in ("YES", "NO"):
            return "must be YES or NO"
        if self.type in ("number", "range") and _as_int(text) is None:
            return "is not an integer"
        if self.type in ("number-float", "range-float") and _as_float(text) is None:
            return "is not a number"
        if self.type in ("range", "range-float"):
            number = _as_int if self.type == "range" else _as_float
            value, low, high = number(text), number(self.min_value), number(self.max_value)
            known = value is not None and low is not None and high is not None
            if known and not low <= value <= high:  # type: ignore[operator]
                return f"is not in [{self.min_value}..{self.max_value}]"
        if self.type == "list" and text not in self.options:
            return f"is not one of {', '.join(self.options)}"
        if self.type == "array" and not _split_array(text):
            return "is not a ';'-separated list"
        return None

    def convert(self, text: str) -> Any:
        """The value substituted for ``${input.NAME}`` (checked text: see value_problem)."""
        if self.type == "array":
            return _split_array(text)
        if self.type == "text64":
            return base64.b64encode(text.encode("utf-8")).decode("ascii")
        if self.type == "boolean":
            return text.upper()
        if self.type in ("number", "range"):
            return str(_as_int(text))
        return text

    def empty_answer(self) -> str:
        """What an empty answer at the prompt means (§2.4)."""
        if self.default not in (None, ""):
            return str(self.default)
        if self.type == "boolean":
            return "NO"
        if self.type in ("number", "number-float"):
            return "0"
        if self.type == "list" and self.options:
            return self.options[0]
        return ""


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _split_array(text: Any) -> list[str]:
    """An ``array`` value: ``;``-separated (6.2+), blanks around items and empty items dropped."""
    if isinstance(text, list):
        return [str(item).strip() for item in text if str(item).strip()]
    return [item.strip() for item in str(text).split(";") if item.strip()]


def merge_inputs(
    template_inputs: Sequence[Mapping[str, Any]], provider_inputs: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The template's inputs with the provider's merged in (§2.4): a provider input replaces
    the same-named template input (keeping the template's ``value``) or is appended."""
    merged = [dict(item) for item in template_inputs]
    for item in provider_inputs:
        if not isinstance(item, dict):
            continue
        replacement = copy.deepcopy(dict(item))
        for position, existing in enumerate(merged):
            if existing.get("name") == item.get("name"):
                if "value" in existing:
                    replacement["value"] = existing["value"]
                merged[position] = replacement
                break
        else:
            merged.append(replacement)
    return merged


# -- walking values -----------------------------------------------------------------------------
def _scalars(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Every string scalar under ``value`` with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _scalars(item, (*path, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _scalars(item, (*path, position))


def _map_strings(value: Any, change: Callable[[str], Any]) -> Any:
    """A deep copy of ``value`` with every string scalar replaced by ``change(scalar)``."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: _map_strings(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_strings(item, change) for item in value]
    return copy.deepcopy(value)


# -- validation ---------------------------------------------------------------------------------
def _inputs_of(raw: RawTemplate, provider: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    items = raw.data.get("inputs")
    template_inputs: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        # an input defined again (in the extending file: lists concatenate base first)
        # replaces the earlier definition where it stood
        for position, earlier in enumerate(template_inputs):
            if earlier.get("name") == item.get("name"):
                template_inputs[position] = item
                break
        else:
            template_inputs.append(item)
    provider_inputs = (provider or {}).get("inputs")
    if isinstance(provider_inputs, list) and provider_inputs:
        return merge_inputs(template_inputs, provider_inputs)
    return template_inputs


def _object_names(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(item["name"]) for item in value if isinstance(item, dict) and "name" in item]


class _Checker:
    """The checks of ``validate``, collecting problems instead of stopping at the first."""

    def __init__(self, raw: RawTemplate, provider: Mapping[str, Any] | None) -> None:
        self.raw = raw
        self.data = raw.data
        self.problems: list[TemplateProblem] = []
        self.inputs = [InputSpec.from_mapping(item) for item in _inputs_of(raw, provider)]
        self.has_inputs = "inputs" in self.data or bool(self.inputs)
        self.reported_inputs: set[str] = set()

    def add(self, message: str, path: Sequence[Any] = ()) -> None:
        problem = self.raw.problem(message, path)
        if problem not in self.problems:
            self.problems.append(problem)

    # structure (§2.12) ----------------------------------------------------------------------
    def structure(self) -> None:
        data = self.data
        name = data.get("name")
        if name is None or (isinstance(name, str) and not name.strip()):
            self.add("in your configuration file: no name given")
        elif not isinstance(name, (str, int)):
            self.add("name should be a string", ("name",))
        for key in ("cluster", "defaults", "ansible", "ceph_vars"):
            if key in data and not isinstance(data[key], dict):
                self.add(f"{key} should be a map", (key,))
        defaults = data.get("defaults")
        if isinstance(defaults, dict):
            for section in DEFAULT_SECTIONS:
                if defaults.get(section) is not None and not isinstance(defaults[section], dict):
                    self.add(f"defaults {section} should be a map", ("defaults", section))
        if "inputs" in data:
            self.input_definitions()
        for key, _ in OBJECT_LISTS:
            if key in data and not isinstance(data[key], list):
                self.add(f"{key} should be an array", (key,))
        self.hosts()
        self.datastores()
        self.networks()
        self.marketplaceapps()
        self.metas()
        self.ansible()

    def input_definitions(self) -> None:
        items = self.data["inputs"]
        if not isinstance(items, list):
            self.add("inputs should be an array", ("inputs",))
            return
        for position, item in enumerate(items):
            path = ("inputs", position)
            if not isinstance(item, dict):
                self.add(f"input {position + 1} should be a map", path)
                continue
            name = item.get("name")
            if not isinstance(name, str) or not _TOKEN.match(name):
                self.add(f"input {position + 1}: no valid name given", path)
                continue

    def _host_sections(self, host: Mapping[str, Any]) -> dict[str, Any]:
        defaults = self.data.get("defaults")
        provision: dict[str, Any] = {}
        if isinstance(defaults, dict) and isinstance(defaults.get("provision"), dict):
            provision.update(defaults["provision"])
        if isinstance(host.get("provision"), dict):
            provision.update(host["provision"])
        return provision

    def hosts(self) -> None:
        hosts = self.data.get("hosts")
        if not isinstance(hosts, list):
            return
        for position, host in enumerate(hosts):
            number = position + 1
            path = ("hosts", position)
            if not isinstance(host, dict):
                self.add(f"in configuration file: host {number} should be a map", path)
                continue
            for key in ("im_mad", "vm_mad"):
                if not host.get(key):
                    self.add(f"in configuration file: no {key} {number}", path)
            if "provision" in host and not isinstance(host["provision"], dict):
                self.add(f"host {number}: provision should be a map", (*path, "provision"))
            for section in ("connection", "configuration"):
                if host.get(section) is not None and not isinstance(host[section], dict):
                    self.add(f"host {number}: {section} should be a map", (*path, section))
            provision = self._host_sections(host)
            hostname = provision.get("hostname")
            if hostname is None or hostname == "" or hostname == []:
                self.add(f"in configuration file: no hostname {number}", path)
            elif not isinstance(hostname, (str, list)):
                self.add(f"host {number}: hostname should be a string or a list", path)
            for key in ("count", *(name for name, _ in CEPH_COUNTS)):
                count = provision.get(key)
                if count is None or (isinstance(count, str) and "${" in count):
                    continue
                if _as_int(count) is None or (_as_int(count) or 0) < 0:
                    self.add(
                        f"host {number}: {key} {count} is not a number", (*path, "provision", key)
                    )

    def datastores(self) -> None:
        datastores = self.data.get("datastores")
        if not isinstance(datastores, list):
            return
        for position, datastore in enumerate(datastores):
            path = ("datastores", position)
            if not isinstance(datastore, dict):
                self.add(f"in configuration file: datastore {position + 1} should be a map", path)
                continue
            if not datastore.get("tm_mad"):
                self.add(f"in configuration file: no tm_mad {position + 1}", path)
            if not datastore.get("type") and not datastore.get("ds_mad"):
                self.add(f"in configuration file: no ds_mad {position + 1}", path)

    def networks(self) -> None:
        networks = self.data.get("networks")
        if not isinstance(networks, list):
            return
        for position, network in enumerate(networks):
            path = ("networks", position)
            if not isinstance(network, dict):
                self.add(f"in configuration file: network {position + 1} should be a map", path)
                continue
            if not network.get("vn_mad"):
                self.add(f"in configuration file: no vn_mad {position + 1}", path)
            if "ar" in network and not isinstance(network["ar"], list):
                self.add("Failed to read configuration: ar should be an array", (*path, "ar"))
            provision = network.get("provision")
            if isinstance(provision, dict) and "count" in provision:
                count = provision["count"]
                if not (isinstance(count, str) and "${" in count) and (
                    _as_int(count) is None or (_as_int(count) or 0) < 1
                ):
                    self.add(
                        f"network {position + 1}: count {count} is not a positive number",
                        (*path, "provision", "count"),
                    )

    def marketplaceapps(self) -> None:
        apps = self.data.get("marketplaceapps")
        if not isinstance(apps, list):
            return
        for position, app in enumerate(apps):
            path = ("marketplaceapps", position)
            if not isinstance(app, dict):
                self.add(f"in configuration file: marketplaceapp {position + 1} should be a map")
            elif app.get("appid") is None and not app.get("appname"):
                self.add(f"in configuration file: no appid or appname {position + 1}", path)

    def _each_object(self) -> Iterator[tuple[str, Path, dict[str, Any]]]:
        cluster = self.data.get("cluster")
        if isinstance(cluster, dict):
            yield "cluster", ("cluster",), cluster
        for key, _ in OBJECT_LISTS:
            items = self.data.get(key)
            if isinstance(items, list):
                for position, item in enumerate(items):
                    if isinstance(item, dict):
                        yield key, (key, position), item

    def metas(self) -> None:
        for _, path, item in self._each_object():
            if "meta" not in item:
                continue
            meta = item["meta"]
            where = (*path, "meta")
            if not isinstance(meta, dict):
                self.add("meta should be a map", where)
                continue
            for key in ("uid", "gid"):
                if key in meta and (_as_int(meta[key]) is None or (_as_int(meta[key]) or 0) < 0):
                    self.add(f"meta {key} {meta[key]} is not an ID", (*where, key))
            for key in ("uname", "gname"):
                if key in meta and not isinstance(meta[key], str):
                    self.add(f"meta {key} should be a name", (*where, key))
            if "mode" in meta and not _OCTET.match(_mode_text(self.raw, (*where, "mode"), meta)):
                self.add(f"meta mode {meta['mode']} is not an octet such as 640", (*where, "mode"))
            if "wait" in meta and not isinstance(meta["wait"], bool):
                self.add(f"Wait mode {meta['wait']} not supported", (*where, "wait"))
            if "wait_timeout" in meta and (
                _as_int(meta["wait_timeout"]) is None or (_as_int(meta["wait_timeout"]) or 0) <= 0
            ):
                self.add(
                    f"meta wait_timeout {meta['wait_timeout']} is not a number of seconds",
                    (*where, "wait_timeout"),
                )

    def ansible(self) -> None:
        playbooks: list[tuple[Path, Any]] = []
        if "playbook" in self.data:
            value = self.data["playbook"]
            items = _as_playbook_list(value)
            single = not isinstance(value, list)
            playbooks += [
                (("playbook",) if single else ("playbook", i), item) for i, item in enumerate(items)
            ]
        ansible = self.data.get("ansible")
        if isinstance(ansible, dict):
            versions: dict[str, str] = {}
            for key in ("ver_min", "ver_max"):
                if ansible.get(key) is None:
                    self.add(f"ansible: no {key} given", ("ansible",))
                    continue
                text = _version_text(self.raw, ("ansible", key), ansible[key])
                if not _VERSION.match(text):
                    self.add(f"ansible {key} {text} is not a version", ("ansible", key))
                else:
                    versions[key] = text
            if len(versions) == 2 and _version_key(versions["ver_min"]) > _version_key(
                versions["ver_max"]
            ):
                self.add(
                    f"ansible ver_min {versions['ver_min']} is greater than ver_max "
                    f"{versions['ver_max']}",
                    ("ansible", "ver_min"),
                )
            value = ansible.get("playbook")
            items = _as_playbook_list(value)
            single = not isinstance(value, list)
            playbooks += [
                (("ansible", "playbook") if single else ("ansible", "playbook", i), item)
                for i, item in enumerate(items)
            ]
        for path, item in playbooks:
            if not isinstance(item, str) or not _PLAYBOOK.match(item) or ".." in item.split("/"):
                self.add(f"playbook {item} is not a playbook name", path)

    # ${...} rules (§2.12) -------------------------------------------------------------------
    def expressions(self) -> None:
        for key, value in self.data.items():
            if key in ("name", "inputs"):
                continue
            for path, text in _scalars(value, (key,)):
                for match in _EXPRESSION.finditer(text):
                    problem = self.expression(match.group(1), path)
                    if problem:
                        self.add(f"expression {text}: {problem}", path)
        for spec in self.inputs:
            if spec.name in self.reported_inputs or not spec.name:
                continue
            problem = spec.definition_problem()
            if problem:
                positions = [
                    i
                    for i, item in enumerate(self.data.get("inputs") or [])
                    if isinstance(item, dict) and item.get("name") == spec.name
                ]
                position = positions[-1] if positions else None  # the definition in force
                where = ("inputs", position) if position is not None else ("inputs",)
                self.add(f"input {spec.name}: {problem}", where)

    def expression(self, inner: str, path: Path) -> str | None:
        tokens = inner.split(".")
        if len(tokens) == 1:
            if tokens[0] not in ("index", "provision", "provision_id"):
                return f"key {tokens[0]} invalid"
            if tokens[0] == "index" and path[0] in SECTION_RANK and path[0] != "hosts":
                return "key index is only known in hosts"
            return None
        if len(tokens) == 2:
            head, name = tokens
            if head == "updates":
                if name not in UPDATE_KEYS:
                    return f"key updates.{name} invalid (known: {', '.join(sorted(UPDATE_KEYS))})"
                return None
            if head != "input":
                return f"key {inner} invalid for user inputs"
            if not self.has_inputs:
                return "user inputs not found"
            spec = next((s for s in self.inputs if s.name == name), None)
            if spec is None:
                return f"user input {name} not found"
            if name not in self.reported_inputs:
                self.reported_inputs.add(name)
                return spec.definition_problem()
            return None
        if len(tokens) != 3:
            return "there are no 3 elements"
        kind, ref, _attribute = tokens
        if kind not in REFERENCE_TYPES:
            return f"key {kind} is not valid"
        for token in tokens:
            if not _TOKEN.match(token):
                return f"{token} has invalid characters"
        if not self.reference_exists(kind, ref):
            return f"{kind} {ref} not found"
        section = path[0]
        if section in SECTION_RANK and REFERENCE_TYPES[kind] > SECTION_RANK[section]:
            return f"{kind} objects are created after the {section}"
        return None

    def reference_exists(self, kind: str, ref: str) -> bool:
        if kind == "cluster":
            cluster = self.data.get("cluster")
            name = cluster.get("name") if isinstance(cluster, dict) else self.data.get("name")
            return ref == "0" or ref == str(name) or "${" in str(name)
        lists = {
            "datastore": ("datastores",),
            "network": ("networks",),
            "host": ("hosts",),
            # a marketplace app's export creates an image and a VM template (§2.9)
            "image": ("images", "marketplaceapps"),
            "template": ("templates", "marketplaceapps"),
            "vntemplate": ("vntemplates",),
            "marketplaceapp": ("marketplaceapps",),
        }[kind]
        items: list[Any] = []
        for key in lists:
            value = self.data.get(key)
            if isinstance(value, list):
                items.extend(value)
        if ref.isdigit():
            if kind == "host":
                total = _literal_host_count(items)
                return bool(items) and (total is None or int(ref) < total)
            return int(ref) < len(items)
        names = _object_names(items)
        return ref in names or any("${" in name for name in names)


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _version_text(raw: RawTemplate, path: Path, value: Any) -> str:
    """A version as written in the YAML: ``2.10`` stays ``"2.10"`` (YAML reads a float)."""
    if isinstance(value, float):
        return raw.scalars.get(path, repr(value)).strip()
    return str(value).strip()


def _mode_text(raw: RawTemplate, path: Path, meta: Mapping[str, Any]) -> str:
    """A permission octet as written: ``mode: 0640`` is an octal int to YAML 1.1, and
    ``mode: 640`` a decimal one; the text is what the user meant."""
    value = meta.get("mode")
    if isinstance(value, int) and not isinstance(value, bool):
        text = raw.scalars.get(path, str(value)).strip()
        return text[1:] if len(text) == 4 and text.startswith("0") else text
    return str(value).strip()


def _literal_host_count(groups: Sequence[Any]) -> int | None:
    """How many hosts the groups make, when no count depends on an input."""
    total = 0
    for group in groups:
        provision = group.get("provision") if isinstance(group, dict) else None
        if not isinstance(provision, dict):
            total += 1
            continue
        hostname = provision.get("hostname")
        if isinstance(hostname, list):
            total += len(hostname)
            continue
        if isinstance(hostname, str) and "${input." in hostname:
            return None
        counts = [provision.get(name) for name, _ in CEPH_COUNTS]
        if provision.get("ceph_full_count") is None:
            counts = [provision.get("count", 1)]
        for count in counts:
            if count is None:
                continue
            number = _as_int(count)
            if number is None:
                return None
            total += number
    return total


def validate(raw: RawTemplate, provider: Mapping[str, Any] | None = None) -> list[TemplateProblem]:
    """The problems of a loaded template (§2.12), in the order they appear; empty if valid.

    ``provider`` is a provider body (or provider YAML as a mapping): its ``inputs`` are merged
    into the template's first, as ``create`` does; without it inputs that only a provider
    defines are reported as ``user input X not found``, as the original's ``validate`` does.
    """
    checker = _Checker(raw, provider)
    checker.structure()
    checker.expressions()
    return checker.problems


# -- the plan -----------------------------------------------------------------------------------
@dataclass
class Meta:
    """``meta`` of an object (§2.10): ownership, permissions and, for images, waiting."""

    uid: int | None = None
    uname: str | None = None
    gid: int | None = None
    gname: str | None = None
    mode: str | None = None
    wait: bool | None = None
    wait_timeout: int | None = None

    @classmethod
    def from_mapping(cls, meta: Any, mode_text: str | None = None) -> Meta:
        if not isinstance(meta, dict):
            return cls()
        return cls(
            uid=_as_int(meta["uid"]) if "uid" in meta else None,
            uname=str(meta["uname"]) if "uname" in meta else None,
            gid=_as_int(meta["gid"]) if "gid" in meta else None,
            gname=str(meta["gname"]) if "gname" in meta else None,
            mode=mode_text if "mode" in meta else None,
            wait=meta.get("wait") if isinstance(meta.get("wait"), bool) else None,
            wait_timeout=_as_int(meta["wait_timeout"]) if "wait_timeout" in meta else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Only the keys that were given."""
        return {key: value for key, value in self.__dict__.items() if value is not None}


@dataclass
class PlanObject:
    """One OpenNebula object to create: ``attributes`` in template order (``meta`` removed),
    ``position`` its index in its list (the ``REF`` of ``${TYPE.REF.ATTR}``)."""

    kind: str
    position: int
    attributes: dict[str, Any]
    meta: Meta = field(default_factory=Meta)
    location: Location | None = None

    @property
    def name(self) -> str | None:
        name = self.attributes.get("name")
        return None if name is None else str(name)


@dataclass
class PlanHost(PlanObject):
    """A host: ``index`` is global across host groups (§2.6), ``group`` the group's ordinal,
    ``hostname`` its ``provision.hostname`` with ``${index}`` substituted."""

    index: int = 0
    group: int = 0
    hostname: str = ""

    @property
    def provision(self) -> dict[str, Any]:
        section = self.attributes.setdefault("provision", {})
        assert isinstance(section, dict)
        return section

    @property
    def connection(self) -> dict[str, Any]:
        section = self.attributes.setdefault("connection", {})
        assert isinstance(section, dict)
        return section

    @property
    def configuration(self) -> dict[str, Any]:
        section = self.attributes.setdefault("configuration", {})
        assert isinstance(section, dict)
        return section


@dataclass(frozen=True)
class AnsibleSettings:
    """The playbooks to run and the Ansible version range (strings, inclusive), from either
    form: 6.0's ``playbook:`` (``form == "playbook"``, no range) or 6.8+'s ``ansible:``."""

    playbooks: tuple[str, ...] = ()
    ver_min: str | None = None
    ver_max: str | None = None
    form: str = "playbook"


@dataclass
class ProvisionPlan:
    """A resolved template: what the lifecycle creates, in creation order."""

    name: str
    description: str | None
    provider_name: str | None
    ansible: AnsibleSettings
    inputs: dict[str, Any]
    defaults: dict[str, Any]
    cluster: PlanObject
    datastores: list[PlanObject] = field(default_factory=list)
    networks: list[PlanObject] = field(default_factory=list)
    hosts: list[PlanHost] = field(default_factory=list)
    images: list[PlanObject] = field(default_factory=list)
    marketplaceapps: list[PlanObject] = field(default_factory=list)
    templates: list[PlanObject] = field(default_factory=list)
    vntemplates: list[PlanObject] = field(default_factory=list)
    flowtemplates: list[PlanObject] = field(default_factory=list)
    ceph_vars: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def hci(self) -> bool:
        """A Ceph HCI provision (§2.14)."""
        return self.ceph_vars is not None


class _InputValues:
    """Gives each referenced input a value once (§2.4 order)."""

    def __init__(
        self,
        specs: Sequence[InputSpec],
        given: Mapping[str, Any],
        prompt: Prompt | None,
        raw: RawTemplate,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.given = given
        self.prompt = prompt
        self.raw = raw
        self.values: dict[str, Any] = {}

    def _check(self, spec: InputSpec, text: str, origin: str) -> Any:
        problem = spec.value_problem(text)
        if problem:
            raise TemplateError([f"user input {spec.name}: {origin} '{text}' {problem}"])
        return spec.convert(text)

    def value(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        spec = self.specs[name]
        if spec.type == "fixed":
            if name in self.given and str(self.given[name]) != str(spec.default):
                raise TemplateError([f"user input {name} is fixed to '{spec.default}'"])
            value: Any = "" if spec.default is None else str(spec.default)
        elif name in self.given:
            given = self.given[name]
            text = ";".join(map(str, given)) if isinstance(given, list) else str(given)
            value = self._check(spec, text, "value")
        elif spec.value is not None:
            value = self._check(spec, _text(spec.value), "value")
        elif self.prompt is not None:
            value = self._ask(spec)
        elif spec.default is not None:
            value = self._check(spec, _text(spec.default), "default")
        else:
            raise TemplateError([f"Cannot parse user input {name}"])
        self.values[name] = value
        return value

    def _ask(self, spec: InputSpec) -> Any:
        assert self.prompt is not None
        error: str | None = None
        for _ in range(10):  # a script answering wrong forever must not hang the run
            answer = self.prompt(spec, error).strip()
            text = answer or spec.empty_answer()
            problem = spec.value_problem(text)
            if not problem:
                return spec.convert(text)
            error = f"'{text}' {problem}"
        raise TemplateError([f"user input {spec.name}: no valid answer ({error})"])


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ";".join(str(item) for item in value)
    if isinstance(value, bool):
        return "YES" if value else "NO"
    return str(value)


def _substitute_inputs(value: Any, values: _InputValues) -> Any:
    def change(text: str) -> Any:
        matches = list(_EXPRESSION.finditer(text))
        inputs = [m for m in matches if m.group(1).startswith("input.")]
        if not inputs:
            return text
        if len(matches) == 1 and matches[0].group(0) == text:
            return copy.deepcopy(values.value(text[len("${input.") : -1]))

        def one(match: re.Match[str]) -> str:
            inner = match.group(1)
            if not inner.startswith("input."):
                return match.group(0)
            return _text(values.value(inner[len("input.") :]))

        return _EXPRESSION.sub(one, text)

    return _map_strings(value, change)


def _referenced_inputs(data: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for key, value in data.items():
        if key in ("name", "inputs"):
            continue
        for _, text in _scalars(value, (key,)):
            for match in _EXPRESSION.finditer(text):
                inner = match.group(1)
                if inner.startswith("input.") and inner[6:] not in names:
                    names.append(inner[6:])
    return names


def _section(value: Any) -> dict[str, Any]:
    return copy.deepcopy(value) if isinstance(value, dict) else {}


def _with_defaults(own: Any, defaults: Mapping[str, Any], section: str) -> dict[str, Any]:
    """``defaults.<section>`` under the object's own ``<section>`` (the object wins)."""
    merged = _section(defaults.get(section))
    merged.update(_section(own))
    return merged


def _meta_of(raw: RawTemplate, path: Path, item: Mapping[str, Any]) -> Meta:
    meta = item.get("meta")
    mode = _mode_text(raw, (*path, "meta", "mode"), meta) if isinstance(meta, dict) else None
    return Meta.from_mapping(meta, mode)


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: copy.deepcopy(value) for key, value in item.items() if key != "meta"}


def _expand_hosts(
    raw: RawTemplate,
    groups: Sequence[Any],
    defaults: Mapping[str, Any],
    playbooks: Sequence[str],
) -> list[PlanHost]:
    hosts: list[PlanHost] = []
    index = 0  # global across groups (the original restarted per group, §8.1 #3)
    for ordinal, group in enumerate(groups):
        path = ("hosts", ordinal)
        provision = _with_defaults(group.get("provision"), defaults, "provision")
        connection = dict(BUILTIN_CONNECTION)
        connection.update(_with_defaults(group.get("connection"), defaults, "connection"))
        configuration = _with_defaults(group.get("configuration"), defaults, "configuration")
        hostname = provision.get("hostname")
        roles: list[str | None]
        if isinstance(hostname, list):
            names = [str(name) for name in hostname]
            roles = [provision.get("ceph_group")] * len(names)
        else:
            roles = []
            if provision.get("ceph_full_count") is not None:
                for key, ceph_group in CEPH_COUNTS:
                    count = _count(provision.get(key, 0), raw, (*path, "provision", key))
                    roles += [ceph_group] * count
            else:
                roles = [provision.get("ceph_group")] * _count(
                    provision.get("count", 1), raw, (*path, "provision", "count")
                )
            names = [str(hostname)] * len(roles)
        for name, role in zip(names, roles, strict=True):
            attributes = _plain(group)
            attributes["provision"] = copy.deepcopy(provision)
            attributes["connection"] = copy.deepcopy(connection)
            attributes["configuration"] = copy.deepcopy(configuration)
            context = SubstitutionContext(index=index)
            attributes = substitute(attributes, context)
            host_provision = attributes["provision"]
            host_provision["hostname"] = substitute(name, context)
            host_provision["index"] = index
            host_provision["count"] = len(names)
            if role is not None:
                host_provision["ceph_group"] = role
            if playbooks:
                host_provision["ansible_playbook"] = ",".join(playbooks)
            hosts.append(
                PlanHost(
                    kind="host",
                    position=len(hosts),
                    attributes=attributes,
                    meta=_meta_of(raw, path, group),
                    location=raw.location(path),
                    index=index,
                    group=ordinal,
                    hostname=str(host_provision["hostname"]),
                )
            )
            index += 1
    return hosts


def _count(value: Any, raw: RawTemplate, path: Path) -> int:
    number = _as_int(value)
    if number is None or number < 0:
        raise TemplateError([raw.problem(f"count {value} is not a number", path)])
    return number


def _network(
    raw: RawTemplate, path: Path, item: Mapping[str, Any], defaults: Mapping[str, Any]
) -> Any:
    attributes = _plain(item)
    provision = _with_defaults(item.get("provision"), defaults, "provision")
    if provision or "provision" in item:
        attributes["provision"] = provision
    ars = attributes.get("ar")
    if isinstance(ars, list) and ars:
        count = provision.get("count")
        if count is not None:
            number = _as_int(count)
            if number is None or number < 1:
                problem = raw.problem(f"count {count} is not a number", (*path, "provision"))
                raise TemplateError([problem])
            # one AR per public IP (elastic networks): the first AR repeated
            ars = [copy.deepcopy(ars[0]) for _ in range(number)]
        for ar in ars:
            if isinstance(ar, dict):
                ar.setdefault("provision_id", "${provision_id}")
        attributes["ar"] = ars
    return attributes


def _ansible_settings(raw: RawTemplate) -> AnsibleSettings:
    playbooks = [str(p) for p in _as_playbook_list(raw.data.get("playbook"))]
    ansible = raw.data.get("ansible")
    if isinstance(ansible, dict):
        playbooks += [str(p) for p in _as_playbook_list(ansible.get("playbook"))]
        versions = [
            None if ansible.get(key) is None else _version_text(raw, ("ansible", key), ansible[key])
            for key in ("ver_min", "ver_max")
        ]
        return AnsibleSettings(tuple(dict.fromkeys(playbooks)), versions[0], versions[1], "ansible")
    return AnsibleSettings(tuple(dict.fromkeys(playbooks)), form="playbook")


def resolve(
    raw: RawTemplate,
    inputs: Mapping[str, Any] | None = None,
    prompt: Prompt | None = None,
    provider_inputs: Iterable[Mapping[str, Any]] = (),
) -> ProvisionPlan:
    """The plan of a template with its inputs given values (see the module docstring).

    ``inputs`` are the caller's values (``--user-inputs``); ``prompt(spec, error)`` is asked
    for the others when given (interactive runs; ``error`` says why the previous answer was
    refused) and must return the answer text; without it defaults are used (batch).
    ``provider_inputs`` are the provider document's ``inputs``.  Raises ``TemplateError``.
    """
    provider = {"inputs": list(provider_inputs)}
    problems = validate(raw, provider)
    if problems:
        raise TemplateError(problems)
    specs = [InputSpec.from_mapping(item) for item in _inputs_of(raw, provider)]
    given = dict(inputs or {})
    unknown = [name for name in given if name not in {spec.name for spec in specs}]
    if unknown:
        raise TemplateError([f"user input {unknown[0]} is not an input of {raw.path}"])
    values = _InputValues(specs, given, prompt, raw)
    referenced = _referenced_inputs(raw.data)
    for spec in specs:  # asked in definition order, only those the template uses
        if spec.name in referenced:
            values.value(spec.name)
    data = {
        key: (value if key in ("name", "inputs") else _substitute_inputs(value, values))
        for key, value in raw.data.items()
    }
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    assert isinstance(defaults, dict)
    ansible = _ansible_settings(raw)

    cluster_source = data.get("cluster") if isinstance(data.get("cluster"), dict) else {}
    assert isinstance(cluster_source, dict)
    cluster_attributes = _plain(cluster_source)
    cluster_attributes.setdefault("name", str(data["name"]))
    cluster_provision = _with_defaults(cluster_source.get("provision"), defaults, "provision")
    if cluster_provision:
        cluster_attributes["provision"] = cluster_provision
    plan = ProvisionPlan(
        name=str(data["name"]),
        description=None if data.get("description") is None else str(data["description"]),
        provider_name=None,
        ansible=ansible,
        inputs=dict(values.values),
        defaults=copy.deepcopy(defaults),
        cluster=PlanObject(
            "cluster",
            0,
            cluster_attributes,
            _meta_of(raw, ("cluster",), cluster_source),
            raw.location(("cluster",)),
        ),
        ceph_vars=copy.deepcopy(data["ceph_vars"])
        if isinstance(data.get("ceph_vars"), dict)
        else None,
        extra={
            key: copy.deepcopy(value)
            for key, value in data.items()
            if key not in KNOWN_KEYS and key not in RESERVED_KEYS
        },
        source=raw.path,
    )
    for key, kind in OBJECT_LISTS:
        items = data.get(key) or []
        if key == "hosts":
            plan.hosts = _expand_hosts(raw, items, defaults, ansible.playbooks)
            continue
        objects: list[PlanObject] = getattr(plan, key)
        for position, item in enumerate(items):
            path = (key, position)
            if key == "networks":
                attributes = _network(raw, path, item, defaults)
            else:
                attributes = _plain(item)
                if key == "datastores":
                    provision = _with_defaults(item.get("provision"), defaults, "provision")
                    if provision or "provision" in item:
                        attributes["provision"] = provision
            objects.append(
                PlanObject(
                    kind, position, attributes, _meta_of(raw, path, item), raw.location(path)
                )
            )
    provider_name = defaults.get("provision", {}).get("provider_name") if defaults else None
    if provider_name is None and plan.hosts:
        provider_name = plan.hosts[0].provision.get("provider_name")
    plan.provider_name = None if provider_name is None else str(provider_name)
    return plan


# -- late substitution --------------------------------------------------------------------------
@dataclass(frozen=True)
class SubstitutionContext:
    """What ``substitute`` knows now; a placeholder whose source is None is left as it is.

    ``lookup(type, ref, attr)`` returns an attribute of an object this provision created
    (``ref`` an index or name as written; raise ``LookupError`` when there is no such object,
    return None when it lacks the attribute); ``updates`` maps ``${updates.KEY}`` keys.
    """

    provision: str | None = None
    provision_id: int | str | None = None
    index: int | None = None
    lookup: Lookup | None = None
    updates: Mapping[str, Any] | None = None


def _evaluate(inner: str, text: str, context: SubstitutionContext) -> Any:
    """The value of one ``${inner}``, or None to leave it."""
    tokens = inner.split(".")
    if len(tokens) == 1:
        return {
            "provision": context.provision,
            "provision_id": context.provision_id,
            "index": context.index,
        }.get(tokens[0])
    if len(tokens) == 2 and tokens[0] == "updates":
        return None if context.updates is None else context.updates.get(tokens[1])
    if len(tokens) == 3 and tokens[0] in REFERENCE_TYPES and context.lookup is not None:
        kind, ref, attribute = tokens
        try:
            value = context.lookup(kind, ref, attribute)
        except LookupError:
            raise TemplateError([f"expression {text}: {kind} {ref} not found"]) from None
        if value is None:
            raise TemplateError([f"expression {text}: {kind} {ref} has no attribute {attribute}"])
        return value
    return None


def substitute(value: Any, context: SubstitutionContext) -> Any:
    """A copy of ``value`` (scalar, list or map, nested) with the ``${...}`` the context can
    evaluate replaced.  A scalar that is exactly one placeholder takes the value itself
    (a list stays a list); placeholders inside longer text are replaced by their text."""

    def change(text: str) -> Any:
        matches = list(_EXPRESSION.finditer(text))
        if not matches:
            return text
        if len(matches) == 1 and matches[0].group(0) == text:
            found = _evaluate(matches[0].group(1), text, context)
            return text if found is None else found

        def one(match: re.Match[str]) -> str:
            found = _evaluate(match.group(1), text, context)
            return match.group(0) if found is None else _text(found)

        return _EXPRESSION.sub(one, text)

    return _map_strings(value, change)


__all__ = [
    "AnsibleSettings",
    "InputSpec",
    "Location",
    "Meta",
    "PlanHost",
    "PlanObject",
    "ProvisionPlan",
    "RawTemplate",
    "SubstitutionContext",
    "TemplateError",
    "TemplateProblem",
    "load",
    "merge_inputs",
    "resolve",
    "substitute",
    "validate",
]
