"""The image-settings section of the Register form and the Models page.

What an image classifier from elsewhere needs to be read right: the task,
the preprocessing stored as the version's ``preprocessing`` metadata (size,
resize, colour, channel order, pixel scale, mean/std, layout; see
:mod:`portal.serving.images`) and a labels file. Predict, Explain and Compare
all preprocess through that one setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from ..core import Portal
from ..errors import PortalError
from ..ingest.metadata import class_output
from ..serving.images import (
    CHANNEL_ORDERS,
    LAYOUTS,
    RESIZE_MODES,
    check_preprocessing,
    image_defaults,
    is_image_signature,
    parse_labels,
)
from ..storage.registry import ModelVersion
from .roles import why_not
from .widgets import flash, shown_errors

__all__ = ["ImageSettings", "image_settings_panel", "image_settings_section", "registration_image_settings"]

IMAGE_CLASSIFICATION = "image classification"
OTHER = "other (raw outputs)"
_PIXEL_SCALES = {"0-1": 1.0, "0-255": 255.0}
_RESIZE_TEXT = {"stretch": "Stretch to the size", "center-crop": "Scale the shorter side, cut the centre"}
_COLOURS = {"RGB": "Colour (3 channels)", "L": "Greyscale (1 channel)"}


@dataclass(frozen=True)
class ImageSettings:
    """What the section's widgets say: the preprocessing, labels from a file, and whether to classify."""

    preprocessing: dict[str, Any]
    class_labels: list[str] | None
    classify: bool


def _numbers_text(values: Sequence[float] | None) -> str:
    return ", ".join(f"{v:g}" for v in values) if values else ""


def _split_numbers(text: str) -> list[float] | str | None:
    """Typed numbers as a list; the text itself when it is not numbers (the check names it); None when blank."""
    parts = text.replace(",", " ").split()
    if not parts:
        return None
    try:
        return [float(p) for p in parts]
    except ValueError:
        return text


def _labels_from_file(upload: Any, signature: dict[str, Any]) -> list[str] | None:
    """The labels of an uploaded file, with its count beside the model's classes (an error when they differ)."""
    if upload is None:
        return None
    with shown_errors():
        labels = parse_labels(upload.getvalue(), name=upload.name)
        found = class_output(signature)
        if found is not None and found[1] != len(labels):
            st.error(f"{upload.name} has {len(labels)} labels, but output {found[0]!r} has {found[1]} classes; "
                     f"give a file with exactly {found[1]} labels (one per line, or a JSON list)",
                     icon=":material/block:")
        else:
            st.caption(f"{len(labels)} labels read from {upload.name}"
                       + (f" · the model has {found[1]} classes" if found else ""))
        return labels
    return None


def image_settings_section(
    signature: dict[str, Any], *, preprocessing: dict[str, Any] | None, classify: bool, key: str,
) -> ImageSettings:
    """The widgets, prefilled from ``preprocessing`` (else what the input's shape says); nothing is checked here."""
    current = {**image_defaults(signature), **(preprocessing or {})}
    width, height = current["size"]
    task = st.radio("Image task", [IMAGE_CLASSIFICATION, OTHER], index=0 if classify else 1, horizontal=True,
                    key=key + "task", help="Image classification sets the task to classification: the "
                    "prediction is a class (from the labels file) with its top-k probabilities")
    cols = st.columns(3)
    width = cols[0].number_input("Input width", 1, 8192, int(width), key=key + "width")
    height = cols[1].number_input("Input height", 1, 8192, int(height), key=key + "height")
    resize = cols[2].selectbox("Resize", RESIZE_MODES, index=RESIZE_MODES.index(current.get("resize", "stretch")),
                               format_func=_RESIZE_TEXT.get, key=key + "resize")
    cols = st.columns(4)
    mode = cols[0].selectbox("Colour", list(_COLOURS), index=list(_COLOURS).index(current.get("mode", "RGB")),
                             format_func=_COLOURS.get, key=key + "mode")
    order = cols[1].selectbox("Channel order", CHANNEL_ORDERS, key=key + "order",
                              index=CHANNEL_ORDERS.index(current.get("channel_order", "RGB")))
    scale_now = {v: k for k, v in _PIXEL_SCALES.items()}.get(float(current.get("scale", 1.0)), "0-1")
    scale = cols[2].selectbox("Pixel scale", list(_PIXEL_SCALES), index=list(_PIXEL_SCALES).index(scale_now),
                              key=key + "scale", help="0-1: pixels divided by 255; 0-255: raw pixel values")
    layout = cols[3].selectbox("Layout", LAYOUTS, index=LAYOUTS.index(current.get("layout", "NCHW")),
                               key=key + "layout", help="NCHW: channels first (PyTorch); NHWC: channels last")
    cols = st.columns(2)
    mean = cols[0].text_input("Mean", _numbers_text(current.get("mean")), key=key + "mean",
                              placeholder="0.485, 0.456, 0.406", help="One per channel, after the pixel scale; "
                              "blank: no normalisation")
    std = cols[1].text_input("Std", _numbers_text(current.get("std")), key=key + "std",
                             placeholder="0.229, 0.224, 0.225", help="One per channel; blank: no normalisation")
    upload = st.file_uploader("Labels file", type=["txt", "json"], key=key + "labels",
                              help="One class label per line, or a JSON list, in the order of the model's scores")
    prep = {**(preprocessing or {}), "mode": mode, "size": [int(width), int(height)], "resize": resize,
            "channel_order": order, "scale": _PIXEL_SCALES[scale], "layout": layout,
            "mean": _split_numbers(mean), "std": _split_numbers(std)}
    if prep["mean"] is None and prep["std"] is None:
        del prep["mean"], prep["std"]
    return ImageSettings(prep, _labels_from_file(upload, signature), task == IMAGE_CLASSIFICATION)


def registration_image_settings(report: Any, metadata: dict[str, Any], *, key: str) -> dict[str, Any]:
    """At Register, for a model that takes images: the section, merged into the form's ``metadata``."""
    signature = report.info["signature"]
    if not is_image_signature(signature, None):
        return metadata
    with st.expander("Image settings", expanded=True, icon=":material/image:"):
        settings = image_settings_section(signature, preprocessing=None, classify=class_output(signature) is not None,
                                          key=key)
        with shown_errors():
            check_preprocessing(settings.preprocessing, signature)
    merged = {**metadata, "preprocessing": settings.preprocessing}
    if settings.class_labels:
        merged["class_labels"] = settings.class_labels
    if settings.classify:
        merged["task"] = "classification"
    return merged


def image_settings_panel(portal: Portal, version: ModelVersion) -> None:
    """On the Models page, for a version that takes images: change its image settings and labels."""
    if not is_image_signature(version.signature, version.preprocessing):
        return
    st.markdown(f"**Image settings of version {version.version}**")
    refused = why_not(portal, "edit", version)
    if refused:
        st.caption(f":material/lock: {refused}")
        return
    with st.form(f"image.{version.ref}"):
        settings = image_settings_section(version.signature, preprocessing=version.preprocessing,
                                          classify=version.task == "classification", key=f"image.{version.ref}.")
        saved = st.form_submit_button("Save image settings", type="primary", icon=":material/save:")
    if saved:
        try:
            portal.set_image_settings(version.ref, settings.preprocessing, class_labels=settings.class_labels,
                                      classify=settings.classify)
        except PortalError as exc:
            st.error(exc.message, icon=":material/block:")
            return
        flash(f"Saved the image settings of {version.ref}.")
        st.rerun()
