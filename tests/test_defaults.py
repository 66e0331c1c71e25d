"""One place for every default: deployment.toml and README.md must agree with the code.

Where each default is defined (nowhere else):

- the fixed sections: `core.config.SCHEMA` (a default of None means "required");
- `[[event_listener]]` and `[[cache.manager]]` keys: `core.config.LISTENER_DEFAULTS` and
  `core.config.CACHE_DEFAULTS` (an entry's `order` defaults to its handler's `default_order`);
- handler properties: the handler class's `properties` (`Property.default`);
- the connection pool's URL parameters: `storage.database.POOL_DEFAULTS`;
- constants that are not configuration (the jwks_uri cache lifetimes in keystore.jwks_uri,
  the keystore re-read interval in core.services, the Redis timings in core.ratelimit) stay
  where they are used; the prose that states them is checked below.

What is checked:

(a) deployment.toml, read with tomlkit (comments included). Every schema key is shown in its
    section as `key = value` (a commented-out `# key = value` counts too, and is checked the
    same way): a key that is only named in a comment is not enough, since the file promises
    "Every key below is shown with its default". Each shown value, coerced as the loader
    coerces it ("10" is 10), equals the schema default; a required key (the keystore password)
    must be shown with a value of its type. A derived default (the issuer, "") must be
    explained by a "Default: ..." comment that renders to what the loader derives. Every
    [[event_listener]] resolves (handlers.chain.resolve) and each property it shows equals
    the class's Property.default, its `order` the class's default_order, its `enable` the
    listener default; every built-in handler with properties is listed with all of them, and
    every other built-in handler is at least named (in a comment). [[cache.manager]] values
    equal CACHE_DEFAULTS. No section or key the schema does not know is shown.
(b) README.md "Configuration: deployment.toml" table: one row per schema section and array,
    listing exactly its keys, each as `key` (`default`) in the README's representation
    (render() below: strings bare, "" for the empty string, lists space-separated or [],
    booleans lower-case, "required" for a required key). The handler table names every
    built-in handler; its properties column and the property tables show each handler's
    properties with their defaults.
(c) README.md "Running several nodes": each pool parameter with storage.database's default.
(d) Durations stated in README.md and deployment.toml prose ("5 minutes without one", "once a
    minute") against the constant or default they describe (PROSE below; a claim that is
    reworded must be updated there, so that it stays checked).
(e) Lower layers that keep a default for a configured value for their own callers (tests,
    scripts) keep the schema's value, and core.config.Settings has no default of its own.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from tomlkit.items import AoT, Comment, Table

from core import config
from handlers import chain

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT = ROOT / "deployment.toml"
README = ROOT / "README.md"

# Defaults the loader derives from other keys when the schema default ("") is left: the README
# and the comment in deployment.toml write them as a template over other keys.
DERIVED = {("oauth", "oidc", "id_token", "issuer"): lambda settings: settings.issuer}


# ---------------------------------------------------------------------------------------
# Helpers

def render(value: Any) -> str:
    """A default as README.md writes it (inside backquotes)."""
    if value is None:
        return "required"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (list, tuple)):
        return " ".join(value) if value else "[]"
    raise TypeError(value)


def load_minimal(tmp_path: Path, extra: str = "") -> config.Settings:
    path = tmp_path / "deployment.toml"
    path.write_text('[keystore.primary]\npassword = "x"\n' + extra)
    return config.load(path)


def fill_template(template: str) -> str:
    """`https://<hostname>:<port>/…` with the schema defaults of the keys it names."""
    def value(m: re.Match) -> str:
        for keys in config.SCHEMA.values():
            if m.group(1) in keys:
                return str(keys[m.group(1)][1])
        raise AssertionError(f"<{m.group(1)}> is not a schema key")
    return re.sub(r"<([a-z_]+)>", value, template)


def builtin_classes() -> list[type]:
    """The handler classes of the built-in modules (handlers.chain.BUILTIN_MODULES)."""
    import importlib
    from handlers.base import STAGES, Handler
    classes = []
    for name in chain.BUILTIN_MODULES:
        module = importlib.import_module(f"handlers.{name}")
        classes += [obj for obj in vars(module).values()
                    if inspect.isclass(obj) and issubclass(obj, Handler) and obj.__module__ == module.__name__
                    and getattr(obj, "stage", None) in STAGES]
    return classes


def resolve(name: str) -> type:
    return chain.resolve(name, lambda message: AssertionError(f"{name}: {message}"))


def array_defaults(tmp_path: Path) -> tuple[dict, dict]:
    """What the loader gives an [[event_listener]] and a [[cache.manager]] that set nothing."""
    settings = load_minimal(tmp_path, '[[event_listener]]\nid = "a"\nname = "audit_log"\n'
                                      '[[cache.manager]]\nname = "C"\n')
    entry, cache = settings.listeners[0], settings.caches["C"]
    return ({"enable": entry.enable},
            {"timeout": cache.timeout_minutes, "capacity": cache.capacity, "enable": cache.enable})


def report(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} disagreement(s):\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------------------------------
# deployment.toml, with tomlkit

def _walk(container, prefix: tuple, out: dict) -> None:
    """Every key shown in the file: key path -> (value, comment, commented out?). Arrays of
    tables get their index in the path; comments go under (path, None) as text."""
    for key, item in container.body:
        if key is None:
            if isinstance(item, Comment):
                out.setdefault((prefix, None), []).append(item.as_string().strip())
            continue
        path = prefix + tuple(key.key.split(".")) if key.is_dotted() else prefix + (key.key,)
        if isinstance(item, Table):
            _walk(item.value, path, out)
        elif isinstance(item, AoT):
            for index, table in enumerate(item.body):
                _walk(table.value, path + (index,), out)
        else:
            out[path] = (item.unwrap(), item.trivia.comment, False)


def deployment_items() -> dict:
    items: dict = {}
    _walk(tomlkit.parse(DEPLOYMENT.read_text(encoding="utf-8")), (), items)
    # A commented-out `# key = value` shows a key too.
    for (prefix, _), comments in [(k, v) for k, v in items.items() if k[-1] is None]:
        for comment in comments:
            text = comment.lstrip("#").strip()
            try:
                parsed = tomlkit.parse(text).unwrap()
            except Exception:
                continue
            for key, value in parsed.items():
                if not isinstance(value, dict):
                    items.setdefault(prefix + (key,), (value, "", True))
    return items


def comments_of(items: dict, prefix: tuple) -> list[str]:
    return items.get((prefix, None), [])


def test_deployment_toml_shows_every_schema_key_with_its_default(tmp_path):
    items = deployment_items()
    problems = []
    for section, keys in config.SCHEMA.items():
        for key, (kind, default) in keys.items():
            path = section + (key,)
            where = ".".join(path)
            if path not in items:
                problems.append(f"deployment.toml: {where} is not shown (default {render(default)})")
                continue
            shown, _comment, _commented = items[path]
            try:
                value = config.coerce(shown, kind, where)
            except ValueError as exc:
                problems.append(f"deployment.toml: {where} = {shown!r}: {exc}")
                continue
            if default is None:
                continue  # required: any value of the right type (the password)
            if value != default:
                problems.append(f"deployment.toml: {where} = {shown!r}, schema default {default!r}")
            if path in DERIVED:
                expected = DERIVED[path](load_minimal(tmp_path))
                stated = [m.group(1) for c in comments_of(items, section)
                          for m in [re.search(r"Default: (\S+)", c)] if m]
                if [fill_template(s) for s in stated] != [expected]:
                    problems.append(f"deployment.toml: {where}: the comment should say 'Default: …' "
                                    f"rendering to {expected} (it says {stated})")
    known = {section + (key,) for section, keys in config.SCHEMA.items() for key in keys}
    for path in items:
        if path[-1] is None or path[0] in ("event_listener", "cache"):
            continue
        if path not in known:
            problems.append(f"deployment.toml: {'.'.join(path)} is not a schema key")
    report(problems)


def test_deployment_toml_listeners_show_handler_defaults(tmp_path):
    items = deployment_items()
    listener_defaults, _ = array_defaults(tmp_path)
    problems = []
    if config.LISTENER_DEFAULTS != listener_defaults:
        problems.append(f"core.config.LISTENER_DEFAULTS is {config.LISTENER_DEFAULTS!r}, "
                        f"the loader uses {listener_defaults!r}")
    indexes = sorted({p[1] for p in items if p[0] == "event_listener" and len(p) > 2 and p[-1] is not None})
    listed = set()
    for index in indexes:
        base = ("event_listener", index)
        name = items[base + ("name",)][0]
        try:
            cls = resolve(name)
        except AssertionError as exc:
            problems.append(f"deployment.toml: event_listener[{index}].name: {exc}")
            continue
        listed.add(cls)
        if base + ("order",) in items:
            order = config.coerce(items[base + ("order",)][0], int, "order")
            if order != cls.default_order:
                problems.append(f"deployment.toml: event_listener[{index}] ({cls.__name__}).order = {order}, "
                                f"default_order {cls.default_order}")
        for key, default in listener_defaults.items():
            if base + (key,) in items:
                value = config.coerce(items[base + (key,)][0], config.LISTENER_KEYS[key], key)
                if value != default:
                    problems.append(f"deployment.toml: event_listener[{index}].{key} = {value!r}, default {default!r}")
        shown = {p[-1]: items[p][0] for p in items
                 if p[:3] == base + ("properties",) and len(p) == 4 and p[-1] is not None}
        for key, value in shown.items():
            prop = cls.properties.get(key)
            if prop is None:
                problems.append(f"deployment.toml: {cls.__name__} has no property {key}")
            elif config.coerce(value, prop.kind, key) != prop.default:
                problems.append(f"deployment.toml: {cls.__name__}.{key} = {value!r}, Property default {prop.default!r}")
        if cls.properties and set(cls.properties) - set(shown):
            problems.append(f"deployment.toml: {cls.__name__} does not show "
                            f"{', '.join(sorted(set(cls.properties) - set(shown)))}")
    text = DEPLOYMENT.read_text(encoding="utf-8")
    for cls in builtin_classes():
        if cls in listed:
            continue
        if cls.properties:
            problems.append(f"deployment.toml: {cls.__name__} has properties but no [[event_listener]] showing them")
        module = cls.__module__.removeprefix("handlers.")
        if not (cls.wso2_name and cls.wso2_name in text) and not re.search(rf"\b{module}\b", text):
            problems.append(f"deployment.toml: built-in handler {cls.__name__} is not mentioned")
    report(problems)


def test_deployment_toml_cache_manager_shows_cache_defaults(tmp_path):
    items = deployment_items()
    _, cache_defaults = array_defaults(tmp_path)
    problems = []
    if config.CACHE_DEFAULTS != cache_defaults:
        problems.append(f"core.config.CACHE_DEFAULTS is {config.CACHE_DEFAULTS!r}, the loader uses {cache_defaults!r}")
    absent = load_minimal(tmp_path).cache("PrivateKeyJWT")
    if {"timeout": absent.timeout_minutes, "capacity": absent.capacity, "enable": absent.enable} != cache_defaults:
        problems.append(f"Settings.cache() without an entry gives {absent}, an entry without values {cache_defaults}")
    entries = sorted({p[2] for p in items if p[:2] == ("cache", "manager") and len(p) == 4})
    assert entries, "deployment.toml shows no [[cache.manager]]"
    for index in entries:
        for key, default in cache_defaults.items():
            path = ("cache", "manager", index, key)
            if path in items:
                value = config.coerce(items[path][0], config.CACHE_KEYS[key], key)
                if value != default:
                    problems.append(f"deployment.toml: cache.manager[{index}].{key} = {items[path][0]!r}, "
                                    f"default {default!r}")
    report(problems)


# ---------------------------------------------------------------------------------------
# README.md

def readme() -> str:
    return README.read_text(encoding="utf-8")


def readme_section(title: str) -> str:
    text = readme()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
                rows.append([c.strip() for c in cells])
            return rows
    raise AssertionError(f"README.md has no table starting {header!r}")


_KEY = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`((?:\s+[a-z]+)*)\s*(?:\(([^()]*)\))?")


def documented_keys(cell: str) -> dict[str, str | None]:
    """`key` (`default`, …) -> the default as written (first backquoted text in the
    parentheses, else their text), or None when no default is written."""
    out: dict[str, str | None] = {}
    for m in _KEY.finditer(cell):
        if m.group(3) is None:
            out[m.group(1)] = None
            continue
        quoted = re.search(r"`([^`]*)`", m.group(3))
        out[m.group(1)] = quoted.group(1) if quoted else m.group(3).strip()
    return out


def test_readme_configuration_table_matches_schema(tmp_path):
    rows = table_rows(readme_section("Configuration: deployment.toml"), "| section | keys (default) |")
    listener_defaults, cache_defaults = array_defaults(tmp_path)
    expected: dict[tuple, dict[str, Any]] = {section: {k: d for k, (_, d) in keys.items()}
                                             for section, keys in config.SCHEMA.items()}
    arrays = {("event_listener",): (config.LISTENER_KEYS, listener_defaults),
              ("cache", "manager"): (config.CACHE_KEYS, cache_defaults)}
    problems = []
    seen = set()
    for section_cell, keys_cell in rows:
        m = re.fullmatch(r"`\[\[?([^\]`]+)\]\]?`", section_cell)
        assert m, f"README.md: unexpected section cell {section_cell!r}"
        section = tuple(m.group(1).split("."))
        seen.add(section)
        documented = documented_keys(keys_cell)
        if section in arrays:
            kinds, defaults = arrays[section]
            for key in kinds:
                if key not in documented:
                    problems.append(f"README.md: [[{'.'.join(section)}]] does not list {key}")
                elif key in defaults and documented[key] != render(defaults[key]):
                    problems.append(f"README.md: [[{'.'.join(section)}]] {key} ({documented[key]}), "
                                    f"default {render(defaults[key])}")
                elif key not in defaults and documented[key] is not None:
                    problems.append(f"README.md: [[{'.'.join(section)}]] {key} shows a default "
                                    f"({documented[key]}) the loader does not have")
            for key in set(documented) - set(kinds):
                problems.append(f"README.md: [[{'.'.join(section)}]] {key} is not a key")
            continue
        if section not in expected:
            problems.append(f"README.md: [{'.'.join(section)}] is not a schema section")
            continue
        for key, default in expected[section].items():
            where = f"[{'.'.join(section)}] {key}"
            if key not in documented:
                problems.append(f"README.md: {where} is missing (default {render(default)})")
                continue
            written = documented[key]
            if section + (key,) in DERIVED:
                derived = DERIVED[section + (key,)](load_minimal(tmp_path))
                if written is None or fill_template(written) != derived:
                    problems.append(f"README.md: {where} ({written}), the loader derives {derived}")
            elif written != render(default):
                problems.append(f"README.md: {where} ({written}), schema default {render(default)}")
        for key in set(documented) - set(expected[section]):
            problems.append(f"README.md: [{'.'.join(section)}] {key} is not a schema key")
    for section in (set(expected) | set(arrays)) - seen:
        problems.append(f"README.md: no row for [{'.'.join(section)}]")
    report(problems)


def property_tables() -> list[dict[str, str]]:
    """Every README table of handler properties: property -> default as written."""
    tables = []
    lines = readme().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\| property \| default \|", line):
            table = {}
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]
                name = cells[0].strip("`")
                quoted = re.fullmatch(r"`([^`]*)`", cells[1])
                table[name] = quoted.group(1) if quoted else cells[1]
            tables.append(table)
    return tables


def test_readme_handler_properties_match_property_defaults():
    rows = table_rows(readme_section("Configuration: deployment.toml"), "| handler | `name` | properties |")
    tables = property_tables()
    problems = []
    documented_classes = set()
    for _label, name_cell, props_cell in rows:
        name = name_cell.strip("`")
        try:
            cls = resolve(name)
        except AssertionError as exc:
            problems.append(f"README.md handler table: {exc}")
            continue
        documented_classes.add(cls)
        defaults = {key: prop.default for key, prop in cls.properties.items()}
        if props_cell in ("—", "-", ""):
            if defaults:
                problems.append(f"README.md: {cls.__name__} shows no properties, it has {', '.join(defaults)}")
            continue
        if props_cell == "see below":
            matching = [t for t in tables if set(t) == set(defaults)]
            if not matching:
                problems.append(f"README.md: no property table lists exactly the properties of {cls.__name__} "
                                f"({', '.join(defaults)})")
            continue
        documented = documented_keys(props_cell)
        for key in set(defaults) | set(documented):
            if key not in documented:
                problems.append(f"README.md: {cls.__name__}.{key} is not documented (default {render(defaults[key])})")
            elif key not in defaults:
                problems.append(f"README.md: {cls.__name__} has no property {key}")
            elif documented[key] != render(defaults[key]):
                problems.append(f"README.md: {cls.__name__}.{key} ({documented[key]}), "
                                f"Property default {render(defaults[key])}")
    for table in tables:
        owners = [cls for cls in builtin_classes() if set(cls.properties) == set(table)]
        if len(owners) != 1:
            problems.append(f"README.md: the property table of {', '.join(table)} matches no single handler")
            continue
        for key, written in table.items():
            default = owners[0].properties[key].default
            if written != render(default):
                problems.append(f"README.md: {owners[0].__name__}.{key} ({written}), Property default {render(default)}")
    for cls in set(builtin_classes()) - documented_classes:
        problems.append(f"README.md: the handler table does not list {cls.__name__}")
    report(problems)


def test_readme_pool_parameters_match_storage_defaults():
    from storage.database import POOL_DEFAULTS
    text = " ".join(readme_section("Running several nodes").split())
    units = {"max_connections": "", "stale_timeout": "s", "connect_timeout": "s", "statement_timeout": "ms"}
    problems = []
    assert set(POOL_DEFAULTS) == set(units), "a new pool parameter: add its unit here"
    for key, default in POOL_DEFAULTS.items():
        m = re.search(rf"`{key}` \((\d+)(?: (ms|s))?\)", text)
        if not m:
            problems.append(f"README.md: pool parameter {key} is not documented as `{key}` (N unit)")
        elif (int(m.group(1)), m.group(2) or "") != (default, units[key]):
            problems.append(f"README.md: `{key}` ({m.group(1)} {m.group(2) or ''}), storage.database {default} {units[key]}")
    report(problems)


# ---------------------------------------------------------------------------------------
# Durations in prose

_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "five": 5, "ten": 10}
_UNITS = {"ms": 0.001, "millisecond": 0.001, "s": 1, "second": 1, "min": 60, "minute": 60,
          "h": 3600, "hour": 3600, "day": 86400}


def seconds(text: str) -> float:
    """'5 minutes', '24 h', 'a minute', 'two seconds', '250 ms' -> seconds."""
    number, unit = text.split()
    value = _NUMBERS[number] if number in _NUMBERS else float(number)
    unit = unit if unit in _UNITS else unit.removesuffix("s")
    return value * _UNITS[unit]


def _signature_default(function, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def _fetcher(name: str) -> Any:
    from keystore.jwks_uri import JWKSFetcher
    return _signature_default(JWKSFetcher.__init__, name)


def _schema(*path: str) -> Any:
    return config.SCHEMA[tuple(path[:-1])][path[-1]][1]


def _recheck() -> float:
    from core.services import KEYSTORE_RECHECK_SECONDS
    return KEYSTORE_RECHECK_SECONDS


def _ratelimit(name: str) -> float:
    from core import ratelimit
    return getattr(ratelimit, name)


_DURATION = r"(\w+ \w+)"
# (file, pattern with one group per duration, what each duration must equal)
PROSE = [
    ("README.md", rf"max-age` is honoured between {_DURATION} and {_DURATION}, {_DURATION} without one",
     lambda: (_fetcher("min_cache_seconds"), _fetcher("max_cache_seconds"), _fetcher("default_cache_seconds"))),
    ("README.md", rf"re-fetched at most once per `refresh_interval` \(({_DURATION[1:-1]})\)",
     lambda: (_schema("oauth", "jwks_fetch", "refresh_interval"),)),
    ("README.md", rf"for at most {_DURATION} past its freshness",
     lambda: (_fetcher("max_stale_seconds"),)),
    ("README.md", rf"at most the URI's `max-age` \({_DURATION} – {_DURATION}, {_DURATION} by default\)",
     lambda: (_fetcher("min_cache_seconds"), _fetcher("max_cache_seconds"), _fetcher("default_cache_seconds"))),
    ("README.md", r"an unknown `kid` re-fetches at most once (an? \w+)\b",
     lambda: (_schema("oauth", "jwks_fetch", "refresh_interval"),)),
    ("README.md", r"authorization_code_validity` seconds \((\d+) by default\)",
     lambda: (_schema("oauth", "token_validation", "authorization_code_validity"),)),
    ("README.md", r"A code is valid for (\d+ seconds)",
     lambda: (_schema("oauth", "token_validation", "authorization_code_validity"),)),
    ("README.md", rf"the running server picks it up within {_DURATION}\)", lambda: (_recheck(),)),
    ("README.md", rf"re-reads the keystore file when it changes \(within {_DURATION}\)", lambda: (_recheck(),)),
    ("README.md", rf"other workers pick them up within {_DURATION}\.", lambda: (_recheck(),)),
    ("README.md", rf"each node re-reads it within {_DURATION} of a change", lambda: (_recheck(),)),
    ("README.md", rf"{_DURATION} timeouts, a connection pool per worker", lambda: (_ratelimit("REDIS_TIMEOUT"),)),
    ("README.md", rf"asked again every {_DURATION}\)", lambda: (_ratelimit("REDIS_RETRY_AFTER_FAILURE"),)),
    ("README.md", r"the log says so once (an? \w+) \(logger `core.ratelimit`\)",
     lambda: (_ratelimit("REDIS_WARN_EVERY"),)),
    ("deployment.toml", r"the log says so once (an? \w+): the token endpoint", lambda: (_ratelimit("REDIS_WARN_EVERY"),)),
]


def _prose(file: str) -> str:
    text = (ROOT / file).read_text(encoding="utf-8")
    # Sentences wrap over lines, also inside `# …` comments (deployment.toml, shell examples).
    return re.sub(r"\s*\n\s*(?:#\s*)?", " ", text)


@pytest.mark.parametrize("file, pattern, expected", PROSE, ids=[p[1][:40] for p in PROSE])
def test_prose_durations_match_the_code(file, pattern, expected):
    matches = list(re.finditer(pattern, _prose(file)))
    assert matches, f"{file} no longer says {pattern!r}: update PROSE so that the new wording stays checked"
    problems = []
    for m in matches:
        for written, value in zip(m.groups(), expected()):
            if not re.search(r"[a-z]", written):
                written += " s"
            if seconds(written) != value:
                problems.append(f"{file}: {m.group(0)!r}: {written!r} is {seconds(written):g} s, the code says {value} s")
    report(problems)


# ---------------------------------------------------------------------------------------
# Lower layers

# Parameters of lower layers that a configured value is passed to (core.services passes every
# one of them): their own defaults, kept for direct callers, must be the schema's.
MIRRORS = [
    ("keystore.jwks_uri.JWKSFetcher", "require_https", ("oauth", "jwks_fetch", "require_https")),
    ("keystore.jwks_uri.JWKSFetcher", "allowed_hosts", ("oauth", "jwks_fetch", "allowed_hosts")),
    ("keystore.jwks_uri.JWKSFetcher", "timeout", ("oauth", "jwks_fetch", "timeout")),
    ("keystore.jwks_uri.JWKSFetcher", "max_bytes", ("oauth", "jwks_fetch", "max_bytes")),
    ("keystore.jwks_uri.JWKSFetcher", "refetch_interval_seconds", ("oauth", "jwks_fetch", "refresh_interval")),
    ("core.ratelimit.FailureLimiter", "store", ("oauth", "rate_limit", "store")),
]


def test_lower_layer_defaults_are_the_schema_defaults():
    import importlib
    problems = []
    for dotted, parameter, path in MIRRORS:
        module, name = dotted.rsplit(".", 1)
        default = _signature_default(getattr(importlib.import_module(module), name).__init__, parameter)
        if default is inspect.Parameter.empty:
            continue  # no default of its own: nothing can drift
        schema = _schema(*path)
        if (list(default) if isinstance(default, (list, tuple)) else default) != schema:
            problems.append(f"{dotted}({parameter}={default!r}), schema {'.'.join(path)} = {schema!r}")
    own = [f.name for f in dataclasses.fields(config.Settings)
           if f.default is not dataclasses.MISSING]
    if own:
        problems.append(f"core.config.Settings has defaults of its own: {', '.join(own)} (the schema has them)")
    report(problems)
