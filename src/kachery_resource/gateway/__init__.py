"""The zone gateway: the server kachery-cloud calls ``KACHERY_GATEWAY_URL``.

Modules, one job each:

- ``settings``     zones YAML and command-line settings (pydantic)
- ``zones``        zones at run time: settings + opened storage + registry
- ``keys``         object keys (content, staging, multipart, client records) and their validation
- ``problems``     the one HTTP error type and the JSON shape every error is rendered as
- ``storage/``     backends: a local directory (``local``) and S3 (``s3``)
- ``signed_urls``  expiring HMAC-signed URLs for the local-directory backend
- ``registry``     client records kept in the storage itself
- ``envelope``     strict request schema, body bound, timestamp window, signature check
- ``api``          the ``POST /api/gateway`` handlers kachery-cloud uses
- ``multipart``    the multipart-upload extension of that API
- ``files``        GET/PUT of objects through signed URLs (local backend)
- ``registration`` ``/registerClient/<id>`` and ``/client/<id>``
- ``app``          ``build_app()``: middleware, routes, the cleanup task
- ``cli``          ``kachery-resource gateway`` and ``gateway clients add|list|remove``
"""
