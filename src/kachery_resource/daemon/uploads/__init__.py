"""How the daemon gets a local file into the zone's bucket, in layers.

Each module imports only from the floors below it (never up, never sideways into a plan)::

    uploader        GatewayUploader: findFile; picks the first plan that wants the file
    ─────────────────────────────────────────────────────────────────────────────────────
    single          SinglePlan: initiateFileUpload, one PUT, finalizeFileUpload (any file)
    multipart       MultipartPlan (+ MultipartSettings): parallel parts, resumable
      part_sender   PartSender: the parts of one multipart upload (PartTools passed in)
    ─────────────────────────────────────────────────────────────────────────────────────
    put             the single streaming PUT (read + sha1 + send), PUT status check
    parts           PartPut (one part's PUT), SequentialHasher
    multipart_api   the five multipart request types (MultipartApi, MultipartLimits)
    journal         UploadJournal: SQLite record of multipart uploads in progress
    ─────────────────────────────────────────────────────────────────────────────────────
    gateway         DaemonGateway: signed gateway calls, /api/info, initiate/finalize
    retry           TransientError and with_retries: the one backoff policy

A plan is an object with ``wants(local)``, ``upload(local, progress)`` and ``close()``
(:class:`.uploader.Plan`); it gets what it uses (the gateway, its settings, the journal)
from whoever builds it — ``daemon/share.py`` builds the plans and passes them to
``GatewayUploader(gateway, *plans)``, which always ends with the single plan. Failures
worth retrying raise ``TransientError``; everything retried goes through
``with_retries`` (0.5 s doubling to at most 30 s, jittered), so there is one policy.

Adding a third plan — chunks (issue 19: fixed-size aligned chunks of a file uploaded as
objects of their own when a reader asks for a range) — touches neither single nor
multipart:

- ``chunks_api.py`` beside ``multipart_api``: the gateway's chunk request types through
  ``DaemonGateway.call``, and the chunk limits read from ``/api/info``.
- ``chunks.py`` beside ``multipart``: ``ChunksPlan(gateway, keys, ...)`` whose
  ``upload_chunks(local, chunk_list, indices, progress)`` registers the signed chunk list
  once and sends the chunks asked for (each one PUT of its bytes to its own signed URL,
  retried with ``with_retries``). It is not a whole-file plan, so it is not one of the
  uploader's ``plans``.
- ``uploader.py`` grows the one entry point jobs call for a range, which hands it to the
  chunks plan it was given, and ``share.py`` builds that plan when the gateway offers
  chunks. See docs/design-chunks.md.
"""
