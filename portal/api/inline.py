"""Which graphs may run on the HTTP event loop: those whose work the size of their request bounds.

The REST door answers a request on its event loop, with no thread hand-off, when
the model was cheap for earlier requests of the same size (``ApiContext.inline``).
That is only sound when the cost of a run follows from the size of its input.  An
``Expand`` to a shape the request gives, a ``Loop`` whose trip count is an input,
a ``Range``, ``Tile``, ``Pad``, ``OneHot`` or ``Resize`` to sizes the request
chooses: one cheap request teaches the door that the model is cheap, the next one,
as small, runs for the whole inference timeout, and while it runs on the loop the
server answers nobody.  So a model may run on the loop only when every operator of
its graph, subgraphs included (``info["operators"]``, counted at ingest), is on
this list: operators whose work is bounded by their inputs' sizes and the model's
own initializers.  Any other model runs in a worker thread, as every request did
before the inline path existed: slower for a tiny model, never a stalled server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SIZE_BOUNDED_OPS", "size_bounded"]

_ONNX = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization BitShift
BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Cast CastLike Ceil Celu Clip Concat Constant Conv ConvInteger
ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout DynamicQuantizeLinear Elu Equal Erf
Exp Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GroupNormalization HardSigmoid HardSwish Hardmax Identity InstanceNormalization IsInf
IsNaN LRN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization LpPool MatMul
MatMulInteger Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonZero Not Or PRelu Pow
QLinearConv QLinearMatMul QuantizeLinear Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Round Selu Shape Shrink Sigmoid Sign
Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu TopK Transpose Trilu Unsqueeze Where Xor
"""
# scikit-learn's converters (skl2onnx) and onnxruntime's fused and quantized kernels
_ML = """
ArrayFeatureExtractor Binarizer CategoryMapper DictVectorizer FeatureVectorizer Imputer LabelEncoder
LinearClassifier LinearRegressor Normalizer OneHotEncoder SVMClassifier SVMRegressor Scaler TreeEnsemble
TreeEnsembleClassifier TreeEnsembleRegressor ZipMap
"""
_MICROSOFT = """
BiasGelu DynamicQuantizeMatMul FastGelu FusedConv FusedGemm FusedMatMul Gelu MatMulInteger16
QGemm QLinearAdd QLinearAveragePool QLinearConcat QLinearGlobalAveragePool QLinearLeakyRelu QLinearMul
QLinearSigmoid QLinearSoftmax SkipLayerNormalization
"""
# the keys of ``info["operators"]``: the op type, prefixed by its domain outside the default one
SIZE_BOUNDED_OPS = frozenset(
    _ONNX.split()
    + [f"ai.onnx.ml.{op}" for op in _ML.split()]
    + [f"com.microsoft.{op}" for op in _MICROSOFT.split()]
)


def size_bounded(info: Mapping[str, Any]) -> bool:
    """Whether every operator of the model described by ``info`` is in :data:`SIZE_BOUNDED_OPS`.

    A model described without its operators (``info`` from before they were
    counted) is not: the answer must be safe, not fast.
    """
    operators = info.get("operators")
    return bool(operators) and all(op in SIZE_BOUNDED_OPS for op in operators)
