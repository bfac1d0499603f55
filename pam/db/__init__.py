"""The platform database: models (:mod:`.models`), engines (:mod:`.engine`), migrations
(:mod:`.migrate`), and a generated seed (:mod:`.seed`, from :mod:`.play_history`)."""
