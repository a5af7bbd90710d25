"""The product's rules, free of AWS and Lambda: manifests, input parsing, preprocessing,
inference, the model cache, the registry view and the retraining loop's decisions. What
it needs from outside is declared as Protocols in `ports`; it imports no boto3, botocore,
Powertools or adapter (tests/unit/test_layering.py)."""
