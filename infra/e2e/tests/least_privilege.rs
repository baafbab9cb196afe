//! Least privilege, from calls made for real. LocalStack checks no IAM, so what AWS would refuse
//! is proven here: every function of the deployed stack logs one `aws call` line for each AWS
//! operation it calls or presigns (`mecapy_shared::telemetry`); after the end-to-end tests
//! (`tests/stack.rs`) have driven the stack, this test reads those lines back from the functions'
//! CloudWatch Logs and holds them against the policies `template.yaml` gives each function:
//!
//! - every call must be granted (a function calling what its role lacks fails on AWS);
//! - every action granted must have been called (a grant no code uses is a privilege too much),
//!   except the few listed in [`NOT_CALLED_HERE`], each with why the local stack cannot call it.
//!
//! Actions are compared, not resources: the key patterns of the S3 grants are not checked here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::UNIX_EPOCH;

use mecapy_e2e::env::repo_root;
use mecapy_e2e::logs::Logs;
use mecapy_e2e::StackEnv;
use mecapy_shared::telemetry::AWS_CALL;
use yaml_serde::Value;

/// Granted actions a run of the end-to-end tests on the local stack does not call, and why.
const NOT_CALLED_HERE: &[(&str, &str, &str)] = &[
    (
        "RulesFunction",
        "s3:GetObject",
        "a rule whose code is a stored file (`code_file_id`) is read at its creation; the end-to-end rules carry their code inline",
    ),
    (
        "UploadRulesFunction",
        "s3:GetObject",
        "the job of a rule whose code is a stored file reads it; the end-to-end rules carry their code inline",
    ),
    (
        "UploadFunction",
        "s3:DeleteObject",
        "an upload whose row cannot be completed takes its object back (functions/upload/tests/files.rs: database_down_is_503_and_leaves_no_object)",
    ),
];

/// An action and whether it is granted only under a template condition (`!If`).
type Grants = BTreeMap<String, bool>;

/// What `template.yaml` grants each function (by logical id).
fn granted() -> BTreeMap<String, Grants> {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml");
    let template: Value = yaml_serde::from_str(&text).expect("template.yaml is YAML");
    let mut out = BTreeMap::new();
    let Value::Mapping(resources) = &template["Resources"] else {
        panic!("template.yaml has no Resources");
    };
    for (id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let mut grants = Grants::new();
        for policy in [
            &template["Globals"]["Function"]["Policies"],
            &resource["Properties"]["Policies"],
        ] {
            if let Value::Sequence(policies) = policy {
                for p in policies {
                    policy_actions(p, false, &mut grants);
                }
            }
        }
        out.insert(id.as_str().expect("a logical id").to_string(), grants);
    }
    out
}

/// The actions of one entry of a function's `Policies`.
fn policy_actions(policy: &Value, conditional: bool, out: &mut Grants) {
    if let Value::Tagged(t) = policy {
        if t.tag == "If" {
            let Value::Sequence(branches) = &t.value else {
                panic!("!If without its list: {policy:?}");
            };
            for branch in branches.iter().skip(1) {
                policy_actions(branch, true, out);
            }
            return;
        }
    }
    let mut grant = |action: &str| {
        let entry = out.entry(action.to_string()).or_insert(conditional);
        *entry = *entry && conditional;
    };
    match policy {
        Value::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some("AWS::NoValue") => {}
        Value::Mapping(m) if m.contains_key("Statement") => {
            let statements = match &m["Statement"] {
                Value::Sequence(s) => s.clone(),
                one => vec![one.clone()],
            };
            for s in statements {
                if s["Effect"].as_str() != Some("Allow") {
                    continue;
                }
                match &s["Action"] {
                    Value::String(a) => grant(a),
                    Value::Sequence(list) => list
                        .iter()
                        .map(|a| a.as_str().expect("an action name"))
                        .for_each(&mut grant),
                    other => panic!("a statement's Action is neither a name nor a list: {other:?}"),
                }
            }
        }
        // SAM's policy templates, as SAM expands them.
        Value::Mapping(m) if m.contains_key("EventBridgePutEventsPolicy") => {
            grant("events:PutEvents")
        }
        other => {
            panic!("a policy this test cannot read (add its actions to policy_actions): {other:?}")
        }
    }
}

/// The IAM actions an SDK operation needs (`S3`, `HeadObject` → `s3:GetObject`).
fn iam_actions(service: &str, operation: &str) -> Vec<String> {
    let prefix = match service {
        "S3" => "s3",
        "SQS" => "sqs",
        "EventBridge" => "events",
        "ECS" => "ecs",
        "STS" => "sts",
        "Lambda" => "lambda",
        other => panic!("an AWS service this test does not know: {other} ({operation})"),
    };
    let actions: &[&str] = match (prefix, operation) {
        ("s3", "HeadObject") => &["GetObject"],
        ("s3", "ListObjectsV2" | "ListObjects" | "HeadBucket") => &["ListBucket"],
        ("s3", "DeleteObjects") => &["DeleteObject"],
        ("s3", "CopyObject") => &["GetObject", "PutObject"],
        ("s3", "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload") => {
            &["PutObject"]
        }
        _ => &[],
    };
    if actions.is_empty() {
        vec![format!("{prefix}:{operation}")]
    } else {
        actions.iter().map(|a| format!("{prefix}:{a}")).collect()
    }
}

