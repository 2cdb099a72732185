"""Streamlit-facing helpers: the only modules in ``portal`` that import streamlit.

Each page of ``app_pages/`` imports this package (the helpers every page
shares, re-exported here) and one ``<page>_panels`` module holding its panels.

- ``resources``: ``get_portal``, the app's one ``@st.cache_resource``.
- ``keys``: every session-state key, in one place.
- ``session``: sign-in, the first-admin form, expiry, sign-out; ``current_portal`` for this run's user.
- ``widgets``: the sidebar model picker, flash messages, error boxes, shared column formats.
- ``roles``: why a page hides or disables an action, in one sentence.
- ``tabs``: ``kept_tabs``, tabs that stay on the open tab when an action reruns the page.
- ``render``: charts, signature tables, validation reports, version facts, one prediction.
- ``audit``: the audit trail as filters, tables and CSV, and what a non-admin may see of it.
- ``staging``: the upload page's state: one checked upload per browser session.
- ``home_panels``: the Home page: store totals, quick actions, latest uploads, recent activity.
- ``upload_panels``: the Upload page: the uploader, the report, the registration form.
- ``reference_data``: reference data uploads for the Register form and the Models page (Edit tab).
- ``image_settings``: image task, preprocessing and labels file for the Register form and the Models page.
- ``models_panels``: the Models page: search table, model card, versions, aliases, edit, compare, delete.
- ``predict_panels``: the Predict page: a generated form, a batch file, images, raw tensors.
- ``compare_panels``: the Compare page: new comparison, results and advice, flipped rows, promote.
- ``explain_panels``: the Explain page: SHAP or LIME panels by method, one tab per question.
- ``explain_shap_panels``, ``explain_lime_panels``: the SHAP panels and their LIME twins.
- ``explain_widgets``: the Explain widgets both share: settings, data, what-if, images, run button.
- ``monitor_panels``: the Monitor page: time range, metric tiles, traffic, errors, input drift.
- ``admin_panels``: the Admin page: users, API tokens, the audit log.
"""

from __future__ import annotations

from . import keys
from .resources import get_portal
from .roles import why_not
from .session import current_portal
from .tabs import kept_tabs
from .widgets import listed_models, picked_version, show_flash, shown_errors

__all__ = [
    "current_portal",
    "get_portal",
    "keys",
    "kept_tabs",
    "listed_models",
    "picked_version",
    "show_flash",
    "shown_errors",
    "why_not",
]
