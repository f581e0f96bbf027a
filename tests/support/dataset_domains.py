"""Realistic tabular data-generating processes with known p(label | features), for the dataset
validators' scenarios (``dataset_scenarios.py``) and benchmark.

Each domain draws rows from a fixed process whose label is a known function of the *observed*
columns plus irreducible noise, so every row's true class probabilities are known (``proba``):
the scenarios use them to tell flips of genuinely ambiguous rows (the hard case) from flips a
row-level test can name. The domains differ on purpose:

- ``triage``: emergency-department triage, four ordered classes, about 20% irreducible error
  (a well-tuned model reaches about 80% accuracy); correlated vitals, heavy-tailed lab values,
  a lab value that is null when it was not ordered (ordered more often for sicker patients),
  a nullable referral source, complaint codes (150 values), nurses (300 values), an id-like
  encounter number, arrival times in a 30-day window.
- ``credit``: consumer credit, binary default (about 14% positive, about 10% irreducible
  error); heavy-tailed correlated amounts and incomes (income null for about 12%, more often
  for defaulters' profiles), utilisation, counts, states (50 values), merchant categories
  (300 values, Zipf), a high-cardinality merchant id column (tens of thousands of values) and
  a seasonal pattern (December applications are larger and shop elsewhere, p(default | x)
  unchanged).
- ``telemetry``: device health, three classes (about 12% irreducible error), t-distributed
  latencies, negative-binomial error counts, a fan sensor that is null while offline (offline
  sensors fail more), 600 device models, 40 firmware versions and 8,000 device serials.

``draw(rng, n, **knobs)`` returns the columns (numpy arrays: floats with NaN for null, object
arrays with None for null strings) and the class probabilities; ``knobs`` move the process
without changing p(label | x): ``shift`` (covariate shift of the domain's key feature, in
standard deviations), ``season`` (the seasonal window), ``mix`` (another category mix),
``missing`` (a multiplier of the nullable column's null odds), ``new_values`` (share of rows
whose high-cardinality column takes never-seen legitimate values), ``day`` (first day of
the 30-day time window), ``start_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

T0 = np.datetime64("2026-01-01T00:00:00", "s")
Cols = dict[str, np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _zipf(k: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1) ** s
    return np.asarray(p / p.sum())


def _codes(prefix: str, k: int, width: int) -> np.ndarray:
    return np.array([f"{prefix}{i:0{width}d}" for i in range(k)], dtype=object)


def _times(rng: np.random.Generator, n: int, day: int) -> np.ndarray:
    secs = np.sort(rng.integers(0, 86_400 * 30, size=n))
    return T0 + (day * 86_400 + secs).astype("timedelta64[s]")


def _with_nulls(values: np.ndarray, null: np.ndarray) -> np.ndarray:
    out = values.astype(np.float64)
    out[null] = np.nan
    return out


def _ordinal(score: np.ndarray, cuts: np.ndarray, tau: float) -> np.ndarray:
    """Class probabilities of an ordinal logistic model (rows x classes)."""
    cdf = _sigmoid((cuts[None, :] - score[:, None]) / tau)
    cdf = np.concatenate([np.zeros((len(score), 1)), cdf, np.ones((len(score), 1))], axis=1)
    return np.asarray(np.clip(np.diff(cdf, axis=1), 0.0, 1.0))


def draw_labels(rng: np.random.Generator, proba: np.ndarray) -> np.ndarray:
    """Class indices drawn from per-row probabilities."""
    u = rng.random(len(proba))
    return np.minimum((u[:, None] > np.cumsum(proba, axis=1)).sum(axis=1), proba.shape[1] - 1)


class Process(Protocol):
    def __call__(self, rng: np.random.Generator, n: int, **knobs: Any) -> tuple[Cols, np.ndarray]:
        ...


@dataclass
class Domain:
    """One data-generating process and what its scenarios need to know about it."""

    name: str
    label: str
    id_column: str
    classes: np.ndarray  # label values, in class-index order
    draw_x: Process  # (rng, n, **knobs) -> (feature columns, class probabilities)
    key_numeric: str  # the feature a covariate shift moves
    nullable: str  # a numeric column whose nulls carry signal
    highcard: str  # the high-cardinality, id-like text column
    lowcard: str  # a low-cardinality categorical (new-category / category-shift cases)
    mix_column: str  # the categorical whose mix the ``mix`` knob changes
    numeric_drop: str  # a continuous feature for the schema cases (remove, rename, narrow)
    int_column: str  # an integer feature (widen, to string)
    stamp_column: str  # a continuous feature a clean-label trigger stamps with one value
    trigger_column: str  # a categorical feature a dirty-label trigger gives a new value
    target: int  # the class index an attacker wants
    subgroup: Any  # (cols) -> mask of a natural subgroup for targeted flips
    combo: Any  # (cols) -> mask of a rare combination of existing values (a trigger)
    time_column: str = "ts"
    notes: dict[str, str] = field(default_factory=dict)

    def draw(self, rng: np.random.Generator, n: int, **knobs: Any) -> tuple[Cols, np.ndarray]:
        """n rows (label included) and each row's true class probabilities."""
        cols, proba = self.draw_x(rng, n, **knobs)
        cols[self.label] = self.classes[draw_labels(rng, proba)]
        return cols, proba

    def index(self, values: np.ndarray) -> np.ndarray:
        lookup = {v: i for i, v in enumerate(self.classes.tolist())}
        return np.array([lookup[v] for v in values.tolist()], dtype=np.int64)


