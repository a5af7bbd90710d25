"""Domain code shared by serving (Lambda functions) and training.

Knows nothing about Lambda events: the manifest contract, the S3 model store, input
parsing and ONNX inference. Research and education only - NOT FOR CLINICAL USE.
"""

NOT_FOR_CLINICAL_USE = (
    "Research and education only. NOT FOR CLINICAL USE: predictions must not inform "
    "diagnosis or treatment."
)
