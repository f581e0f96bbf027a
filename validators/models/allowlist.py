"""The reviewed allowlist: globals a model pickle may import without being flagged.

The entries are data, one TOML profile per ecosystem in ``profiles/`` (``stdlib``, ``numpy``,
``scipy``, ``torch``, ``sklearn``, ``pandas``, ``xgboost``, ``lightgbm``, ``catboost``). Each
profile names the library versions it was checked against and, for every entry, the reduce
path it is admitted for (``[reduce]``: a class made by NEWOBJ/REDUCE and given its state, a
Cython unpickle helper, a rebuild function, a pure function kept as a value, a constant, a
native model parser). Entries are exact qualified names: never a module wildcard.

All profiles are active by default; a policy's ``[pickle] profiles = [...]`` chooses others
(``ScanOptions.pickle_profiles``) and ``allow_globals`` adds single names.
"""

from __future__ import annotations

import functools
import hashlib
import pprint
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from custody.errors import UsageError

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
_PROFILE_KEYS = {"name", "library", "revision", "checked", "reduce", "globals"}


@dataclass(frozen=True)
class Profile:
    """One ecosystem's reviewed globals: ``entries`` maps a qualified name to its reduce kind."""

    name: str
    library: str
    revision: int
    checked: str
    reduce: Mapping[str, str]
    entries: Mapping[str, str]

    def why(self, qualified: str) -> str:
        kind = self.entries[qualified]
        return f"{self.name} profile ({kind}): {self.reduce[kind]}"


def _bad(path: Path, problem: str) -> UsageError:
    return UsageError(f"allowlist profile {path.name} is malformed: {problem}",
                      subject=str(path), hint="restore the file from the custody package")


def _parse(path: Path, text: str) -> Profile:
    data = tomllib.loads(text)
    if set(data) != _PROFILE_KEYS:
        raise _bad(path, f"needs exactly the keys {sorted(_PROFILE_KEYS)}")
    reduce, tables = data["reduce"], data["globals"]
    if not isinstance(reduce, dict) or not isinstance(tables, dict):
        raise _bad(path, "[reduce] and [globals] must be tables")
    entries: dict[str, str] = {}
    for kind, modules in tables.items():
        if kind not in reduce:
            raise _bad(path, f"[globals.{kind}] has no [reduce] {kind} description")
        for module, names in modules.items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise _bad(path, f"[globals.{kind}] {module!r} must list names")
            for name in names:
                if "*" in module or "*" in name or not name:
                    raise _bad(path, f"{module}.{name}: wildcards are not allowed")
                qualified = f"{module}.{name}"
                if qualified in entries:
                    raise _bad(path, f"{qualified} is listed twice")
                entries[qualified] = kind
    return Profile(str(data["name"]), str(data["library"]), int(data["revision"]),
                   str(data["checked"]), dict(reduce), entries)


def _texts() -> dict[str, str]:
    """Each shipped profile's TOML by file stem: the reviewed source of the compiled table."""
    return {path.stem: path.read_text(encoding="utf-8")
            for path in sorted(PROFILE_DIR.glob("*.toml"))}


@functools.cache
def _profile(stem: str) -> Profile:
    from custody.validators.models.allowlist_compiled import PROFILES

    return Profile(*PROFILES[stem][1:])


@functools.cache
def _stems() -> tuple[str, ...]:
    from custody.validators.models.allowlist_compiled import PROFILES

    return tuple(sorted(PROFILES))


def compile_profiles() -> str:
    """The text of ``allowlist_compiled.py``, the table the scanner reads (parsing the TOML at
    every start cost more than scanning a 1 GiB checkpoint): regenerate it after editing a
    profile with ``python -m custody.validators.models.allowlist >
    validators/models/allowlist_compiled.py``; tests/validators/test_scan_profiles.py fails
    while it is stale."""
    table = {}
    for stem, text in _texts().items():
        p = _checked(stem, text)
        table[stem] = (hashlib.sha256(text.encode("utf-8")).hexdigest(), p.name, p.library,
                       p.revision, p.checked, dict(p.reduce), dict(p.entries))
    return ('"""Generated from profiles/*.toml by ``python -m '
            'custody.validators.models.allowlist``: do not edit.\n\n'
            'Each value: the TOML\'s sha256, then the Profile fields."""\n'
            "# ruff: noqa: E501\n\n"
            "PROFILES: dict[str, tuple[str, str, str, int, str, dict[str, str], dict[str, str]]]"
            f" = {pprint.pformat(table, width=99, sort_dicts=True)}\n")


def _checked(stem: str, text: str) -> Profile:
    path = PROFILE_DIR / f"{stem}.toml"
    profile = _parse(path, text)
    if profile.name != stem:
        raise _bad(path, f"its name {profile.name!r} is not its file name")
    return profile


def profiles() -> dict[str, Profile]:
    """Every shipped profile by name."""
    return {stem: _profile(stem) for stem in _stems()}


def _default_profiles() -> tuple[str, ...]:
    return _stems()


def check_profile_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a sorted tuple; UsageError naming the first unknown one."""
    known = _stems()
    chosen = tuple(sorted(set(names)))
    for name in chosen:
        if name not in known:
            raise UsageError(f"unknown pickle allowlist profile {name!r}",
                             hint=f"the profiles are: {', '.join(sorted(known))}")
    return chosen


@functools.lru_cache(maxsize=32)
def _index(selected: tuple[str, ...]) -> dict[str, Profile]:
    index: dict[str, Profile] = {}
    for stem in selected:  # sorted: the first profile that lists a name admits it
        profile = _profile(stem)
        for qualified in profile.entries:
            index.setdefault(qualified, profile)
    return index


def profile_of(module: str, name: str, selected: tuple[str, ...] | None = None) -> Profile | None:
    chosen = _default_profiles() if selected is None else check_profile_names(selected)
    return _index(chosen).get(f"{module}.{name}")


def is_allowlisted(module: str, name: str, selected: tuple[str, ...] | None = None) -> bool:
    return profile_of(module, name, selected) is not None


# TorchScript archives are read by torch.jit.load's own unpickler, which resolves ``__torch__``
# classes from the archive's compiled code/ and admits only these helper functions.
_TORCHSCRIPT: frozenset[str] = frozenset(
    f"torch.jit._pickle.{name}"
    for name in (
        "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist",
        "build_tensor_from_id", "restore_type_tag",
    )
)  # fmt: skip


def is_torchscript_allowed(module: str, name: str) -> bool:
    return (
        module == "__torch__"
        or module.startswith("__torch__.")
        or (f"{module}.{name}" in _TORCHSCRIPT)
    )


if __name__ == "__main__":
    print(compile_profiles(), end="")
