"""Our own Amazon Personalize emulator: the events, runtime and control-plane APIs, with local recipes.

- :mod:`.server`: ``python -m devstack.personalize`` / :func:`devstack.personalize.server.main`.
- :mod:`.app`: the ASGI app, composed of one router per API (:mod:`.events`, :mod:`.runtime`,
  :mod:`.control.api`, :mod:`.admin`, :mod:`.control.admin`).
- :mod:`.validation`: the events API's limits; :mod:`.shapes`: request checks from botocore's models;
  :mod:`.state`: trackers, datasets, records, stats; :mod:`.quota`: token buckets; :mod:`.faults`: fault
  injection; :mod:`.persistence`: JSON-lines files.
- :mod:`.control`: the control plane (resources, status progression, dataset import from S3, training,
  batch inference); :mod:`.recipes`: the local recipes; :mod:`.filters`: filter expressions;
  :mod:`.s3io`: S3 access for jobs.
- :mod:`.client`: a stdlib client of the admin API and :func:`~devstack.personalize.client.run_emulator`
  (the emulator as a subprocess, for tests and benchmarks).

Importing this package imports nothing heavy: the client works without Starlette or uvicorn loaded.
"""
