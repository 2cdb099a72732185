"""Session-state keys, in one place so pages never collide or misspell them."""

from __future__ import annotations

# sidebar model picker (widgets rendered by the entry point on every page)
MODEL = "picker.model"
VERSION = "picker.version."  # + model name: one version choice per model (a fresh widget per model)
PENDING_PICK = "picker.pending"  # (name, version choice) to apply before the picker renders
MODELS = "picker.models"  # the models the sidebar listed in this run (pages reuse them)

# one-shot message shown on the next run: (kind, text)
FLASH = "flash"

# upload page
UPLOAD_NONCE = "upload.nonce"  # bumped to give the file uploader a fresh, empty key
UPLOAD_FILE = "upload.file."  # + nonce: the file uploader
STAGED = "upload.staged"  # (file token, StagedModel) waiting for confirmation
UPLOAD_FAILURE = "upload.failure"  # (file token, message, needs input shape)
REGISTERED = "upload.registered"  # reference of the version just registered

# models page
MODEL_TABLE = "models.table"  # dataframe selection widget
MODEL_TABLE_NAMES = "models.table.names"  # model names in the order the table shows them
DELETE_ARMED = "models.delete.armed"  # reference a delete is being confirmed for
REFERENCE_UPLOAD = "models.reference.file."  # + version ref: the reference data uploader
REFERENCE_SAVE = "models.reference.save."  # + version ref: its Save button
MODELS_TAB = "models.tab"  # the open tab of the model below the table (portal.ui.tabs.kept_tabs)

# predict page
FORM_PREFIX = "predict.form."  # + "<ref>.<column>": one form field
FORM_ROW = "__row"  # after FORM_PREFIX + "<ref>.": the reference row the form fills from
FORM_RESULT = "predict.form.result"  # (ref, Prediction, result frame)
BATCH_RESULT = "predict.batch.result"  # (ref, file token, joined frame, latency, rows)
IMAGE_RESULT = "predict.image.result"  # (ref, file tokens, result frame, latency)

# compare page (widgets)
COMPARE_METHODS = "compare.methods"
COMPARE_CALIBRATION = "compare.calibration"  # calibration data files
COMPARE_DATA = "compare.data"  # evaluation data files
COMPARE_TOLERANCE = "compare.tolerance"
COMPARE_OBJECTIVE = "compare.objective"
COMPARE_BATCH = "compare.batch"
COMPARE_FLIPPED = "compare.flipped"  # the variant whose flipped rows are listed
COMPARE_PROMOTE = "compare.promote"  # the variant to promote
COMPARE_ALIAS = "compare.alias"
COMPARE_EXPLAIN = "compare.explain."  # prefix of the variant explanation-drift panel's widgets
COMPARE_DIFF = "compare.diff"  # the variant whose graph diff is shown
COMPARE_STUDENT = "compare.student"  # distill: the student architecture
COMPARE_TRAIN_SECONDS = "compare.train_seconds"  # distill: the training budget
COMPARE_BUDGET = "compare.budget"  # int8-budgeted: the agreement loss allowed, in %
COMPARE_GATE = "compare.gate"  # evaluation-gate rules, one per line
ALIAS_OVERRIDE = "alias.override."  # + model name: the Models page's "override the gate" checkbox

# explain page: every widget key starts with EXPLAIN
EXPLAIN = "explain."
EXPLAIN_METHOD = EXPLAIN + "method"  # "shap" or "lime"
EXPLAIN_WHATIF = EXPLAIN + "whatif."  # + "<ref>.<column>": one what-if field
EXPLAIN_WHATIF_FROM = EXPLAIN + "whatif.from"  # the row the what-if form loads
EXPLAIN_WHATIF_LOADED = EXPLAIN + "whatif.loaded"  # the row it loaded last (what a change is relative to)
EXPLAIN_LIME = EXPLAIN + "lime."  # prefix of the LIME panels' widgets
EXPLAIN_AGREE = EXPLAIN + "agree."  # prefix of the SHAP-vs-LIME panel's widgets
COMPUTED_EXPLANATIONS = "computed.explanations"  # cache keys of the explanations this browser session computed

# monitor page (widgets)
MONITOR_WINDOW = "monitor.window"
MONITOR_CUSTOM = "monitor.custom"  # the custom date range
MONITOR_SCOPE = "monitor.scope"
MONITOR_FEATURE = "monitor.feature."  # + version ref: the feature whose distributions are shown

# accounts (portal.ui.session)
SIGNED_IN = "auth.signed_in"  # SignedIn of this browser session, checked on every run
USER = "auth.user"  # the User this run acts for (None: nobody signed in, or PORTAL_AUTH=off)
AUTH_NOTICE = "auth.notice"  # why the session ended, shown once on the sign-in form
NEW_SECRET = "admin.new_secret"  # (user, token id, secret) of a token just created: shown once
ADMIN_TAB = "admin.tab"  # the open tab of the Admin page (portal.ui.tabs.kept_tabs)


def per_model(key: str, model: str) -> str:
    """``key`` of a widget that belongs to one model (a file uploader): a fresh, empty widget per model.

    A file uploader keeps its files until its key changes, so files dropped for
    one model would otherwise still be there, and used, after another is picked.
    """
    return f"{key}.{model}"
