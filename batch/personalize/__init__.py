"""``batch personalize``: the Amazon Personalize resources of the lobby, applied from a declarative config.

The way through: :mod:`.config` (the YAML, validated) -> :mod:`.plan` (what exists, found by name, and
what to create, in dependency order) -> :mod:`.waiter` (status polling with backoff, jitter and a
deadline) -> :mod:`.outputs` (the ARNs and tracking id the stream worker and PAM need). :mod:`.train`
makes new solution versions and points the campaigns at them; :mod:`.command` is the command line.
"""
