"""What the deploy rehearsal does not prove: the one list, printed by every report (README "Deploy rehearsal").

moto 5.2's CloudFormation creates most of the template but not all of it. Each entry names the resource
type, property or attribute, and why. The rehearsal holds moto to this list both ways: a resource that
moto leaves out and whose type is not in SKIPPED_TYPES fails the run, and so does one whose type is listed
but that moto created; a property of a created resource that no comparator reads and that is not listed
in IGNORED_PROPERTIES fails it too (tests/integration/test_deploy_rehearsal.py;
tests/unit/test_deploy_rehearsal.py checks each listed type against moto's own model list).
"""

from __future__ import annotations

from scripts.rehearse.prepare import alias_function_arn, first_version_arn

NO_MODEL = "moto's CloudFormation has no model for it: the stack lists it nowhere"

# Resource types moto does not create (the stack completes without them). An Output or a property that
# references one of these is reported as depending on it, not compared.
SKIPPED_TYPES: dict[str, str] = {
    "AWS::S3::BucketPolicy": f"{NO_MODEL} (the buckets' TLS-only and log-delivery policies)",
    "AWS::SQS::QueuePolicy": f"{NO_MODEL} (who may send to the upload and dead-letter queues)",
    "AWS::SNS::TopicPolicy": f"{NO_MODEL} (CloudWatch publishing to the alarm topic)",
    "AWS::SNS::Subscription": f"{NO_MODEL} (AlarmEmail)",
    "AWS::CloudWatch::Alarm": f"{NO_MODEL} (every alarm; moto's CloudWatch has dashboards only)",
    "AWS::Cognito::UserPool": f"{NO_MODEL}; USER_POOL_ID and the UserPoolId output are left out with it",
    "AWS::Cognito::UserPoolClient": f"{NO_MODEL}; USER_POOL_CLIENT_ID and UserPoolClientId are left out",
    "AWS::Cognito::UserPoolGroup": f"{NO_MODEL} (clinicians, ml-admins)",
    "AWS::ApiGateway::Stage": f"{NO_MODEL}: no access logs, tracing or throttling settings (MethodSettings)",
    "AWS::ApiGateway::Account": f"{NO_MODEL} (ManageApiGatewayAccountLogging)",
    "AWS::ApiGateway::Authorizer": NO_MODEL,
    "AWS::ApiGateway::UsagePlan": NO_MODEL,
    "AWS::ApiGateway::ApiKey": NO_MODEL,
    "AWS::ApiGateway::UsagePlanKey": NO_MODEL,
    "AWS::Lambda::EventInvokeConfig": f"{NO_MODEL} (JobStateFunction's retries and OnFailure destination)",
    "AWS::Lambda::Alias": (
        f"{NO_MODEL}; a Ref to an alias is replaced by its function's unqualified ARN (below), so routes "
        "and permissions are checked against the function, not the alias"
    ),
    "AWS::CodeDeploy::Application": f"{NO_MODEL} (DeploymentPreference: no traffic shifting is rehearsed)",
    "AWS::CodeDeploy::DeploymentGroup": f"{NO_MODEL} (DeploymentPreference's canary, alarms and hooks)",
    "AWS::CloudFormation::WaitConditionHandle": "moto ignores wait conditions and their handles",
    "AWS::WAFv2::WebACL": f"{NO_MODEL} (EnableWaf)",
    "AWS::WAFv2::WebACLAssociation": f"{NO_MODEL} (EnableWaf)",
}

_CFN_NOT_APPLIED = "moto's CloudFormation creates the resource without it"