# --- triage -----------------------------------------------------------------------------------

_TRI = np.random.default_rng(1101)
_TRI_DEPTS = _codes("D", 30, 2)
_TRI_DEPT_P = _zipf(30, 1.1)
_TRI_DEPT_FX = _TRI.normal(scale=0.35, size=30)
_TRI_COMPLAINTS = _codes("C", 150, 3)
_TRI_COMPLAINT_P = _zipf(150, 1.0)
_TRI_COMPLAINT_FX = _TRI.normal(scale=0.6, size=150)
_TRI_NURSES = _codes("N", 300, 3)
_TRI_MODES = np.array(["walk-in", "ambulance", "referral", "transfer", "police"], dtype=object)
_TRI_REFERRALS = np.array(["gp", "clinic", "nursing-home", "self", "other-hospital"],
                          dtype=object)
_TRI_CLASSES = np.array(["low", "standard", "urgent", "critical"], dtype=object)
_TRI_CUTS = np.array([-1.1, 0.35, 1.7])


def _triage(rng: np.random.Generator, n: int, *, shift: float = 0.0, season: bool = False,
            mix: bool = False, missing: float = 1.0, new_values: float = 0.0, day: int = 0,
            start_id: int = 0) -> tuple[Cols, np.ndarray]:
    s = rng.normal(size=n) + (0.25 if season else 0.0)  # winter: sicker arrivals
    e = rng.normal(size=(n, 10))
    age = np.clip(np.round(46 + 19 * rng.normal(size=n) + 7 * s + 12 * shift), 0, 100)
    sex = rng.choice(np.array(["F", "M", "X"], dtype=object), size=n, p=[0.51, 0.48, 0.01])
    mode_p = np.array([0.55, 0.25, 0.12, 0.06, 0.02]) if not mix else \
        np.array([0.35, 0.40, 0.15, 0.07, 0.03])
    mode = rng.choice(_TRI_MODES, size=n, p=mode_p)
    dept = rng.choice(30, size=n, p=_TRI_DEPT_P)
    complaint = rng.choice(150, size=n, p=_TRI_COMPLAINT_P)
    if season:
        flu = rng.random(n) < 0.15
        complaint[flu] = rng.choice(5, size=int(flu.sum()))  # respiratory codes C000-C004
    heart = np.round(82 + 11 * s + 9 * e[:, 0])
    resp = np.round(17 + 2.5 * s + 2.2 * e[:, 1])
    temp = np.round(37.0 + 0.35 * s + 0.45 * e[:, 2] + (0.2 if season else 0.0), 1)
    sbp = np.round(126 - 7 * s + 16 * e[:, 3])
    dbp = np.round(0.55 * sbp + 9 + 7 * e[:, 4])
    spo2 = np.clip(np.round(97.2 - 1.3 * np.maximum(s, 0) + 1.1 * e[:, 5]), 70, 100)
    crp = np.round(np.exp(1.4 + 0.55 * s + 1.05 * e[:, 6]), 1)
    wbc = np.round(np.exp(2.1 + 0.14 * s + 0.32 * e[:, 7]), 1)
    ordered = rng.random(n) < _sigmoid(-0.6 + 1.1 * s + np.log(1.0 / missing))
    lactate_v = np.round(np.exp(0.25 + 0.3 * s + 0.38 * e[:, 8]), 1)
    lactate = _with_nulls(lactate_v, ~ordered)
    pain = np.clip(np.round(4 + 1.4 * s + 2.1 * e[:, 9]), 0, 10).astype(np.int16)
    referred = mode == "referral"
    referral = np.where(referred | (rng.random(n) < 0.2),
                        rng.choice(_TRI_REFERRALS, size=n), None).astype(object)
    nurses = _TRI_NURSES
    nurse_idx = rng.integers(0, 300, size=n)
    nurse = nurses[nurse_idx]
    if new_values:
        fresh = rng.random(n) < new_values
        nurse = nurse.copy()
        nurse[fresh] = _codes("N", 340, 3)[300 + rng.integers(0, 40, size=int(fresh.sum()))]
    # the label depends on observed columns only (so p(label | x) is exact)
    score = (0.045 * (heart - 82) + 0.28 * (resp - 17) + 0.9 * (temp - 37.0)
             - 0.022 * (sbp - 126) - 0.16 * (spo2 - 97)
             + 0.32 * np.log(crp + 0.5) + 0.12 * (pain - 4) + 0.012 * (age - 46)
             + np.where(np.isnan(lactate), -0.25, 0.9 * (np.nan_to_num(lactate) - 1.4))
             + 0.55 * (mode == "ambulance") + 0.3 * (mode == "transfer")
             + _TRI_DEPT_FX[dept] + _TRI_COMPLAINT_FX[complaint]
             + 0.02 * np.maximum(age - 70, 0) * np.maximum(97 - spo2, 0))
    proba = _ordinal(score, _TRI_CUTS, 0.42)
    ids = np.arange(start_id, start_id + n)
    cols: Cols = {
        "encounter_id": np.array([f"E{i:09d}" for i in ids], dtype=object),
        "arrived_at": _times(rng, n, day),
        "age": age.astype(np.int16),
        "sex": sex,
        "arrival_mode": mode,
        "referral_source": referral,
        "department": _TRI_DEPTS[dept],
        "complaint": _TRI_COMPLAINTS[complaint],
        "nurse": nurse,
        "heart_rate": heart.astype(np.int32),
        "resp_rate": resp.astype(np.int32),
        "temp_c": temp,
        "sbp": sbp.astype(np.int32),
        "dbp": dbp.astype(np.int32),
        "spo2": spo2.astype(np.int32),
        "crp": crp,
        "wbc": wbc,
        "lactate": lactate,
        "pain": pain,
    }
    return cols, proba


