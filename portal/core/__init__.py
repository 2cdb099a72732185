"""The ``Portal`` facade: the one object the UI, the CLI and the API talk to.

This package owns the portal as its users see it: who may see and do what,
uploads staged and registered as versions, edits and deletion, and predictions
for the signed-in user, over the storage, ingest and serving layers below it.
``Portal`` is one class made of focused parts (mixins over one shared state);
the feature packages hang off it as ``variants``, ``explain`` and ``monitoring``.

Modules:

    portal        Portal: open, the store, maintenance, the demo, and the feature services
    state         PortalState: the settings, stores, pipeline and user every part shares
    access        as_user, can/check, visibility, and references resolved (and cached) for the user
    registering   prepare, register and discard uploads; StagedModel and suggest_name
    editing       aliases, model and version fields, deletion and blob collection
    reference     reference data (tables, or images as input tensors) checked against a signature and kept
    predicting    predict, coerce, images and file scoring through the one serving pipeline
"""

from __future__ import annotations

from .portal import DEMO_NAMES, Portal
from .registering import StagedModel, suggest_name

__all__ = ["DEMO_NAMES", "Portal", "StagedModel", "suggest_name"]
