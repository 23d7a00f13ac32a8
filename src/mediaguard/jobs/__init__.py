"""Queue wiring and the work that runs off the request path: processing uploads (``queue``,
``worker``) and sweeping in what a platform already has (``backfill``)."""
