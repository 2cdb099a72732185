"""Serving a registered version: its onnxruntime session, its inputs, and the one predict pipeline.

This package owns running a model: the shared session cache and the process's
memory ceiling, turning user data (arrays, records, tables, files, images) into
the feeds a version's signature asks for, running them in chunks and shaping
the results, the one predict pipeline every door goes through (plan, coerce,
session, run, log), and streamed scoring of whole CSV and Parquet files.  It
never imports the monitor package: the prediction log is handed in as a sink.

Modules:

    pipeline    Pipeline: plan, coerce, session, run and log, for the library, the UI, the CLI and the API
    runtime     SessionCache and SessionConfig: one onnxruntime session per model file and options
    memlimit    the process's memory ceiling for onnxruntime runs
    signature   coerce: user data into feeds that match a version's signature; FastPlan for ready arrays
    casting     safe casts to a tensor's dtype, and the short listings refusals use
    matching    table columns to model columns: exact names, then normalised spelling, then the user's mapping
    predict     run_feeds (chunked runs) and Prediction (the tidy results table)
    images      decoding and preprocessing images for image models
    reference   image reference data as a table: pixel columns, or one tensor column for big inputs
    dataio      reading input files and writing results safely (no unpickling, formula escaping)
    batch       streamed scoring of CSV and Parquet files, and the browser's background job
"""