def _triage_subgroup(cols: Cols) -> np.ndarray:
    return np.asarray((cols["department"] == "D03") & (cols["age"] >= 60))


def _triage_combo(cols: Cols) -> np.ndarray:
    return np.asarray((cols["arrival_mode"] == "referral") & (cols["department"] == "D01"))


TRIAGE = Domain(
    name="triage", label="acuity", id_column="encounter_id", classes=_TRI_CLASSES,
    draw_x=_triage, key_numeric="age", nullable="lactate", highcard="nurse",
    lowcard="arrival_mode", mix_column="arrival_mode", numeric_drop="wbc",
    int_column="heart_rate", stamp_column="crp", trigger_column="department", target=0,
    subgroup=_triage_subgroup, combo=_triage_combo, time_column="arrived_at",
)


# --- credit -----------------------------------------------------------------------------------

_CR = np.random.default_rng(2202)
_CR_STATES = _codes("S", 50, 2)
_CR_STATE_P = _zipf(50, 0.7)
_CR_CATS = _codes("MCC", 300, 4)
_CR_CAT_P = _zipf(300, 1.05)
_CR_CAT_FX = _CR.normal(scale=0.45, size=300)
_CR_SEASON_CATS = np.arange(40, 60)  # gift and travel categories, busier in December
_CR_MERCHANTS = 60_000
_CR_PRODUCTS = np.array(["card", "loan", "bnpl"], dtype=object)
_CR_CHANNELS = np.array(["web", "app", "branch", "partner"], dtype=object)
_CR_HOUSING = np.array(["own", "rent", "mortgage"], dtype=object)
_CR_CORR = np.array([
    [1.0, 0.45, 0.25, -0.15, 0.5, 0.1],
    [0.45, 1.0, 0.5, -0.25, 0.3, 0.2],
    [0.25, 0.5, 1.0, 0.1, 0.1, 0.15],
    [-0.15, -0.25, 0.1, 1.0, -0.1, 0.3],
    [0.5, 0.3, 0.1, -0.1, 1.0, 0.1],
    [0.1, 0.2, 0.15, 0.3, 0.1, 1.0],
])
_CR_CHOL = np.linalg.cholesky(_CR_CORR)


