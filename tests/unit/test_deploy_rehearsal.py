"""The deploy rehearsal's pure parts (scripts/rehearse/): what it does to the template before moto gets it,
how it judges what moto made, cfn-lint's findings, and its list of what moto cannot check against moto's
own model list and README. The rehearsal itself: tests/integration/test_deploy_rehearsal.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from moto.cloudformation.parsing import NULL_MODELS, get_model_map

from scripts.rehearse import lint, prepare
from scripts.rehearse.compare import COMPARATORS, MISSING, Check, canonical, compare, not_created, policy_document
from scripts.rehearse.gaps import ATTRIBUTES, IGNORED_PROPERTIES, SKIPPED_TYPES, STAND_INS
from scripts.rehearse.stack import LiveStack

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- conditions ------------------------------------------------------------------------------------

CONDITIONAL = {
    "Parameters": {
        "Backend": {"Type": "String", "Default": "sagemaker"},
        "Reserved": {"Type": "Number", "Default": -1},
    },
    "Conditions": {
        "UseSageMaker": {"Fn::Equals": [{"Ref": "Backend"}, "sagemaker"]},
        "UseBatch": {"Fn::Not": [{"Condition": "UseSageMaker"}]},
        "Reserve": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Reserved"}, "-1"]}]},
    },
    "Resources": {
        "JobRole": {"Type": "AWS::IAM::Role", "Condition": "UseSageMaker", "Properties": {"RoleName": "job"}},
        "BatchRole": {"Type": "AWS::IAM::Role", "Condition": "UseBatch", "Properties": {"RoleName": "batch"}},
        "Fn": {
            "Type": "AWS::Lambda::Function",
            "DependsOn": ["BatchRole", "JobRole"],
            "Properties": {
                "ReservedConcurrentExecutions": {"Fn::If": ["Reserve", {"Ref": "Reserved"}, {"Ref": "AWS::NoValue"}]},
                "Role": {
                    "Fn::If": ["UseBatch", {"Fn::GetAtt": ["BatchRole", "Arn"]}, {"Fn::GetAtt": ["JobRole", "Arn"]}]
                },
                "Statements": [{"Fn::If": ["UseBatch", "batch:SubmitJob", {"Ref": "AWS::NoValue"}]}, "s3:GetObject"],
            },
        },
    },
    "Outputs": {
        "JobRoleArn": {"Condition": "UseSageMaker", "Value": {"Fn::GetAtt": ["JobRole", "Arn"]}},
        "BatchRoleArn": {"Condition": "UseBatch", "Value": {"Fn::GetAtt": ["BatchRole", "Arn"]}},
    },
}


def test_conditions_are_applied_with_the_default_parameters_and_no_value_disappears():
    resolved, left_out = prepare.resolve_conditions(CONDITIONAL)

    assert left_out == ["BatchRole"]
    assert "Conditions" not in resolved
    assert resolved["Resources"] == {
        "JobRole": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "job"}},
        "Fn": {
            "Type": "AWS::Lambda::Function",
            "DependsOn": ["JobRole"],
            "Properties": {"Role": {"Fn::GetAtt": ["JobRole", "Arn"]}, "Statements": ["s3:GetObject"]},
        },
    }
    assert resolved["Outputs"] == {"JobRoleArn": {"Value": {"Fn::GetAtt": ["JobRole", "Arn"]}}}


def test_given_parameters_override_the_defaults():
    resolved, left_out = prepare.resolve_conditions(CONDITIONAL, {"Backend": "batch", "Reserved": "5"})

    assert left_out == ["JobRole"]
    assert resolved["Resources"]["Fn"]["Properties"] == {
        "ReservedConcurrentExecutions": {"Ref": "Reserved"},
        "Role": {"Fn::GetAtt": ["BatchRole", "Arn"]},
        "Statements": ["batch:SubmitJob", "s3:GetObject"],
    }
    assert list(resolved["Outputs"]) == ["BatchRoleArn"]


# --- the REST API's Body ---------------------------------------------------------------------------

INTEGRATION = {"type": "aws_proxy", "httpMethod": "POST", "uri": {"Fn::Sub": "${Fn.Arn}"}}
API = {
    "Resources": {
        "Api": {
            "Type": "AWS::ApiGateway::RestApi",
            "Properties": {
                "Description": "d",
                "Body": {
                    "info": {"title": {"Ref": "AWS::StackName"}},
                    "securityDefinitions": {
                        "Pool": {"type": "apiKey", "x-amazon-apigateway-authtype": "cognito_user_pools"},
                        "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"},
                    },
                    "paths": {
                        "/": {"get": {"x-amazon-apigateway-integration": INTEGRATION, "security": [{"NONE": []}]}},
                        "/models/{model}/predict": {
                            "post": {"x-amazon-apigateway-integration": INTEGRATION, "security": [{"Pool": []}]},
                            "parameters": [],
                        },
                        "/models/{model}/retrain": {
                            "post": {
                                "x-amazon-apigateway-integration": INTEGRATION,
                                "security": [{"Pool": [], "api_key": []}],
                            }
                        },
                    },
                },
            },
        },
        "Deployment": {"Type": "AWS::ApiGateway::Deployment", "Properties": {"RestApiId": {"Ref": "Api"}}},
    }
}


def test_the_body_becomes_a_resource_per_path_segment_and_a_method_per_operation():
    rewritten, added = prepare.api_body_to_resources(API)

    resources = rewritten["Resources"]
    assert resources["Api"]["Properties"] == {"Description": "d", "Name": {"Ref": "AWS::StackName"}}
    assert added == {
        "Api": [
            "ApiRootGetMethod",
            "ApiModelsResource",
            "ApiModelsModelParamResource",
            "ApiModelsModelParamPredictResource",
            "ApiModelsModelParamPredictPostMethod",
            "ApiModelsModelParamRetrainResource",
            "ApiModelsModelParamRetrainPostMethod",
        ]
    }
    assert resources["ApiModelsResource"]["Properties"] == {
        "RestApiId": {"Ref": "Api"},
        "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
        "PathPart": "models",
    }
    assert resources["ApiModelsModelParamPredictResource"]["Properties"]["ParentId"] == {
        "Ref": "ApiModelsModelParamResource"
    }
    integration = {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": {"Fn::Sub": "${Fn.Arn}"}}
    assert resources["ApiRootGetMethod"]["Properties"] == {
        "RestApiId": {"Ref": "Api"},
        "ResourceId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
        "HttpMethod": "GET",
        "AuthorizationType": "NONE",
        "ApiKeyRequired": False,
        "Integration": integration,
    }
    predict = resources["ApiModelsModelParamPredictPostMethod"]["Properties"]
    assert (predict["AuthorizationType"], predict["ApiKeyRequired"]) == ("COGNITO_USER_POOLS", False)
    retrain = resources["ApiModelsModelParamRetrainPostMethod"]["Properties"]
    assert (retrain["AuthorizationType"], retrain["ApiKeyRequired"]) == ("COGNITO_USER_POOLS", True)
    assert resources["Deployment"]["DependsOn"] == sorted(
        ["ApiRootGetMethod", "ApiModelsModelParamPredictPostMethod", "ApiModelsModelParamRetrainPostMethod"]
    )


def test_a_generated_id_that_is_taken_is_refused():
    template = json.loads(json.dumps(API))
    template["Resources"]["ApiModelsResource"] = {"Type": "AWS::SNS::Topic"}

    with pytest.raises(ValueError, match="Api: the logical id ApiModelsResource of /models is taken"):
        prepare.api_body_to_resources(template)


# --- references, order, names, stand-ins ------------------------------------------------------------

ORDERED = {
    "Resources": {
        "Fn": {"Type": "T", "Properties": {"Role": {"Fn::GetAtt": "Role.Arn"}, "Env": {"Fn::Sub": "${Table}-${X}"}}},
        "Role": {"Type": "T", "DependsOn": "Log", "Properties": {"Path": {"Fn::Sub": ["${Y}", {"Y": {"Ref": "Q"}}]}}},
        "Table": {"Type": "T"},
        "Log": {"Type": "T", "Properties": {"Name": {"Ref": "AWS::StackName"}}},
        "Q": {"Type": "T"},
    }
}


def test_references_follow_ref_getatt_and_sub_but_not_a_subs_own_variables():
    resources = ORDERED["Resources"]
    assert prepare.references(resources["Fn"], resources) == {"Role", "Table"}
    assert prepare.references(resources["Role"], resources) == {"Q"}
    assert prepare.references({"Fn::Sub": ["${Table}", {"Table": "x"}]}, resources) == set()


def test_resources_come_after_what_they_need_and_otherwise_keep_their_order():
    assert list(prepare.dependency_order(ORDERED)["Resources"]) == ["Table", "Log", "Q", "Role", "Fn"]


def test_a_cycle_and_a_reference_to_nothing_are_refused():
    cycle = {"Resources": {"A": {"Type": "T", "DependsOn": "B"}, "B": {"Type": "T", "Properties": {"X": {"Ref": "A"}}}}}
    with pytest.raises(ValueError, match="dependency cycle among: A, B"):
        prepare.dependency_order(cycle)
    with pytest.raises(ValueError, match="references to resources not in the template: A -> Gone"):
        prepare.dependency_order({"Resources": {"A": {"Type": "T", "DependsOn": "Gone"}}})


def test_a_repository_without_a_name_gets_cloudformations_lowercase_one():
    template = {"Resources": {"Repo": {"Type": "R"}, "Named": {"Type": "R", "Properties": {"N": "mine"}}}}

    named, ids = prepare.lowercase_names(template, {"R": "N"}, "Med-Stack")

    assert ids == ["Repo"]
    assert named["Resources"]["Repo"]["Properties"] == {"N": "med-stack-repo"}
    assert named["Resources"]["Named"]["Properties"] == {"N": "mine"}


def test_a_ref_to_a_version_becomes_the_functions_first_version():
    template = {
        "Resources": {
            "Version": {"Type": "AWS::Lambda::Version", "Properties": {"FunctionName": {"Ref": "Fn"}}},
            "Hook": {"Type": "F", "Properties": {"Environment": {"Variables": {"NEW": {"Ref": "Version"}}}}},
        }
    }

    replaced, _ = prepare.stand_in_references(template, STAND_INS)

    assert replaced["Resources"]["Hook"]["Properties"]["Environment"]["Variables"]["NEW"] == {
        "Fn::Sub": [
            "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Function}:1",
            {"Function": {"Ref": "Fn"}},
        ]
    }


def test_a_ref_to_an_alias_becomes_its_functions_arn_in_properties_subs_and_outputs():
    template = {
        "Resources": {
            "Alias": {"Type": "AWS::Lambda::Alias", "Properties": {"FunctionName": {"Ref": "Fn"}, "Name": "live"}},
            "Permission": {"Type": "P", "Properties": {"FunctionName": {"Ref": "Alias"}}},
            "Method": {"Type": "M", "Properties": {"Uri": {"Fn::Sub": "a/${Alias}/b"}}},
        },
        "Outputs": {"Live": {"Value": {"Ref": "Alias"}}},
    }
    arn = {
        "Fn::Sub": [
            "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Function}",
            {"Function": {"Ref": "Fn"}},
        ]
    }

    replaced, stand_ins = prepare.stand_in_references(template, STAND_INS)

    assert stand_ins == {"Alias": arn}
    assert replaced["Resources"]["Permission"]["Properties"]["FunctionName"] == arn
    assert replaced["Resources"]["Method"]["Properties"]["Uri"] == {"Fn::Sub": ["a/${Alias}/b", {"Alias": arn}]}
    assert replaced["Outputs"]["Live"]["Value"] == arn
    assert replaced["Resources"]["Alias"] == template["Resources"]["Alias"]


# --- judging what moto made ----------------------------------------------------------------------------


def test_values_compare_as_cloudformation_passes_them_and_a_difference_is_named_exactly():
    assert canonical({"a": [60, True, 0.5]}) == canonical({"a": ["60", "true", "0.5"]})
    check = Check("Fn", "AWS::Lambda::Function", "Environment", "MAX_ROWS", "1000", 999)
    assert check.status == "FAIL"
    assert check.message() == "Fn.Environment [MAX_ROWS]: template '1000', moto 999"
    assert Check("Fn", "T", "Timeout", "", 25, "25").status == "pass"


def test_a_value_that_names_a_skipped_resource_is_not_checked_and_says_which():
    check = Check("Fn", "T", "Environment", "USER_POOL_ID", not_created("UserPool"), MISSING)
    assert (check.status, check.depends_on) == ("not checked", ["UserPool"])


def test_a_policy_moto_returns_as_python_repr_reads_as_the_document():
    assert policy_document("{'Statement': [{'Effect': 'Allow', 'Sid': None}]}") == {
        "Statement": [{"Effect": "Allow", "Sid": None}]
    }
    assert policy_document('{"Version": "2012-10-17"}') == {"Version": "2012-10-17"}


def _stack(resources: dict[str, str], outputs: dict[str, str]) -> LiveStack:
    summaries = {
        lid: {"LogicalResourceId": lid, "PhysicalResourceId": physical, "ResourceStatus": "CREATE_COMPLETE"}
        for lid, physical in resources.items()
    }
    return LiveStack("med-classifier", "CREATE_COMPLETE", "", summaries, outputs)


def test_the_stack_is_held_to_the_list_of_what_moto_skips_both_ways():
    """No live calls: none of these types has a comparator."""
    template = {
        "Resources": {
            "Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"},  # listed, yet created
            "Pool": {"Type": "AWS::Cognito::UserPool"},  # listed and skipped
            "Thing": {"Type": "AWS::Made::Up"},  # not created, not listed
            "Param": {"Type": "AWS::SSM::Parameter", "Properties": {"Value": "1"}},  # created, nothing compares it
        },
        "Outputs": {
            "PoolId": {"Value": {"Ref": "Pool"}},
            "ParamName": {"Value": {"Ref": "Param"}},
            "Gone": {"Value": {"Fn::Sub": "${AWS::StackName}-x"}},
        },
    }

    comparison = compare(template, _stack({"Handle": "h", "Param": "p"}, {"ParamName": "q"}), live=None)

    assert comparison.skipped == {"Pool": "AWS::Cognito::UserPool"}
    assert comparison.failures() == [
        "Thing (AWS::Made::Up): not created, and SKIPPED_TYPES lacks its type",
        "Handle (AWS::CloudFormation::WaitConditionHandle): created, yet SKIPPED_TYPES lists its type",
        "Param.Value: neither compared nor in IGNORED_PROPERTIES",
        "Outputs.ParamName: template 'p', moto 'q'",
        "Outputs.Gone: did not resolve",
    ]
    assert comparison.outputs["PoolId"].status == "not checked"


# --- cfn-lint -------------------------------------------------------------------------------------------


def _finding(rule: str, level: str, logical_id: str) -> dict:
    return {
        "Rule": {"Id": rule},
        "Level": level,
        "Message": f"{rule} on {logical_id}",
        "Location": {"Path": ["Resources", logical_id, "Properties"]},
    }


def test_lint_errors_fail_unless_accepted_and_an_accepted_one_that_no_longer_occurs_fails_too():
    output = json.dumps(
        [_finding("ES6000", "Error", "Dlq"), _finding("E3012", "Error", "Fn"), _finding("W1", "Warning", "Fn")]
    )
    accepted = {("ES6000", "Dlq"): "a dead-letter queue", ("ES4000", "Gone"): "no longer there"}

    findings, stale = lint.parse(output, accepted)
    result = lint.LintResult([], {}, findings, stale)

    assert [f.accepted for f in findings] == ["a dead-letter queue", "", ""]
    assert result.failures() == [
        "cfn-lint E3012 Fn: E3012 on Fn",
        "cfn-lint: accepted ES4000 Gone no longer occurs (remove it from ACCEPTED)",
    ]


def test_the_serverless_rules_are_installed_for_the_pinned_cfn_lint():
    from cfnlint.version import __version__ as cfn_lint_version

    requirements = (REPO_ROOT / "requirements.txt").read_text()
    assert lint.versions() == {
        "cfn-lint": cfn_lint_version,
        "cfn-lint-serverless": re.search(r"^cfn-lint-serverless==(\S+)$", requirements, re.M).group(1),
    }
    assert f"cfn-lint=={cfn_lint_version}" in requirements


# --- the list of what moto cannot check -------------------------------------------------------------


def test_every_type_listed_as_skipped_has_no_model_in_motos_cloudformation():
    modelled = set(get_model_map())
    assert [t for t in SKIPPED_TYPES if t in modelled and t not in NULL_MODELS] == []
    assert set(COMPARATORS) <= modelled


def test_ignored_properties_belong_to_types_moto_creates_and_the_rehearsal_compares():
    assert set(IGNORED_PROPERTIES) <= set(COMPARATORS)
    assert not set(IGNORED_PROPERTIES) & set(SKIPPED_TYPES)


def test_readme_lists_every_skipped_type_ignored_property_and_attribute():
    readme = (REPO_ROOT / "README.md").read_text()
    section = re.split(r"\n#{2,3} ", readme[readme.index("### Deploy rehearsal") :])[0]
    listed = [t for t in SKIPPED_TYPES if f"`{t}`" not in section]
    bullets = re.split(r"\n\s*- ", section)  # a type's ignored properties: its bullet, however wrapped
    of_type = {t: next((b for b in bullets if b.startswith(f"`{t}`:")), "") for t in IGNORED_PROPERTIES}
    listed += [f"{t} {p}" for t, props in IGNORED_PROPERTIES.items() for p in props if f"`{p}`" not in of_type[t]]
    listed += [a for a in ATTRIBUTES if f"`{a}`" not in section]
    assert listed == []
