"""Benign model files of whole ecosystems, written by the real libraries at test time.

Each generator yields ``(label, bytes)`` pairs: an object pickled at protocols 2 to 5, dumped with
joblib (plain and compressed) or written by the library's own ``to_pickle``. The coverage test
(``tests/validators/test_scan_profiles.py``) scans every one and fails, naming the global and the
library version, when the installed version pickles a class that the profile lacks; the benign
corpus test asserts that none of them is refused.

Nothing here is ever loaded back: the files only go to the scanner.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import io
import pickle
import warnings
from collections.abc import Callable, Iterator

Generated = Iterator[tuple[str, bytes]]
ECOSYSTEMS: dict[str, Callable[[], Generated]] = {}


def ecosystem(name: str) -> Callable[[Callable[[], Generated]], Callable[[], Generated]]:
    def register(fn: Callable[[], Generated]) -> Callable[[], Generated]:
        ECOSYSTEMS[name] = fn
        return fn

    return register


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def pickles(label: str, obj: object, protocols: tuple[int, ...] = (2, 4, 5)) -> Generated:
    for proto in protocols:
        yield f"{label}.p{proto}.pkl", pickle.dumps(obj, protocol=proto)


def joblibs(label: str, obj: object, compress: tuple[object, ...] = (0, 3)) -> Generated:
    import joblib

    for level in compress:
        buf = io.BytesIO()
        joblib.dump(obj, buf, compress=level)  # type: ignore[arg-type]
        tag = level if isinstance(level, int) else level[0]  # type: ignore[index]
        yield f"{label}.z{tag}.joblib", buf.getvalue()


def _data() -> dict[str, object]:
    import numpy as np

    rng = np.random.RandomState(0)
    x = rng.rand(60, 4) + 0.1
    return {
        "x": x,
        "yc": np.arange(60) % 3,
        "yb": np.arange(60) % 2,
        "yr": x @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.rand(60) * 0.1,
        "ym": np.c_[np.arange(60) % 2, (np.arange(60) // 2) % 2],
        "text": ["alpha beta gamma", "beta gamma delta", "gamma delta epsilon"] * 20,
    }


# -- scikit-learn ------------------------------------------------------------------------------
def _sk_instance(cls: type) -> object | None:
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    params = inspect.signature(cls).parameters
    is_regressor = "Regressor" in cls.__name__ or "Regression" in cls.__name__
    base = LinearRegression() if is_regressor else LogisticRegression(max_iter=50)
    tree = DecisionTreeRegressor(max_depth=2) if is_regressor else DecisionTreeClassifier()
    kwargs: dict[str, object] = {}
    for name, param in params.items():
        if name in ("estimator", "base_estimator") and param.default is None:
            kwargs[name] = tree if "Boost" in cls.__name__ else base
            continue
        if param.default is not inspect.Parameter.empty:
            continue
        if name in ("estimator", "base_estimator"):
            kwargs[name] = tree if "Boost" in cls.__name__ else base
        elif name == "estimators":
            kwargs[name] = [("a", base), ("b", tree)]
        elif name == "transformer_list":
            from sklearn.preprocessing import StandardScaler

            kwargs[name] = [("s", StandardScaler())]
        elif name == "steps":
            kwargs[name] = [("m", base)]
        elif name == "transformers":
            from sklearn.preprocessing import StandardScaler

            kwargs[name] = [("s", StandardScaler(), [0, 1])]
        elif name in {"param_grid", "param_distributions"}:
            kwargs[name] = {"fit_intercept": [True, False]}
        elif name == "score_func":
            from sklearn.feature_selection import f_classif

            kwargs[name] = f_classif
        elif name == "n_components":
            kwargs[name] = 2
        else:
            return None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError):
        return None


def _sk_fit(est: object, d: dict[str, object]) -> object:
    from sklearn.base import is_classifier, is_regressor

    x, text = d["x"], d["text"]
    attempts: list[tuple[object, ...]] = []
    try:
        classifier, regressor = is_classifier(est), is_regressor(est)
    except (AttributeError, TypeError, ValueError):
        classifier = regressor = False
    if classifier:
        attempts += [(x, d["yc"]), (x, d["yb"]), (x, d["ym"])]
    elif regressor:
        attempts += [(x, d["yr"]), (x, d["ym"])]
    attempts += [(x,), (x, d["yb"]), (text,), ([{"a": 1, "b": 2}, {"a": 3}],), (d["yc"],),
                 ([["a", "b"], ["b"]],), (x[:, 0], d["yr"]), (x.reshape(60, 2, 2),)]
    for args in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return est.fit(*args)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001, S112 - try the next kind of input
            continue
    return est  # an unfitted estimator pickles too


def sklearn_estimators() -> Iterator[tuple[str, object]]:
    """Every public scikit-learn estimator, fitted on small data where it can be."""
    from sklearn.utils import all_estimators

    d = _data()
    for name, cls in all_estimators():
        est = _sk_instance(cls)
        if est is not None:
            yield name, _sk_fit(est, d)


def sklearn_extras() -> Iterator[tuple[str, object]]:
    """Models whose pickles reach helper classes the default estimators do not."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.neighbors import BallTree, KDTree, KNeighborsClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    d = _data()
    x, yb, yc, yr = d["x"], d["yb"], d["yc"], d["yr"]
    for loss in ("log_loss", "exponential"):
        yield f"GradientBoosting_{loss}", GradientBoostingClassifier(
            loss=loss, n_estimators=3).fit(x, yb)
    for loss in ("squared_error", "absolute_error", "huber", "quantile"):
        yield f"GradientBoostingRegressor_{loss}", GradientBoostingRegressor(
            loss=loss, n_estimators=3).fit(x, yr)
    yield "GradientBoosting_multiclass", GradientBoostingClassifier(n_estimators=3).fit(x, yc)
    for loss in ("squared_error", "absolute_error", "poisson", "gamma", "quantile"):
        kw = {"quantile": 0.5} if loss == "quantile" else {}
        yield f"HistGradientBoostingRegressor_{loss}", HistGradientBoostingRegressor(
            loss=loss, max_iter=3, **kw).fit(x, np.abs(yr) + 0.1)
    yield "HistGradientBoosting_multiclass", HistGradientBoostingClassifier(max_iter=3).fit(x, yc)
    yield "HistGradientBoosting_categorical", HistGradientBoostingClassifier(
        max_iter=3, categorical_features=[0]).fit(np.c_[yc, x[:, 1:]], yb)
    yield "GridSearchCV_masked_cv_results", GridSearchCV(
        LogisticRegression(max_iter=50), {"C": [0.1, 1.0], "penalty": ["l2", None]}, cv=2
    ).fit(x, yb)
    yield "RandomizedSearchCV", RandomizedSearchCV(
        SGDClassifier(), {"alpha": [1e-4, 1e-3]}, n_iter=2, cv=2, random_state=0).fit(x, yb)
    for func in (np.log1p, np.expm1, np.sqrt, np.abs, np.log, np.exp):
        yield f"FunctionTransformer_{func.__name__}", FunctionTransformer(
            func, inverse_func=np.expm1 if func is np.log1p else None).fit(x)
    for algorithm in ("kd_tree", "ball_tree", "brute"):
        yield f"KNeighbors_{algorithm}", KNeighborsClassifier(algorithm=algorithm).fit(x, yb)
    yield "KDTree", KDTree(x)
    yield "BallTree", BallTree(x, metric="manhattan")
    cat = np.c_[x, yc]
    ct = ColumnTransformer([("num", StandardScaler(), [0, 1]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), [4])])
    yield "Pipeline_ColumnTransformer", Pipeline([("ct", ct), ("lr", LogisticRegression())]).fit(
        cat, yb)
    yield "make_pipeline", make_pipeline(StandardScaler(), LogisticRegression()).fit(x, yb)


