"""The REST routes of :mod:`portal.api`, one ``APIRouter`` per group, included by :func:`portal.api.create_app`.

Each route checks what the caller may do through the request's ``ApiContext``
and answers errors as ``{"error": ...}`` through the app's one handler.

    v2        Open Inference Protocol v2: health, server and model metadata, readiness, infer
    predict   the friendly prediction route: JSON records or CSV in, the same kind out
    models    management: list, show, upload, edit, alias, delete and download models
    upload    receiving a multipart upload straight into a file on the store's filesystem
    users     users, tokens and the audit trail (admins), and ``/api/me``
"""
