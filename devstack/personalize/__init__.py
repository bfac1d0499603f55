"""Our own Amazon Personalize emulator (events API today; control plane and runtime to come).

- :mod:`.server`: ``python -m devstack.personalize`` / :func:`devstack.personalize.server.main`.
- :mod:`.app`: the ASGI app, composed of one router per API (:mod:`.events`, :mod:`.admin`).
- :mod:`.validation`: the service's limits; :mod:`.state`: trackers, datasets, records, stats;
  :mod:`.quota`: token buckets; :mod:`.faults`: fault injection; :mod:`.persistence`: JSON-lines files.
- :mod:`.client`: a stdlib client of the admin API and :func:`~devstack.personalize.client.run_emulator`
  (the emulator as a subprocess, for tests and benchmarks).

Importing this package imports nothing heavy: the client works without Starlette or uvicorn loaded.
"""
