"""The allowlist profiles: data that is exact and reviewed, covering what the real libraries pickle.

The coverage tests regenerate each ecosystem's files from the installed library
(``support.scan_ecosystems``) and fail, naming the global and the library version, when that
version pickles a class the profile lacks: that is the signal to review the class and add it.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path

import pytest
from support import scan_ecosystems

from custody.errors import PolicyFileError, UsageError
from custody.validators.findings import Severity
from custody.validators.interface import ScanOptions
from custody.validators.models.allowlist import (
    PROFILE_DIR,
    check_profile_names,
    compile_profiles,
    profiles,
)
from custody.validators.models.content import scan_content
from custody.validators.models.context import Ctx

_LIBRARY = {"sklearn": "scikit-learn", "stdlib": "python", "xgboost": "xgboost",
            "lightgbm": "lightgbm", "catboost": "catboost", "pandas": "pandas", "numpy": "numpy",
            "scipy": "scipy", "torch": "torch"}
_MODULE = {"sklearn": "sklearn", "stdlib": "json"}


def _scan(data: bytes, options: ScanOptions | None = None) -> list[object]:
    return scan_content(io.BytesIO(data), len(data), Ctx.root(options or ScanOptions(), "f"))


def test_every_profile_is_exact_and_says_what_its_entries_reconstruct() -> None:
    shipped = profiles()
    assert set(shipped) == {p.stem for p in PROFILE_DIR.glob("*.toml")}
    assert set(shipped) >= {"stdlib", "numpy", "scipy", "torch", "sklearn", "pandas", "xgboost",
                            "lightgbm", "catboost"}
    for profile in shipped.values():
        assert profile.checked and profile.revision >= 1
        for qualified, kind in profile.entries.items():
            assert "*" not in qualified and kind in profile.reduce, qualified
            assert len(profile.reduce[kind]) > 40  # a sentence on what the reduce path calls


def test_the_compiled_table_the_scanner_reads_is_the_shipped_toml() -> None:
    """The scanner reads allowlist_compiled.py (no TOML parse per process): it must be exactly
    what the reviewed TOML compiles to, or an edited profile would not take effect."""
    compiled = Path(__file__).resolve().parents[2] / "validators/models/allowlist_compiled.py"
    assert compiled.read_text(encoding="utf-8") == compile_profiles(), (
        "stale: run python -m custody.validators.models.allowlist > "
        "validators/models/allowlist_compiled.py")


def test_a_profile_edit_changes_the_compiled_table(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from custody.validators.models import allowlist

    edited = tmp_path / "profiles"
    edited.mkdir()
    for path in PROFILE_DIR.glob("*.toml"):
        (edited / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    torch_toml = edited / "torch.toml"
    torch_toml.write_text(torch_toml.read_text(encoding="utf-8").replace(
        '"torch" = [', '"torch" = [\n    "ExtraReviewedClass",', 1), encoding="utf-8")
    monkeypatch.setattr(allowlist, "PROFILE_DIR", edited)
    assert "torch.ExtraReviewedClass" in compile_profiles()
    assert compile_profiles() != (PROFILE_DIR.parent / "allowlist_compiled.py").read_text(
        encoding="utf-8")


# Entries of denylisted modules, each reviewed: constructing a path does no I/O (its methods do,
# and they stay critical: ``pathlib.Path.write_text``); _get_layout maps a name to a layout and is
# on torch.load(weights_only=True)'s own list.
_REVIEWED_EXCEPTIONS = {"pathlib", "pathlib._local", "torch.serialization._get_layout"}


def test_no_profile_admits_a_module_that_runs_code() -> None:
    """A profile entry never names a callable of a denylisted module (os, subprocess, ...)."""
    from custody.validators.models.policy import classify_global

    for profile in profiles().values():
        for qualified in profile.entries:
            module, _, name = qualified.rpartition(".")
            if module in _REVIEWED_EXCEPTIONS or qualified in _REVIEWED_EXCEPTIONS:
                continue
            assert classify_global(module, name, profiles=())[0] is not Severity.CRITICAL, qualified
    assert classify_global("pathlib", "Path.write_text")[0] is Severity.CRITICAL


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(scan_ecosystems.ECOSYSTEMS))
def test_the_installed_library_pickles_nothing_its_profile_lacks(name: str) -> None:
    module = _MODULE.get(name, name)
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    version = scan_ecosystems.version(_LIBRARY[name]) if name != "stdlib" else "python"
    missing: dict[str, str] = {}
    refused: dict[str, list[str]] = {}
    count = 0
    for label, data in scan_ecosystems.ECOSYSTEMS[name]():
        count += 1
        for f in _scan(data):
            if f.rule_id == "pickle.global.unknown":  # type: ignore[attr-defined]
                missing.setdefault(str(f.evidence["global"]), label)  # type: ignore[attr-defined]
            elif f.severity >= Severity.MEDIUM:  # type: ignore[attr-defined]
                refused.setdefault(label, []).append(f.message)  # type: ignore[attr-defined]
    assert count >= 5
    assert not missing, (f"{_LIBRARY[name]} {version} pickles globals that "
                         f"validators/models/profiles/{name}.toml lacks (review each: what does "
                         f"its reduce path call?): {missing}")
    assert not refused, refused


def test_dropping_a_profile_makes_its_classes_unknown_again() -> None:
    from sklearn.linear_model import LogisticRegression

    data = pickle.dumps(LogisticRegression())
    assert _scan(data) == []
    only_numpy = ScanOptions(pickle_profiles=("numpy", "stdlib"))
    found = {str(f.evidence.get("global")) for f in _scan(data, only_numpy)}  # type: ignore[attr-defined]
    assert "sklearn.linear_model._logistic.LogisticRegression" in found


def test_an_unknown_profile_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="tensorflow"):
        check_profile_names(["numpy", "tensorflow"])


def _policy(tmp_path: Path, pickle_table: str) -> Path:
    from custody.signing.keys import generate_key_pair

    if not (tmp_path / "k.pub").exists():
        generate_key_pair(tmp_path / "k")
    path = tmp_path / "policy.toml"
    path.write_text('[signers.a]\nkeys = ["k.pub"]\n[[trust]]\nsigners = ["a"]\n'
                    f"[pickle]\n{pickle_table}\n", encoding="utf-8")
    return path


def test_policy_profiles_choose_the_allowlist(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(LogisticRegression()))
    cli("scan", model, cwd=tmp_path).expect(0)
    narrow = _policy(tmp_path, 'profiles = ["numpy", "stdlib"]')
    cli("scan", model, "--policy", narrow, cwd=tmp_path).expect(
        1, "sklearn.linear_model._logistic.LogisticRegression")
    both = _policy(tmp_path, 'profiles = ["numpy", "stdlib"]\n'
                   'allow_globals = ["sklearn.linear_model._logistic.LogisticRegression"]')
    cli("scan", model, "--policy", both, cwd=tmp_path).expect(0)


def test_policy_with_an_unknown_profile_is_refused_with_the_key(tmp_path: Path) -> None:
    from custody.provenance.policy.file import load_policy

    with pytest.raises(PolicyFileError, match=r"pickle\.profiles.*keras"):
        load_policy(_policy(tmp_path, 'profiles = ["keras"]'))
    assert load_policy(_policy(tmp_path, "")).pickle_profiles is None
    assert load_policy(_policy(tmp_path, 'profiles = ["torch"]')).pickle_profiles == ("torch",)
