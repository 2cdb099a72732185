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
STAGED = "upload.staged"  # (file token, StagedModel) waiting for confirmation
UPLOAD_FAILURE = "upload.failure"  # (file token, message, needs input shape)
REGISTERED = "upload.registered"  # reference of the version just registered

# models page
MODEL_TABLE = "models.table"  # dataframe selection widget
MODEL_TABLE_NAMES = "models.table.names"  # model names in the order the table shows them
DELETE_ARMED = "models.delete.armed"  # reference a delete is being confirmed for

# predict page
FORM_PREFIX = "predict.form."  # + "<ref>.<column>": one form field
FORM_RESULT = "predict.form.result"  # (ref, Prediction, result frame)
BATCH_RESULT = "predict.batch.result"  # (ref, file token, joined frame, latency, rows)
IMAGE_RESULT = "predict.image.result"  # (ref, file tokens, result frame, latency)

# accounts (portal.ui.session)
SIGNED_IN = "auth.signed_in"  # SignedIn of this browser session, checked on every run
USER = "auth.user"  # the User this run acts for (None: nobody signed in, or PORTAL_AUTH=off)
AUTH_NOTICE = "auth.notice"  # why the session ended, shown once on the sign-in form
NEW_SECRET = "admin.new_secret"  # (user, token id, secret) of a token just created: shown once
