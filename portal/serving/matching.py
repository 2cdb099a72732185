"""Which table column feeds which model column: the exact name first, then the same name spelled differently.

Converters rename columns (skl2onnx turns ``malic acid`` into ``malic_acid``),
while the user's file keeps the original spelling.  A model column without an
exact match takes the one file column whose normalised name (case folded,
runs of spaces, punctuation and underscores made one ``_``) is the same, when
exactly one model column and one file column share that spelling; anything
less clear stays missing.  A mapping the user chose (model column → file
column) comes before both.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InvalidInputError
from .casting import listing

__all__ = ["NameMatch", "match_inputs", "match_names", "normalise_name"]

_SEPARATORS = re.compile(r"[\W_]+")


def normalise_name(name: object) -> str:
    """``"Malic Acid"``, ``"malic-acid"`` and ``"malic_acid"`` all → ``"malic_acid"``."""
    return _SEPARATORS.sub("_", str(name).casefold()).strip("_")


@dataclass(frozen=True)
class NameMatch:
    """How a table's columns line up with the names a model needs."""

    found: dict[str, str]  # model column -> file column
    normalised: tuple[tuple[str, str], ...] = ()  # (model column, file column) matched by normalised spelling
    missing: tuple[str, ...] = ()
    ambiguous: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model column -> candidate file columns

    @property
    def renames(self) -> dict[str, str]:
        """``{file column: model column}`` for every file column used under another name."""
        return {column: wanted for wanted, column in self.found.items() if column != wanted}

    def missing_message(self, wanted: Sequence[str]) -> str:
        """The refusal for the missing columns, naming the ambiguous spellings."""
        text = f"missing column(s) {listing(list(self.missing))}; the model needs {listing(list(wanted))}"
        for name, candidates in list(self.ambiguous.items())[:3]:
            text += f" ({name!r} could be any of {listing(list(candidates))}: rename one, or map the column)"
        return text


def _check_mapping(mapping: Mapping[str, str], wanted: Sequence[str], columns: Sequence[str]) -> None:
    if len(set(mapping.values())) != len(mapping):
        raise InvalidInputError("column mapping takes two model columns from one file column; map each once")
    for name, column in mapping.items():
        if name not in wanted:
            raise InvalidInputError(f"column mapping names {name!r}, which the model does not take; "
                                    f"the model needs {listing(list(wanted))}")
        if column not in columns:
            raise InvalidInputError(f"column mapping takes {name!r} from {column!r}, which the file does not have")
        if column != name and name in columns:
            raise InvalidInputError(f"the file already has a column {name!r}; map only the columns it lacks")


def match_names(wanted: Sequence[str], columns: Sequence[str], *,
                mapping: Mapping[str, str] | None = None) -> NameMatch:
    """Match ``wanted`` model columns to the file's ``columns``: ``mapping``, exact, then normalised."""
    wanted, columns = [str(w) for w in wanted], [str(c) for c in columns]
    mapping = dict(mapping or {})
    _check_mapping(mapping, wanted, columns)
    present = set(columns)
    found = {w: mapping.get(w, w) for w in wanted if w in mapping or w in present}
    taken = set(found.values()) | (present & set(wanted))  # a column named like another model column is that one's
    free: dict[str, list[str]] = defaultdict(list)
    for column in columns:
        if column not in taken:
            free[normalise_name(column)].append(column)
    open_names: dict[str, list[str]] = defaultdict(list)
    for w in wanted:
        if w not in found:
            open_names[normalise_name(w)].append(w)
    normalised, ambiguous = [], {}
    for key, names in open_names.items():
        candidates = free.get(key, [])
        if len(names) == 1 and len(candidates) == 1:
            found[names[0]] = candidates[0]
            normalised.append((names[0], candidates[0]))
        elif candidates:
            ambiguous.update({n: tuple(candidates) for n in names})
    missing = tuple(w for w in wanted if w not in found)
    return NameMatch(found, tuple(normalised), missing, ambiguous)


def match_inputs(names: Sequence[str], feature_names: Sequence[str] | None, columns: Sequence[str], *,
                 column_map: Mapping[str, str] | None = None) -> NameMatch:
    """Match a table to a model's inputs ``names``: for one input with feature names, those first.

    Raises:
        InvalidInputError: ``column_map`` names a column the model does not take, or a file column it lacks.
    """
    known = set(names) | set(feature_names or ())
    unknown = [k for k in (column_map or {}) if k not in known]
    if unknown:
        raise InvalidInputError(f"column mapping names {listing(unknown)}, which the model does not take; "
                                f"the model needs {listing(sorted(known))}")
    tries = [list(feature_names), list(names)] if len(names) == 1 and feature_names else [list(names)]
    matches = [match_names(t, columns, mapping={k: v for k, v in (column_map or {}).items() if k in t})
               for t in tries]
    return next((m for m in matches if not m.missing), matches[0])