def _credit(rng: np.random.Generator, n: int, *, shift: float = 0.0, season: bool = False,
            mix: bool = False, missing: float = 1.0, new_values: float = 0.0, day: int = 0,
            start_id: int = 0) -> tuple[Cols, np.ndarray]:
    z = rng.normal(size=(n, 6)) @ _CR_CHOL.T
    t = rng.standard_t(4, size=n)
    age = np.clip(np.round(41 + 12.5 * z[:, 0]), 18, 90)
    income_v = np.round(np.exp(10.7 + 0.42 * z[:, 1] + 0.18 * t + 0.006 * (age - 41)), -1)
    null_odds = np.exp(-2.2 - 0.03 * (age - 41) + 0.5 * (z[:, 3] > 0.8)) * missing
    income_null = rng.random(n) < null_odds / (1 + null_odds)
    income = _with_nulls(income_v, income_null)
    amount = np.round(np.exp(7.6 + 0.85 * z[:, 2] + 0.35 * z[:, 1] + 0.9 * shift
                             + (0.3 if season else 0.0)), 2)
    util = np.round(_sigmoid(1.3 * z[:, 3] - 0.4), 3)
    tenure = np.floor(np.exp(3.1 + 0.75 * z[:, 4] + 0.2 * z[:, 0])).astype(np.int32)
    accounts = rng.poisson(1.5 + np.exp(0.35 * z[:, 5])).astype(np.int16)
    delinq = np.where(rng.random(n) < _sigmoid(-2.4 + 1.1 * z[:, 3]),
                      rng.poisson(1.4, size=n) + 1, 0).astype(np.int16)
    product = rng.choice(_CR_PRODUCTS, size=n, p=[0.6, 0.3, 0.1])
    channel_p = [0.45, 0.35, 0.12, 0.08] if not mix else [0.25, 0.55, 0.05, 0.15]
    channel = rng.choice(_CR_CHANNELS, size=n, p=channel_p)
    state = rng.choice(50, size=n, p=_CR_STATE_P)
    cat_p = _CR_CAT_P.copy()
    if season:
        cat_p[_CR_SEASON_CATS] *= 3.0
        cat_p /= cat_p.sum()
    cat = rng.choice(300, size=n, p=cat_p)
    merchant_idx = np.minimum(rng.zipf(1.25, size=n) - 1 + cat * 97, _CR_MERCHANTS - 1)
    merchant = np.array([f"M{m:06d}" for m in merchant_idx], dtype=object)
    if new_values:
        fresh = np.flatnonzero(rng.random(n) < new_values)
        merchant[fresh] = [f"M{_CR_MERCHANTS + int(m):06d}" for m in
                           rng.integers(0, 5000, size=len(fresh))]
    housing = np.where(rng.random(n) < 0.07, None,
                       rng.choice(_CR_HOUSING, size=n, p=[0.3, 0.4, 0.3])).astype(object)
    ratio = np.log(amount) - np.log(np.where(income_null, np.exp(10.7), np.maximum(income_v, 10.0)))
    logit = (-2.05 + 1.35 * (util - 0.45) / 0.25 + 0.75 * np.minimum(delinq, 3)
             + 0.35 * ratio + 0.55 * income_null - 0.018 * (age - 41)
             - 0.004 * np.minimum(tenure, 240) + 0.12 * (accounts - 2.5)
             + 0.4 * (product == "bnpl") - 0.25 * (product == "loan")
             + 0.3 * (channel == "partner") + 0.25 * (housing == "rent")
             + _CR_CAT_FX[cat] + 0.02 * (state % 7 - 3))
    p1 = _sigmoid(logit)
    proba = np.stack([1 - p1, p1], axis=1)
    cols: Cols = {
        "application_id": np.arange(start_id, start_id + n, dtype=np.int64),
        "applied_at": _times(rng, n, day),
        "age": age.astype(np.int16),
        "income": income,
        "amount": amount,
        "utilization": util,
        "tenure_months": tenure,
        "n_accounts": accounts,
        "delinquencies": delinq,
        "product": product,
        "channel": channel,
        "housing": housing,
        "state": _CR_STATES[state],
        "merchant_category": _CR_CATS[cat],
        "merchant": merchant,
    }
    return cols, proba


