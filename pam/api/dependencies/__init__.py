"""The lobby's dependencies, one file each: the platform database (:mod:`.players`), similar games in
DynamoDB (:mod:`.similar`) and the Personalize runtime (:mod:`.personalize`). Each call is one awaitable;
deadlines, breakers and fallbacks are the caller's (:mod:`pam.api.deadline`)."""
