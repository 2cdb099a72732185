""":class:`Variants`: creating, measuring and comparing compressed variants, for one user.

Each method is the function of :mod:`portal.compress.variants` of the same
purpose with the :class:`~portal.services.ModelServices` given (``Portal.variants``
is one over the portal, scoped to its signed-in user).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..services import ModelServices
from .comparison import Comparison
from .diffs import graph_diff
from .variants import compare, create_variant, lineage, load_comparison, measure_versions

if TYPE_CHECKING:
    from ..storage.registry import ModelVersion
    from .datasets import DataSet
    from .graphdiff import GraphDiff
    from .measure import VersionMeasurement

__all__ = ["Variants"]


class Variants:
    """The compressed variants of the versions ``services``' user may see (and, to create, may upload).

        >>> portal.variants.create("digits:1", "int8-static").ref          # 'digits:2'
        >>> portal.variants.compare("digits:1", tolerance=0.01).advice.summary
        >>> [v.ref for v in portal.variants.lineage("digits:2")]          # ['digits:2', 'digits:1']
    """

    def __init__(self, services: ModelServices) -> None:
        self.services = services

    def create(self, ref: str, method: str, **options: Any) -> ModelVersion:
        """:func:`~portal.compress.variants.create_variant`: build and register the ``method`` variant of ``ref``."""
        return create_variant(self.services, ref, method, **options)

    def compare(self, ref: str, **options: Any) -> Comparison:
        """:func:`~portal.compress.variants.compare`: create every method's variant, measure them all, advise."""
        return compare(self.services, ref, **options)

    def load_comparison(self, ref: str, **options: Any) -> Comparison | None:
        """:func:`~portal.compress.variants.load_comparison`: the newest stored comparison of ``ref``, or None."""
        return load_comparison(self.services, ref, **options)

    def lineage(self, ref: str) -> list[ModelVersion]:
        """:func:`~portal.compress.variants.lineage`: ``ref`` and its ancestors, nearest first."""
        return lineage(self.services, ref)

    def diff(self, ref: str, **options: Any) -> GraphDiff:
        """:func:`~portal.compress.diffs.graph_diff`: what the variant ``ref``'s method changed in its parent's graph."""
        return graph_diff(self.services, ref, **options)

    def measure(self, versions: Sequence[ModelVersion], data: DataSet, **options: Any) -> list[VersionMeasurement]:
        """:func:`~portal.compress.variants.measure_versions`: measure ``versions[0]`` and the others on ``data``."""
        return measure_versions(self.services, versions, data, **options)
