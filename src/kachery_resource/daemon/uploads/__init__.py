"""How the daemon gets a local file into the zone's bucket, in layers.

Each module imports only from the floors below it (never up, never sideways into a plan)::

    uploader        GatewayUploader: findFile; picks the first plan that wants the file
    ─────────────────────────────────────────────────────────────────────────────────────
    single          SinglePlan: initiateFileUpload, one PUT, finalizeFileUpload (any file)
    multipart       MultipartPlan (+ MultipartSettings): parallel parts, resumable
      part_sender   PartSender: the parts of one multipart upload (PartTools passed in)
    chunks          ChunksPlan: the chunks of a file that a reader's range needs
    ─────────────────────────────────────────────────────────────────────────────────────
    put             the single streaming PUT (read + sha1 + send), PUT status check
    parts           PartPut (one part's PUT), SequentialHasher
    multipart_api   the five multipart request types (MultipartApi, MultipartLimits)
    chunks_api      the chunk request types (ChunksApi)
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

The chunks plan (issue 19: fixed-size aligned chunks of a file, uploaded as objects of
their own when a reader asks for a range; docs/design-chunks.md) is the third way up, and
shows how one slots in without touching the others:

- its requests in a module of their own (``chunks_api.py``, beside ``multipart_api``),
  sent through ``DaemonGateway.call``, so errors and retries are the layer's;
- the plan on top (``chunks.py``), built from what it uses (the gateway): its
  ``upload_chunks(local, chunk_list, indices, progress)`` registers the signed chunk list
  once and sends the chunks asked for, each retried with ``with_retries``. It is not a
  whole-file plan, so it is not one of the uploader's ``plans``; whoever answers a
  reader's range request (the daemon's jobs) holds it next to the uploader.

A whole-file plan (say, one for a gateway with a faster way in) would instead be passed to
``GatewayUploader(gateway, new_plan, multipart_plan)``: the first that ``wants`` a file
takes it.
"""
