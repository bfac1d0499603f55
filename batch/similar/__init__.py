"""``batch similar``: SIMS batch inference for every game, loaded into the DynamoDB table PAM reads.

The data's way, one module per step: :mod:`.inference` (the Items dataset -> input JSON lines on S3 ->
CreateBatchInferenceJob -> wait) -> :mod:`.output` (the job's output lines, streamed and parsed) ->
:mod:`.loader` (BatchWriteItem into :mod:`.table`, never replacing a newer model's rows). :mod:`.handler`
runs the loader on an S3 event (Lambda); :mod:`.command` is the CLI.
"""