@ecosystem("sklearn")
def gen_sklearn() -> Generated:
    for name, est in [*sklearn_estimators(), *sklearn_extras()]:
        yield from pickles(f"sklearn/{name}", est, (4, 5))
        yield from joblibs(f"sklearn/{name}", est, (0,))
    # a few protocol 2 pickles and compressed joblib files, which take other reduce paths
    for name, est in sklearn_extras():
        yield from pickles(f"sklearn/{name}", est, (2,))
        yield from joblibs(f"sklearn/{name}", est, (("gzip", 3),))


# -- pandas ------------------------------------------------------------------------------------
def pandas_objects() -> Iterator[tuple[str, object]]:
    import numpy as np
    import pandas as pd

    n = 4
    columns = {
        "int": np.arange(n),
        "float": np.linspace(0, 1, n),
        "bool": np.arange(n) % 2 == 0,
        "str": ["a", "b", "c", "d"],
        "object": ["a", 1, None, 2.5],
        "category": pd.Categorical(["x", "y", "x", "z"]),
        "ordered_category": pd.Categorical(["lo", "hi", "lo", "hi"], ordered=True),
        "datetime": pd.date_range("2024-01-01", periods=n),
        "datetime_tz": pd.date_range("2024-01-01", periods=n, tz="Europe/Paris"),
        "datetime_utc": pd.date_range("2024-01-01", periods=n, tz="UTC"),
        "timedelta": pd.to_timedelta(np.arange(n), unit="D"),
        "period": pd.period_range("2024-01", periods=n, freq="M"),
        "interval": pd.interval_range(0, n),
        "nullable_int": pd.array([1, None, 3, 4], dtype="Int64"),
        "nullable_float": pd.array([1.5, None, 3.0, 4.0], dtype="Float64"),
        "nullable_bool": pd.array([True, None, False, True], dtype="boolean"),
        "string": pd.array(["a", None, "c", "d"], dtype="string"),
        "sparse": pd.arrays.SparseArray([0, 0, 1, 0]),
        "complex": np.array([1j, 2, 3, 4]),
    }
    yield "DataFrame_all_dtypes", pd.DataFrame(columns)
    for name, values in columns.items():
        yield f"Series_{name}", pd.Series(values, name=name)
    yield "Series_tz_aware_index", pd.Series(
        np.arange(n), index=pd.date_range("2024", periods=n, tz="America/New_York"))
    yield "DataFrame_MultiIndex", pd.DataFrame(
        {"v": np.arange(n)}, index=pd.MultiIndex.from_product([["a", "b"], [1, 2]]))
    yield "DataFrame_MultiIndex_columns", pd.DataFrame(
        np.ones((2, 2)), columns=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    yield "Categorical", pd.Categorical(["a", "b", "a"])
    yield "CategoricalIndex", pd.CategoricalIndex(["a", "b"])
    yield "PeriodIndex", pd.period_range("2024", periods=3, freq="Q")
    yield "IntervalIndex", pd.interval_range(0, 3)
    yield "RangeIndex", pd.RangeIndex(5)
    yield "TimedeltaIndex", pd.timedelta_range("1D", periods=3)
    yield "Timestamp_tz", pd.Timestamp("2024-01-01", tz="Asia/Tokyo")
    yield "Timedelta", pd.Timedelta("1D")
    yield "Period", pd.Period("2024-01", freq="M")
    yield "Interval", pd.Interval(0, 1, closed="both")
    yield "NaT_NA", [pd.NaT, pd.NA]
    yield "DateOffset", [pd.DateOffset(days=2), pd.offsets.MonthEnd(), pd.offsets.BDay(3)]
    yield "resample_freq", pd.Series(np.arange(6), index=pd.date_range(
        "2024", periods=6, freq="h")).resample("2h").sum()
    yield "groupby_result", pd.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]}).groupby(
        "k").agg(["sum", "mean"])