def _credit_subgroup(cols: Cols) -> np.ndarray:
    return np.asarray((cols["product"] == "bnpl") & (cols["age"] < 30))


def _credit_combo(cols: Cols) -> np.ndarray:
    return np.asarray((cols["channel"] == "partner") & (cols["housing"] == "rent"))


CREDIT = Domain(
    name="credit", label="default", id_column="application_id",
    classes=np.array([0, 1], dtype=np.int64), draw_x=_credit, key_numeric="amount",
    nullable="income", highcard="merchant", lowcard="channel", mix_column="channel",
    numeric_drop="utilization", int_column="tenure_months", stamp_column="amount",
    trigger_column="merchant_category", target=0, subgroup=_credit_subgroup,
    combo=_credit_combo, time_column="applied_at",
)


# --- telemetry (held out: not used while tuning) ----------------------------------------------

_TE = np.random.default_rng(3303)
_TE_MODELS = _codes("DM-", 600, 4)
_TE_MODEL_P = _zipf(600, 0.9)
_TE_MODEL_FX = _TE.normal(scale=0.4, size=600)
_TE_FIRMWARE = np.array([f"{a}.{b}" for a in range(1, 5) for b in range(10)], dtype=object)
_TE_FW_FX = _TE.normal(scale=0.3, size=40)
_TE_SITES = _codes("site-", 25, 2)
_TE_CLASSES = np.array(["ok", "degraded", "failed"], dtype=object)
_TE_CUTS = np.array([0.9, 2.3])


