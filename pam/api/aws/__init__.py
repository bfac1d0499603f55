"""A small asyncio client for the two AWS JSON calls on the lobby's hot path (DynamoDB GetItem and
Personalize GetRecommendations): SigV4 signing, a keep-alive connection pool, no threads on a call's path
(the credentials are read on a thread, ahead of need).

Endpoints, region and credentials come from botocore's own configuration (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_<SERVICE>``, the credential chain); only the requests are sent by this package, which
costs a fraction of a boto3 call's CPU time.
"""