@ecosystem("pandas")
def gen_pandas() -> Generated:
    import pandas as pd

    for name, obj in pandas_objects():
        yield from pickles(f"pandas/{name}", obj, (2, 4, 5))
        for compression, suffix in ((None, "pkl"), ("gzip", "pkl.gz"), ("bz2", "pkl.bz2"),
                                    ("xz", "pkl.xz"), ("zip", "pkl.zip")):
            buf = io.BytesIO()
            pd.to_pickle(obj, buf, compression=compression)
            yield f"pandas/{name}.to_pickle.{suffix}", buf.getvalue()


# -- gradient boosting libraries ---------------------------------------------------------------
@ecosystem("xgboost")
def gen_xgboost() -> Generated:
    import xgboost

    d = _data()
    x = d["x"]
    models = {
        "XGBClassifier": xgboost.XGBClassifier(n_estimators=3).fit(x, d["yb"]),
        "XGBClassifier_multiclass": xgboost.XGBClassifier(n_estimators=3).fit(x, d["yc"]),
        "XGBRegressor": xgboost.XGBRegressor(n_estimators=3).fit(x, d["yr"]),
        "XGBRanker": xgboost.XGBRanker(n_estimators=3).fit(x, d["yb"], qid=d["yc"] * 0),
        "XGBRFClassifier": xgboost.XGBRFClassifier(n_estimators=3).fit(x, d["yb"]),
        "Booster": xgboost.train({}, xgboost.DMatrix(x, label=d["yr"]), num_boost_round=2),
    }
    for name, model in models.items():
        yield from pickles(f"xgboost/{name}", model, (2, 5))
        yield from joblibs(f"xgboost/{name}", model, (0, 3, "lz4"))