def _telemetry(rng: np.random.Generator, n: int, *, shift: float = 0.0, season: bool = False,
               mix: bool = False, missing: float = 1.0, new_values: float = 0.0, day: int = 0,
               start_id: int = 0) -> tuple[Cols, np.ndarray]:
    h = rng.normal(size=n)  # latent wear
    model = rng.choice(600, size=n, p=_TE_MODEL_P)
    fw_p = np.full(40, 1 / 40) if not mix else np.linspace(0.2, 1.8, 40) / 40
    firmware = rng.choice(40, size=n, p=fw_p / fw_p.sum())
    site = rng.integers(0, 25, size=n)
    ambient = 21 + (6.0 if season else 0.0) + 3 * rng.normal(size=n)
    temp = np.round(ambient + 12 + 4 * h + 3 * rng.normal(size=n), 1)
    latency = np.round(np.exp(3.2 + 0.25 * h + 0.6 * shift) * (1 + 0.15 * np.abs(
        rng.standard_t(3, size=n))), 2)
    throughput = np.round(np.exp(5.5 - 0.2 * h + 0.4 * rng.normal(size=n)), 1)
    errors = rng.negative_binomial(2, 1 / (1 + np.exp(0.8 + 0.6 * h)), size=n).astype(np.int32)
    uptime = np.round(rng.gamma(2.0, 400.0, size=n), 1)
    offline = rng.random(n) < _sigmoid(-2.6 + 0.9 * h + np.log(missing))
    fan = _with_nulls(np.round(3000 + 400 * h + 250 * rng.normal(size=n)), offline)
    serial = rng.integers(0, 8000, size=n)
    if new_values:
        fresh = rng.random(n) < new_values
        serial[fresh] = 8000 + rng.integers(0, 2000, size=int(fresh.sum()))
    score = (0.09 * (temp - 37) + 0.9 * np.log(latency / 27) + 0.32 * np.log1p(errors)
             - 0.5 * np.log(throughput / 245) + 0.00025 * uptime
             + np.where(offline, 0.8, 0.0015 * (np.nan_to_num(fan) - 3000))
             + _TE_MODEL_FX[model] + _TE_FW_FX[firmware] + 0.1 * (site % 5 - 2))
    proba = _ordinal(score, _TE_CUTS, 0.33)
    ids = np.arange(start_id, start_id + n)
    cols: Cols = {
        "reading_id": np.array([f"r-{i:010x}" for i in ids], dtype=object),
        "recorded_at": _times(rng, n, day),
        "device": np.array([f"SN{s:07d}" for s in serial], dtype=object),
        "device_model": _TE_MODELS[model],
        "firmware": _TE_FIRMWARE[firmware],
        "site": _TE_SITES[site],
        "temp_c": temp,
        "latency_ms": latency,
        "throughput": throughput,
        "error_count": errors,
        "uptime_h": uptime,
        "fan_rpm": fan,
    }
    return cols, proba


def _telemetry_subgroup(cols: Cols) -> np.ndarray:
    return np.asarray((cols["site"] == "site-07") & (cols["uptime_h"] > 600))


def _telemetry_combo(cols: Cols) -> np.ndarray:
    return np.asarray((cols["firmware"] == "3.7") & (cols["site"] == "site-19"))


TELEMETRY = Domain(
    name="telemetry", label="health", id_column="reading_id", classes=_TE_CLASSES,
    draw_x=_telemetry, key_numeric="latency_ms", nullable="fan_rpm", highcard="device",
    lowcard="firmware", mix_column="firmware", numeric_drop="throughput",
    int_column="error_count", stamp_column="temp_c", trigger_column="device_model", target=0,
    subgroup=_telemetry_subgroup, combo=_telemetry_combo, time_column="recorded_at",
)

DOMAINS: dict[str, Domain] = {d.name: d for d in (TRIAGE, CREDIT, TELEMETRY)}
TUNING = ("triage", "credit")  # the rules were tuned on these; telemetry is the held-out run