/// What each function (by logical id) called: (service, operation).
type Calls = BTreeMap<String, BTreeSet<(String, String)>>;

/// The calls that `template.yaml` does not grant the function that made them.
fn refused(granted: &BTreeMap<String, Grants>, calls: &Calls) -> Vec<String> {
    let mut problems = Vec::new();
    for (function, made) in calls {
        let grants = granted.get(function);
        for (service, operation) in made {
            for action in iam_actions(service, operation) {
                if !grants.is_some_and(|g| g.contains_key(&action)) {
                    let has: Vec<&String> = grants.into_iter().flat_map(|g| g.keys()).collect();
                    problems.push(format!(
                        "{function} calls {service}.{operation}, which needs {action}: template.yaml does not grant it (it grants {has:?})"
                    ));
                }
            }
        }
    }
    problems
}

/// The unconditional grants no recorded call used (less those of [`NOT_CALLED_HERE`]).
fn unused(granted: &BTreeMap<String, Grants>, calls: &Calls) -> Vec<String> {
    let mut problems = Vec::new();
    for (function, grants) in granted {
        let used: BTreeSet<String> = calls
            .get(function)
            .into_iter()
            .flatten()
            .flat_map(|(s, o)| iam_actions(s, o))
            .collect();
        for (action, conditional) in grants {
            let exempt = NOT_CALLED_HERE
                .iter()
                .any(|(f, a, _)| f == function && a == action);
            if !conditional && !exempt && !used.contains(action) {
                problems.push(format!(
                    "{function} is granted {action} but made no such call in the end-to-end tests: remove the grant, or say in NOT_CALLED_HERE why the local stack cannot call it"
                ));
            }
        }
    }
    problems
}

/// The `aws call` lines the stack's functions logged since the deployed build was made.
async fn recorded(env: &StackEnv) -> Calls {
    let stack = &env.stack_name;
    let built = repo_root().join(".aws-sam/build/template.yaml");
    let since = std::fs::metadata(&built)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: deploy the stack first (`make deploy`)",
                built.display()
            )
        })
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let logs = Logs::new(env);
    let prefix = format!("/aws/lambda/{stack}-");
    let groups = logs
        .groups(&prefix)
        .await
        .unwrap_or_else(|f| panic!("the functions' log groups: {f}"));
    let mut calls = Calls::new();
    for group in groups {
        // `/aws/lambda/{stack}-{LogicalId}-{suffix}`
        let Some((function, _)) = group[prefix.len()..].rsplit_once('-') else {
            continue;
        };
        let lines = logs
            .messages(&group, AWS_CALL, since)
            .await
            .unwrap_or_else(|f| panic!("the log group {group}: {f}"));
        for line in lines {
            let Some(start) = line.find('{') else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line[start..].trim()) else {
                continue;
            };
            if v["message"] != AWS_CALL {
                continue;
            }
            let (Some(s), Some(o)) = (v["aws_service"].as_str(), v["aws_operation"].as_str())
            else {
                continue;
            };
            calls
                .entry(function.to_string())
                .or_default()
                .insert((s.to_string(), o.to_string()));
        }
    }
    calls
}

#[test]
fn a_call_the_template_does_not_grant_is_refused() {
    let granted = granted();
    assert!(granted.contains_key("LoginFunction"), "{granted:?}");
    // What `login` did when the HTTP edge drained the outbox after every request.
    let calls = Calls::from([(
        "LoginFunction".to_string(),
        BTreeSet::from([("EventBridge".to_string(), "PutEvents".to_string())]),
    )]);
    let problems = refused(&granted, &calls);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .contains("LoginFunction calls EventBridge.PutEvents, which needs events:PutEvents"),
        "{problems:?}"
    );
    assert!(refused(&granted, &Calls::new()).is_empty());
}

#[test]
fn sdk_operations_are_named_as_iam_does() {
    assert_eq!(iam_actions("S3", "HeadObject"), ["s3:GetObject"]);
    assert_eq!(iam_actions("S3", "PutObject"), ["s3:PutObject"]);
    assert_eq!(
        iam_actions("EventBridge", "PutEvents"),
        ["events:PutEvents"]
    );
    assert_eq!(iam_actions("SQS", "SendMessage"), ["sqs:SendMessage"]);
}

#[tokio::test]
async fn every_aws_call_of_the_deployed_functions_is_granted_and_every_grant_is_used() {
    let env = StackEnv::ready().await.unwrap_or_else(|e| panic!("{e}"));
    let calls = recorded(&env).await;
    assert!(
        !calls.is_empty(),
        "no `{AWS_CALL}` line in the functions' logs since the last build: run the end-to-end tests first (`cargo test -p mecapy-e2e --test stack`; `make test` does)"
    );
    println!("recorded calls: {calls:#?}");
    let granted = granted();
    let mut problems = refused(&granted, &calls);
    problems.extend(unused(&granted, &calls));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
