"""Where models live: the registry database and the content-addressed blob store.

Everything persistent is here, below every feature: rows (models, versions,
aliases, users, tokens, the audit trail, the prediction log's tables) in one SQL
database, and files as immutable blobs named by their sha256.  Nothing here
imports the portal facade or a feature package.

    refs       model references (``name``, ``name:3``, ``name@alias``) and the name rules
    db         the SQLAlchemy engine, schema and migrations
    records    the frozen records the registry hands out (ModelVersion, ModelSummary, AuditEvent)
    queries    reading registry rows into records inside an open session
    audit      the append-only audit trail: add an event, read events back
    registry   Registry: transactions and every write to models, versions and aliases
    blobfs     where blob bytes live: the local filesystem or an fsspec one
    crypto     optional AES-GCM encryption of blobs at rest
    store      BlobStore: put, verify, read and delete blobs
    fsck       check and repair: the registry and the blobs must agree
    backup     consistent backups of a running store, and restore into an empty home
    export     a version as a Triton model repository (and a KServe InferenceService)
"""