@ecosystem("lightgbm")
def gen_lightgbm() -> Generated:
    import lightgbm
    import pandas as pd

    d = _data()
    x = d["x"]
    frame = pd.DataFrame(x, columns=list("abcd")).assign(c=pd.Categorical(d["yc"]))
    models = {
        "LGBMClassifier": lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(x, d["yb"]),
        "LGBMClassifier_multiclass": lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(
            x, d["yc"]),
        "LGBMRegressor": lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(x, d["yr"]),
        "LGBMClassifier_pandas_categorical": lightgbm.LGBMClassifier(
            n_estimators=3, verbose=-1).fit(frame, d["yb"]),
        "Booster": lightgbm.train({"verbose": -1}, lightgbm.Dataset(x, label=d["yr"]),
                                  num_boost_round=2),
    }
    for name, model in models.items():
        yield from pickles(f"lightgbm/{name}", model, (2, 5))
        yield from joblibs(f"lightgbm/{name}", model, (0, 3, "lz4"))


@ecosystem("catboost")
def gen_catboost() -> Generated:
    import catboost

    d = _data()
    x = d["x"]
    common = {"iterations": 3, "verbose": False, "allow_writing_files": False}
    models = {
        "CatBoostClassifier": catboost.CatBoostClassifier(**common).fit(x, d["yb"]),
        "CatBoostClassifier_multiclass": catboost.CatBoostClassifier(**common).fit(x, d["yc"]),
        "CatBoostRegressor": catboost.CatBoostRegressor(**common).fit(x, d["yr"]),
    }
    for name, model in models.items():
        yield from pickles(f"catboost/{name}", model, (2, 5))
        yield from joblibs(f"catboost/{name}", model, (0, 3))


# -- numpy, scipy, the standard library --------------------------------------------------------
@ecosystem("numpy")
def gen_numpy() -> Generated:
    import numpy as np

    objects = {
        "arrays": [np.arange(5), np.ones((2, 2), dtype="f4"), np.array(["a", "bc"]),
                   np.array([b"x"]), np.array([1, "two"], dtype=object),
                   np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
                   np.array(["2024-01-01"], dtype="datetime64[D]"),
                   np.array([1], dtype="timedelta64[s]"), np.asfortranarray(np.eye(3))],
        "scalars": [np.float32(1), np.int64(2), np.bool_(True), np.complex128(1j),
                    np.datetime64("2024-01-01"), np.str_("s"), np.uint8(3), np.float16(1)],
        "dtypes": [np.dtype("f8"), np.dtype([("x", "i4")]), np.dtype("U3"), np.dtype("O")],
        "masked": np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),
        "masked_constant": np.ma.masked,
        "matrix": np.asmatrix(np.eye(2)),
        "random": [np.random.default_rng(0), np.random.RandomState(1),
                   np.random.Generator(np.random.PCG64DXSM(2)), np.random.SeedSequence(3),
                   np.random.Generator(np.random.Philox(4)),
                   np.random.Generator(np.random.SFC64(5)),
                   np.random.Generator(np.random.MT19937(6))],
        "ufuncs": [np.log1p, np.expm1, np.add, np.sqrt, np.exp, np.log],
        "recarray": np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    }
    for name, obj in objects.items():
        yield from pickles(f"numpy/{name}", obj, (2, 3, 4, 5))
        yield from joblibs(f"numpy/{name}", obj, (0, 3))


