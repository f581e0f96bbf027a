"""The reviewed allowlist: globals a model pickle may import without being flagged.

Sources: exactly what ``torch.load(weights_only=True)`` admits (torch 2.13), numpy array and
random-state reconstruction, standard-library containers and value types, scipy sparse
matrices, and scikit-learn estimator classes with the helper classes their pickles reference.

scikit-learn moves classes between private modules across releases, so its entries are keyed
by subpackage (``sklearn.linear_model``) and match any module beneath it
(``sklearn.linear_model._logistic.LogisticRegression``); test and dataset modules never match.
Everything here was checked to be a class or a pure function that neither reaches the file
system, the network, a subprocess nor the importer when called with arbitrary arguments.
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TORCH_DTYPES = _names(
    "bfloat16 bits16 bits1x8 bits2x4 bits4x2 bits8 bool complex128 complex32 complex64 "
    "float16 float32 float4_e2m1fn_x2 float64 float8_e4m3fn float8_e4m3fnuz float8_e5m2 "
    "float8_e5m2fnuz float8_e8m0fnu int1 int16 int2 int3 int32 int4 int5 int6 int64 int7 int8 "
    "qint32 qint8 quint2x4 quint4x2 quint8 uint1 uint16 uint2 uint3 uint32 uint4 uint5 uint6 "
    "uint64 uint7 uint8 per_channel_affine per_channel_affine_float_qparams "
    "per_channel_symmetric per_tensor_affine per_tensor_symmetric strided sparse_coo "
    "sparse_csr sparse_csc sparse_bsr sparse_bsc _mkldnn contiguous_format channels_last "
    "channels_last_3d preserve_format"
)
_TORCH_TYPES = _names(
    "BFloat16 Bool Byte Char ComplexDouble ComplexFloat Double Float Half Int Long Short"
)
_QSTORAGES = _names("QInt32 QInt8 QUInt2x4 QUInt4x2 QUInt8")

_TORCH: frozenset[str] = frozenset(
    [f"torch.{d}" for d in _TORCH_DTYPES]
    + [f"torch.{t}Storage" for t in _TORCH_TYPES | _QSTORAGES]
    + [f"torch.{t}Tensor" for t in _TORCH_TYPES if not t.startswith("Complex")]
    + [f"torch.cuda.{t}Storage" for t in _TORCH_TYPES]
    + [f"torch.cuda.{t}Tensor" for t in _TORCH_TYPES if not t.startswith("Complex")]
    + [
        f"torch.sparse.{t}Tensor"
        for t in _TORCH_TYPES
        if t not in ("Bool", "ComplexDouble", "ComplexFloat")
    ]
    + [
        f"torch.cuda.sparse.{t}Tensor"
        for t in _TORCH_TYPES
        if t not in ("Bool", "ComplexDouble", "ComplexFloat")
    ]
    + [
        "torch.Size",
        "torch.Tensor",
        "torch.device",
        "torch.dtype",
        "torch.layout",
        "torch.memory_format",
        "torch.nn.parameter.Parameter",
        "torch.nn.parameter.Buffer",
        "torch.storage.TypedStorage",
        "torch.storage.UntypedStorage",
        "torch.UntypedStorage",
        "torch.serialization._get_layout",
        "torch._tensor._rebuild_from_type_v2",
        "torch._utils._rebuild_device_tensor_from_cpu_tensor",
        "torch._utils._rebuild_device_tensor_from_numpy",
        "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._utils._rebuild_nested_tensor",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_qtensor",
        "torch._utils._rebuild_sparse_tensor",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_wrapper_subclass",
        "torch.torch_version.TorchVersion",
    ]
)

_NUMPY_SCALARS = _names(
    "bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 "
    "longdouble complex64 complex128 clongdouble str_ bytes_ datetime64 timedelta64 intc uintc "
    "longlong ulonglong"
)
_NUMPY_DTYPES = _names(
    "Bool Int8 Int16 Int32 Int64 UInt8 UInt16 UInt32 UInt64 Float16 Float32 Float64 "
    "LongDouble Complex64 Complex128 CLongDouble Str Bytes Void Object DateTime64 TimeDelta64 "
    "IntC UIntC Long ULong LongLong ULongLong StringDType"
)
_NUMPY_REDUCTIONS = _names("mean median sum max min std var nanmean nanmedian nansum amax amin")

_NUMPY: frozenset[str] = frozenset(
    [f"numpy.{s}" for s in _NUMPY_SCALARS]
    + [f"numpy.dtypes.{d}DType" for d in _NUMPY_DTYPES]
    + ["numpy.dtypes.StringDType"]
    + [f"numpy.{r}" for r in _NUMPY_REDUCTIONS]
    + [
        f"numpy.{core}.{name}"
        for core in ("core.multiarray", "_core.multiarray")
        for name in ("_reconstruct", "scalar")
    ]
    + [f"numpy.{core}.numeric._frombuffer" for core in ("core", "_core")]
    + [
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.matrix",
        "numpy.ma.core._mareconstruct",
        "numpy.ma.core.MaskedArray",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64",
        "numpy.random._pcg64.PCG64DXSM",
        "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
        "numpy.random.bit_generator.SeedSequence",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
    ]
)

_STDLIB: frozenset[str] = frozenset(
    [
        f"builtins.{n}"
        for n in _names(
            "set frozenset bytearray bytes slice complex range dict list tuple int float bool str "
            "object NotImplemented Ellipsis"
        )
    ]
    + [f"collections.{n}" for n in _names("OrderedDict defaultdict Counter deque")]
    + [f"datetime.{n}" for n in _names("datetime date time timedelta timezone")]
    + [
        "copyreg._reconstructor",
        "_codecs.encode",
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "joblib.numpy_pickle.NDArrayWrapper",
        "joblib.numpy_pickle.ZNDArrayWrapper",
    ]
)

_SCIPY: frozenset[str] = frozenset(
    [
        f"scipy.sparse._{fmt}.{fmt}_{kind}"
        for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")
        for kind in ("matrix", "array")
    ]
    + [
        "scipy.interpolate._bsplines.BSpline",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
    ]
)

_EXACT: frozenset[str] = _TORCH | _NUMPY | _STDLIB | _SCIPY


_SKLEARN: dict[str, frozenset[str]] = {
    "sklearn._loss": _names(
        "CyHalfBinomialLoss CyHalfGammaLoss CyHalfPoissonLoss CyHalfSquaredError "
        "CyHalfTweedieLossIdentity HalfBinomialLoss HalfGammaLoss HalfPoissonLoss "
        "HalfSquaredError HalfTweedieLossIdentity IdentityLink Interval LogLink LogitLink "
    ),
    "sklearn.calibration": _names(
        "CalibratedClassifierCV _CalibratedClassifier _SigmoidCalibration "
    ),
    "sklearn.cluster": _names(
        "AffinityPropagation AgglomerativeClustering Birch BisectingKMeans DBSCAN "
        "FeatureAgglomeration HDBSCAN KMeans MeanShift MiniBatchKMeans OPTICS "
        "SpectralBiclustering SpectralClustering SpectralCoclustering _BisectingTree _CFNode "
        "_CFSubcluster _kmeans_single_lloyd "
    ),
    "sklearn.compose": _names("ColumnTransformer TransformedTargetRegressor make_column_selector "),
    "sklearn.covariance": _names(
        "EllipticEnvelope EmpiricalCovariance GraphicalLasso GraphicalLassoCV LedoitWolf "
        "MinCovDet OAS ShrunkCovariance "
    ),
    "sklearn.cross_decomposition": _names("CCA PLSCanonical PLSRegression PLSSVD "),
    "sklearn.decomposition": _names(
        "DictionaryLearning FactorAnalysis FastICA IncrementalPCA KernelPCA "
        "LatentDirichletAllocation MiniBatchDictionaryLearning MiniBatchNMF MiniBatchSparsePCA "
        "NMF PCA SparseCoder SparsePCA TruncatedSVD "
    ),
    "sklearn.discriminant_analysis": _names(
        "LinearDiscriminantAnalysis QuadraticDiscriminantAnalysis "
    ),
    "sklearn.dummy": _names("DummyClassifier DummyRegressor "),
    "sklearn.ensemble": _names(
        "AdaBoostClassifier AdaBoostRegressor BaggingClassifier BaggingRegressor "
        "ExtraTreesClassifier ExtraTreesRegressor GradientBoostingClassifier "
        "GradientBoostingRegressor HistGradientBoostingClassifier HistGradientBoostingRegressor "
        "IsolationForest RandomForestClassifier RandomForestRegressor RandomTreesEmbedding "
        "StackingClassifier StackingRegressor TreePredictor VotingClassifier VotingRegressor "
        "_BinMapper "
    ),
    "sklearn.feature_extraction": _names(
        "CountVectorizer DictVectorizer FeatureHasher HashingVectorizer PatchExtractor "
        "TfidfTransformer TfidfVectorizer "
    ),
    "sklearn.feature_selection": _names(
        "GenericUnivariateSelect RFE RFECV SelectFdr SelectFpr SelectFromModel SelectFwe "
        "SelectKBest SelectPercentile SequentialFeatureSelector VarianceThreshold f_classif "
    ),
    "sklearn.frozen": _names("FrozenEstimator "),
    "sklearn.gaussian_process": _names(
        "ConstantKernel GaussianProcessClassifier GaussianProcessRegressor Product RBF "
        "_BinaryGaussianProcessClassifierLaplace "
    ),
    "sklearn.impute": _names("KNNImputer MissingIndicator SimpleImputer "),
    "sklearn.isotonic": _names("IsotonicRegression "),
    "sklearn.kernel_approximation": _names(
        "AdditiveChi2Sampler Nystroem PolynomialCountSketch RBFSampler SkewedChi2Sampler "
    ),
    "sklearn.kernel_ridge": _names("KernelRidge "),
    "sklearn.linear_model": _names(
        "ARDRegression BayesianRidge ElasticNet ElasticNetCV GammaRegressor Hinge "
        "HuberRegressor Lars LarsCV Lasso LassoCV LassoLars LassoLarsCV LassoLarsIC "
        "LinearRegression LogisticRegression LogisticRegressionCV MultiTaskElasticNet "
        "MultiTaskElasticNetCV MultiTaskLasso MultiTaskLassoCV OrthogonalMatchingPursuit "
        "OrthogonalMatchingPursuitCV PassiveAggressiveClassifier PassiveAggressiveRegressor "
        "Perceptron PoissonRegressor QuantileRegressor RANSACRegressor Ridge RidgeCV "
        "RidgeClassifier RidgeClassifierCV SGDClassifier SGDOneClassSVM SGDRegressor "
        "TheilSenRegressor TweedieRegressor "
    ),
    "sklearn.manifold": _names(
        "ClassicalMDS Isomap LocallyLinearEmbedding MDS SpectralEmbedding TSNE "
    ),
    "sklearn.metrics": _names("EuclideanDistance64 make_scorer newObj "),
    "sklearn.mixture": _names("BayesianGaussianMixture GaussianMixture "),
    "sklearn.model_selection": _names(
        "FixedThresholdClassifier GridSearchCV KFold RandomizedSearchCV StratifiedKFold "
        "TunedThresholdClassifierCV "
    ),
    "sklearn.multiclass": _names("OneVsOneClassifier OneVsRestClassifier OutputCodeClassifier "),
    "sklearn.multioutput": _names(
        "ClassifierChain MultiOutputClassifier MultiOutputRegressor RegressorChain "
    ),
    "sklearn.naive_bayes": _names(
        "BernoulliNB CategoricalNB ComplementNB GaussianNB MultinomialNB "
    ),
    "sklearn.neighbors": _names(
        "KDTree KNeighborsClassifier KNeighborsRegressor KNeighborsTransformer KernelDensity "
        "LocalOutlierFactor NearestCentroid NearestNeighbors NeighborhoodComponentsAnalysis "
        "RadiusNeighborsClassifier RadiusNeighborsRegressor RadiusNeighborsTransformer newObj "
    ),
    "sklearn.neural_network": _names("AdamOptimizer BernoulliRBM MLPClassifier MLPRegressor "),
    "sklearn.pipeline": _names("FeatureUnion Pipeline "),
    "sklearn.preprocessing": _names(
        "Binarizer FunctionTransformer KBinsDiscretizer KernelCenterer LabelBinarizer "
        "LabelEncoder MaxAbsScaler MinMaxScaler MultiLabelBinarizer Normalizer OneHotEncoder "
        "OrdinalEncoder PolynomialFeatures PowerTransformer QuantileTransformer RobustScaler "
        "SplineTransformer StandardScaler TargetEncoder "
    ),
    "sklearn.random_projection": _names("GaussianRandomProjection SparseRandomProjection "),
    "sklearn.semi_supervised": _names("LabelPropagation LabelSpreading SelfTrainingClassifier "),
    "sklearn.svm": _names("LinearSVC LinearSVR NuSVC NuSVR OneClassSVM SVC SVR "),
    "sklearn.tree": _names(
        "DecisionTreeClassifier DecisionTreeRegressor ExtraTreeClassifier ExtraTreeRegressor Tree "
    ),
    "sklearn.utils": _names("Bunch "),
}

_SKLEARN_NEVER = frozenset({"tests", "_testing", "datasets", "externals", "_build_utils"})


def is_allowlisted(module: str, name: str) -> bool:
    if f"{module}.{name}" in _EXACT:
        return True
    parts = module.split(".")
    if parts[0] != "sklearn" or "." in name or _SKLEARN_NEVER.intersection(parts):
        return False
    return name in _SKLEARN.get(".".join(parts[:2]), frozenset())


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
