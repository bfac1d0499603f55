"""The Personalize control plane (JSON 1.1): resources, their status progression, training, batch jobs.

- :mod:`.plane`: the resource tables, status progression, listing, streamed data (:class:`ControlPlane`).
- :mod:`.resources`: what each resource holds and how Describe shows it.
- :mod:`.schemas`, :mod:`.importer`, :mod:`.data`: dataset schemas, CSV import, a dataset group's rows.
- :mod:`.data_ops`, :mod:`.training_ops`, :mod:`.batch_jobs`: the operations.
- :mod:`.serving`: recommendations from a model (runtime and batch).
- :mod:`.api`: the ``POST /`` route; :mod:`.admin`: ``/_emulator/resources``, ``/_emulator/settings``.
"""
