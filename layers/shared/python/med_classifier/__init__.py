"""Code shared by serving (the Lambda functions) and training, in three layers:

    domain/    the rules (no AWS, no Lambda); declares the Protocols it needs
    adapters/  S3, DynamoDB, SageMaker/Batch implementations of those Protocols
    api/       HTTP schemas, errors and body parsing (Powertools lives here)
    settings   one settings model per function; services builds them into domain objects

Research and education only - NOT FOR CLINICAL USE.
"""

NOT_FOR_CLINICAL_USE = (
    "Research and education only. NOT FOR CLINICAL USE: predictions must not inform diagnosis or treatment."
)