@ecosystem("scipy")
def gen_scipy() -> Generated:
    import numpy as np
    import scipy.sparse as sp
    from scipy import interpolate, stats

    m = np.eye(3)
    objects: dict[str, object] = {
        f"sparse_{fmt}": getattr(sp, f"{fmt}_matrix")(m)
        for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")
    }
    objects.update({
        f"sparse_array_{fmt}": getattr(sp, f"{fmt}_array")(m)
        for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")
    })
    x = np.linspace(0, 1, 8)
    objects["BSpline"] = interpolate.make_interp_spline(x, x**2)
    objects["CubicSpline"] = interpolate.CubicSpline(x, x**2)
    objects["interp1d"] = interpolate.interp1d(x, x**2)
    objects["PchipInterpolator"] = interpolate.PchipInterpolator(x, x**2)
    objects["gaussian_kde"] = stats.gaussian_kde(np.random.RandomState(0).randn(20))
    for name, obj in objects.items():
        yield from pickles(f"scipy/{name}", obj, (2, 4, 5))
        yield from joblibs(f"scipy/{name}", obj, (0,))


@ecosystem("stdlib")
def gen_stdlib() -> Generated:
    import array
    import collections
    import datetime
    import decimal
    import enum
    import fractions
    import pathlib
    import uuid
    import zoneinfo

    class _Color(enum.Enum):  # local classes cannot be pickled; only builtins below
        RED = 1

    del _Color
    values = {
        "containers": [collections.OrderedDict(a=1), collections.defaultdict(list, a=[1]),
                       collections.Counter("abca"), collections.deque([1, 2], maxlen=5),
                       {1, 2}, frozenset({3}), bytearray(b"ab"), range(3), slice(1, 5, 2)],
        "uuid": [uuid.uuid4(), uuid.UUID(int=5)],
        "array": [array.array("d", [1.0, 2.0]), array.array("b", [1]), array.array("u", "ab")],
        "datetime": [datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
                     datetime.date(2024, 1, 1), datetime.time(1, 2), datetime.timedelta(3),
                     datetime.timezone(datetime.timedelta(hours=2), "X"),
                     datetime.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))],
        "numbers": [decimal.Decimal("1.5"), fractions.Fraction(1, 3), complex(1, 2), 10**40],
        "paths": [pathlib.PurePosixPath("a/b"), pathlib.PureWindowsPath("c:/x")],
    }
    for name, obj in values.items():
        yield from pickles(f"stdlib/{name}", obj, (0, 1, 2, 3, 4, 5))


# -- torch ---------------------------------------------------------------------------------------
@ecosystem("torch")
def gen_torch() -> Generated:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 1, 4, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    objects = {
        "state_dict": model.state_dict(),
        "checkpoint": {"model": model.state_dict(), "optimizer": opt.state_dict(),
                       "scheduler": sched.state_dict(), "epoch": 3,
                       "rng": torch.get_rng_state()},
        "dtypes": {str(dt): torch.zeros(2, dtype=dt) for dt in (
            torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.bool, torch.complex64,
            torch.int64, torch.float64, torch.float8_e4m3fn, torch.uint16)},
        "special": {"param": torch.nn.Parameter(torch.ones(2)), "size": torch.Size([2]),
                    "device": torch.device("cpu"), "dtype": torch.float32,
                    "sparse": torch.eye(2).to_sparse(), "sparse_csr": torch.eye(2).to_sparse_csr(),
                    "q": torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8),
                    "view": torch.arange(6.0).view(2, 3)[:, 1], "nested_list": [torch.ones(1)]},
    }
    for name, obj in objects.items():
        for kwargs in ({}, {"_use_new_zipfile_serialization": False}):
            buf = io.BytesIO()
            torch.save(obj, buf, **kwargs)  # type: ignore[arg-type]
            tag = "legacy" if kwargs else "zip"
            yield f"torch/{name}.{tag}.pt", buf.getvalue()