# Properties of resources moto does create that the rehearsal does not compare, each with the reason.
# A dotted name documents a part of a property that is otherwise compared.
IGNORED_PROPERTIES: dict[str, dict[str, str]] = {
    "AWS::S3::Bucket": {
        "VersioningConfiguration": _CFN_NOT_APPLIED,
        "LifecycleConfiguration": _CFN_NOT_APPLIED,
        "CorsConfiguration": f"{_CFN_NOT_APPLIED} (the presigned POST's CORS rule)",
        "NotificationConfiguration": f"{_CFN_NOT_APPLIED} (uploads/ to UploadQueue)",
        "LoggingConfiguration": f"{_CFN_NOT_APPLIED} (server access logs)",
        "PublicAccessBlockConfiguration": _CFN_NOT_APPLIED,
        "OwnershipControls": _CFN_NOT_APPLIED,
    },
    "AWS::DynamoDB::Table": {
        "TimeToLiveSpecification": f"{_CFN_NOT_APPLIED} (DescribeTimeToLive: DISABLED)",
        "PointInTimeRecoverySpecification": f"{_CFN_NOT_APPLIED} (DescribeContinuousBackups: DISABLED)",
        "SSESpecification": "moto keeps it but DescribeTable reports no SSEDescription",
    },
    "AWS::Lambda::Function": {
        "Layers": f"{_CFN_NOT_APPLIED}: the function lists no layers",
        "Architectures": "moto reports x86_64 whatever the template says",
        "LoggingConfig": _CFN_NOT_APPLIED,
        "SnapStart": f"{_CFN_NOT_APPLIED} (SnapStart ApplyOn: None)",
        "Tags": f"{_CFN_NOT_APPLIED} (SAM's lambda:createdBy tag)",
    },
    "AWS::Lambda::Version": {
        "Description": "moto publishes the version with the function's description instead",
    },
    "AWS::Lambda::LayerVersion": {
        "CompatibleArchitectures": f"{_CFN_NOT_APPLIED} (it reads Description, CompatibleRuntimes, LicenseInfo)",
        "LayerName": "moto names the layer <stack>-<logical id>-<suffix> (the rehearsal finds it by that name)",
    },
    "AWS::IAM::Role": {
        "ManagedPolicyArns": (
            f"{_CFN_NOT_APPLIED}: no managed policy is attached, AWS's (AWSLambdaBasicExecutionRole...) or "
            "this template's (RetrainLaunchPolicy...); the policies themselves are compared"
        ),
    },
    "AWS::KMS::Key": {
        "Description": "DescribeKey answers 500 for a key moto's CloudFormation created (its policy is an object)",
    },
    "AWS::ECR::Repository": {
        "ImageScanningConfiguration": "moto keeps CloudFormation's ScanOnPush, its API reads scanOnPush: empty",
        "EncryptionConfiguration": "moto keeps CloudFormation's EncryptionType, its API reads encryptionType: empty",
        "LifecyclePolicy": f"{_CFN_NOT_APPLIED} (GetLifecyclePolicy: not found)",
    },
    "AWS::ApiGateway::RestApi": {
        "BinaryMediaTypes": f"{_CFN_NOT_APPLIED} (it reads Name, Description, EndpointConfiguration)",
        "Body.securityDefinitions": "the authorizers (Cognito user pool): moto has no authorizer model",
        "Body.x-amazon-apigateway-binary-media-types": "as BinaryMediaTypes",
    },
}

# Resource attributes (beside Type and Properties), whatever the type.
ATTRIBUTES: dict[str, str] = {
    "Condition": "applied before upload with the default parameter values (see Rewrites)",
    "DependsOn": "honoured by the creation order the rehearsal gives moto (moto does not wait by itself)",
    "DeletionPolicy": "the rehearsal creates the stack once and never deletes it",
    "UpdateReplacePolicy": "the rehearsal never updates or replaces a resource",
    "UpdatePolicy": "no update is rehearsed (CodeDeployLambdaAliasUpdate: the alias is not created either)",
    "Metadata": "not deployed; read by SAM (BuildMethod) and checkov",
}

# What the rehearsal changes in the translated template before moto gets it (scripts/rehearse/prepare.py).
REWRITES: dict[str, str] = {
    "Conditions": (
        "every Condition, Fn::If and AWS::NoValue applied with the default parameter values (moto keeps "
        "AWS::NoValue as null inside lists, and IAM then refuses the policy)"
    ),
    "REST API Body": (
        "each path of the OpenAPI Body becomes an AWS::ApiGateway::Resource and each operation an "
        "AWS::ApiGateway::Method (moto ignores Body); the API gets Body's title as Name; the deployment "
        "waits for the methods"
    ),
    "Resource order": "resources sorted so that each comes after what it references or DependsOn",
    "ECR repository names": (
        "a repository without RepositoryName gets <stack>-<logical id> in lower case, as CloudFormation "
        "names it (moto's generated name keeps upper case, which ECR refuses)"
    ),
    "Alias references": "Ref to an AWS::Lambda::Alias becomes its function's unqualified ARN (moto has no alias)",
    "Version references": (
        "Ref to an AWS::Lambda::Version becomes its function's ARN qualified by 1, the first version of a fresh "
        "stack (moto gives the Ref no value)"
    ),
}

# Type -> name property the rehearsal fills in (REWRITES, ECR repository names).
LOWERCASE_NAMES = {"AWS::ECR::Repository": "RepositoryName"}

# Type -> the intrinsic that stands for a Ref to a resource of that type (REWRITES, Alias references).
STAND_INS = {"AWS::Lambda::Alias": alias_function_arn, "AWS::Lambda::Version": first_version_arn}
