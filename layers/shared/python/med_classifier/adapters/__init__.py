"""AWS adapters: the S3 model store and upload signer, the DynamoDB counters and jobs
table, the SageMaker and Batch launchers. Each implements a Protocol of `domain.ports`;
the only place AWS SDK calls live."""
