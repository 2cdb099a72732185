"""The ``explain`` command: SHAP or LIME on table rows or an image, or the two compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InvalidInputError
from .common import JsonOpt, emit, handles_errors, open_portal

if TYPE_CHECKING:
    from ..core import Portal
    from ..explain import ExplainSettings

__all__ = ["explain"]


def _explain_input(path: Path, rows: int) -> Any:
    from ..serving.dataio import read_input

    data = read_input(path)
    if hasattr(data, "iloc"):
        return data.iloc[:rows]
    if isinstance(data, dict):
        return {k: v[:rows] for k, v in data.items()}
    return data[:rows]


def _check_explanation_output(output: Path | None, images: bool) -> None:
    suffixes = (".html", ".json") if images else (".csv", ".html", ".json")
    if output is not None and output.suffix.lower() not in suffixes:
        raise InvalidInputError(
            f"cannot write an explanation to {output.name!r}: use a {', '.join(suffixes[:-1])} or {suffixes[-1]} file"
        )


def _write_explanation(explanation: Any, output: Path, target: str | None) -> None:
    from ..explain.figures import html_report, shap_csv
    from ..explain.lime_figures import lime_csv, lime_report
    from ..explain.lime_types import LimeImageExplanation, LimeTabularExplanation
    from ..explain.types import TabularExplanation

    suffix = output.suffix.lower()
    lime = isinstance(explanation, (LimeTabularExplanation, LimeImageExplanation))
    if suffix == ".csv":
        output.write_bytes(lime_csv(explanation) if lime else shap_csv(explanation, target=target))
    elif suffix == ".html":
        if lime:
            output.write_text(lime_report(explanation))
        else:
            tabular = isinstance(explanation, TabularExplanation)
            output.write_text(html_report(explanation, target=target) if tabular else html_report(explanation))
    else:
        output.write_text(json.dumps(_explanation_dict(explanation, target), default=str))


def _explanation_dict(explanation: Any, target: str | None) -> dict[str, Any]:
    """Tabular explanations take the target (SHAP picks it, LIME checks it); image ones do not."""
    return explanation.to_dict(target) if hasattr(explanation, "select") else explanation.to_dict()


def _explain_agreement(p: Portal, ref: str, data: Any, background: Path | None, target: str | None,
                       settings: ExplainSettings, top_k: int, output: Path | None, as_json: bool) -> None:
    from ..explain import explain_agreement
    from ..explain.lime_figures import lime_report

    if output is not None and output.suffix.lower() not in (".html", ".json"):
        raise InvalidInputError(f"cannot write an agreement report to {output.name!r}: use a .html or .json file")
    report = explain_agreement(p, ref, data, background=background, target=target, settings=settings, top_k=top_k)
    if output is not None:
        text = lime_report(report) if output.suffix.lower() == ".html" else json.dumps(report.to_dict(), default=str)
        output.write_text(text)
    emit(report.to_dict(), as_json, lambda: report.describe() + (f"\nwrote {output}" if output is not None else ""))


@handles_errors
def explain(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Rows (.csv, .parquet, .json, .npz) or an image")],
    background: Annotated[Path | None, typer.Option(help="Background table (default: the version's reference data, else the rows explained when there are 10 or more)")] = None,
    rows: Annotated[int, typer.Option("--rows", "-n", min=1, help="Explain the first N rows of the input")] = 10,
    target: Annotated[str | None, typer.Option(help="Class or output to explain (default: the predicted class)")] = None,
    method: Annotated[str, typer.Option(help="shap or lime")] = "shap",
    max_evals: Annotated[int | None, typer.Option("--max-evals", min=1, help="SHAP: evaluations per row")] = None,
    samples: Annotated[int | None, typer.Option(
        "--samples", min=1, help="LIME: samples per row (default 5000) or image (default 1000)")] = None,
    agreement: Annotated[bool, typer.Option(
        "--agreement", help="Explain the rows with SHAP and LIME and compare them (table rows only)")] = False,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="--agreement: top features compared per row")] = 5,
    seed: Annotated[int, typer.Option(help="Seed for sampling and permutations")] = 0,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write values (.csv), a report (.html) or JSON")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain a model's answers on rows (or an image) with SHAP or LIME, or compare the two."""
    from ..explain import ExplainSettings, explain_images, explain_rows
    from ..serving.images import IMAGE_SUFFIXES

    images = input.suffix.lower() in IMAGE_SUFFIXES
    if method not in ("shap", "lime"):
        raise InvalidInputError(f"invalid method {method!r}: use shap or lime")
    if agreement and images:
        raise InvalidInputError("--agreement compares SHAP and LIME on table rows; give a table, not an image")
    if not agreement:
        _check_explanation_output(output, images)
    p = open_portal()
    settings = ExplainSettings(max_evals=max_evals, seed=seed, method=method, lime_samples=samples)
    if images:
        if background is not None:
            raise InvalidInputError("--background applies to table rows; image explanations blur the image instead")
        result: Any = explain_images(p, ref, [input], target=target, settings=settings)
    else:
        if not input.is_file():
            raise InvalidInputError(f"no such file: {input}")
        if agreement:
            _explain_agreement(p, ref, _explain_input(input, rows), background, target, settings, top_k, output,
                               as_json)
            return
        result = explain_rows(p, ref, _explain_input(input, rows), background=background, target=target, settings=settings)
    data = _explanation_dict(result, target)
    if output is not None:
        _write_explanation(result, output, target)
    text = (lambda: result.describe(target)) if hasattr(result, "select") else result.describe
    emit(data, as_json, lambda: text() + (f"\nwrote {output}" if output is not None else ""))
