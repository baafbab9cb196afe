//! Least privilege, from calls made for real. LocalStack checks no IAM, so what AWS would refuse
//! is proven here: every function of the deployed stack logs one `aws call` line for each AWS
//! operation it calls or presigns, with the resources its request names
//! (`mecapy_shared::telemetry`); after the end-to-end tests (`tests/stack.rs`) have driven the
//! stack, this test reads those lines back from the functions' CloudWatch Logs and evaluates each
//! call, as IAM would, against the statements `template.yaml` gives the function that made it:
//! the action, the resource's ARN against the statement's `Resource` patterns (`*` and `?`), and
//! the statement's `Condition` against the call's context keys (`s3:prefix`, `ecs:cluster`).
//!
//! - every call must be allowed (a function calling what its role lacks fails on AWS);
//! - every resource pattern of every granted action must have been used by some call (a grant
//!   no code uses is a privilege too much), except the few listed in [`NOT_CALLED_HERE`], each
//!   with why the local stack cannot call it. Statements under a template condition (`!If`, the
//!   ECS runtime's) are held to the first rule only: the local stack runs the Docker engine.
//!
//! What is not evaluated: the permissions AWS checks implicitly beside an operation (`iam:PassRole`
//! and `ecs:TagResource` for a tagged `RunTask`), and bucket or key policies (the template has
//! none that refuse).

use std::collections::{BTreeMap, BTreeSet};
use std::time::UNIX_EPOCH;

use mecapy_e2e::env::{repo_root, run_dir};
use mecapy_e2e::logs::Logs;
use mecapy_e2e::StackEnv;
use mecapy_shared::telemetry::AWS_CALL;
use yaml_serde::Value;

/// The user files' key pattern in `template.yaml`.
const USER_FILES: &str = "/????????-????-????-????-????????????/*";

/// Granted actions on resource patterns (matched by their ending) that a run of the end-to-end
/// tests on the local stack does not use, and why.
const NOT_CALLED_HERE: &[(&str, &str, &str, &str)] = &[
    (
        "RulesFunction",
        "s3:GetObject",
        USER_FILES,
        "a rule whose code is a stored file (`code_file_id`) is read at its creation; the end-to-end rules carry their code inline",
    ),
    (
        "UploadRulesFunction",
        "s3:GetObject",
        USER_FILES,
        "the job of a rule whose code is a stored file reads it; the end-to-end rules carry their code inline",
    ),
    (
        "UploadFunction",
        "s3:DeleteObject",
        USER_FILES,
        "an upload whose row cannot be completed takes its object back (functions/upload/tests/files.rs: database_down_is_503_and_leaves_no_object)",
    ),
];

/// What a stack is made of, to resolve the template's references and to name ARNs.
#[derive(Debug, Clone, Default)]
struct Facts {
    region: String,
    account: String,
    stack: String,
    /// Logical id → (resource type, physical id), from `.run/stack-resources.tsv`.
    resources: BTreeMap<String, (String, String)>,
}

impl Facts {
    /// The deployed stack's: `infra/deploy.sh outputs` writes its resources next to `stack.env`.
    fn deployed(env: &StackEnv) -> Facts {
        let path = run_dir().join("stack-resources.tsv");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: deploy the stack first (`make deploy`; `infra/deploy.sh outputs` writes it)",
                path.display()
            )
        });
        let resources = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let (id, kind, physical) = (f.next()?, f.next()?, f.next()?);
                // A resource under a false template condition.
                (physical != "None")
                    .then(|| (id.to_string(), (kind.to_string(), physical.to_string())))
            })
            .collect();
        // `{endpoint}/{account}/{name}`
        let account = env
            .compute_queue_url
            .rsplit('/')
            .nth(1)
            .expect("the compute queue's URL names its account")
            .to_string();
        Facts {
            region: env.var("AWS_REGION").to_string(),
            account,
            stack: env.stack_name.clone(),
            resources,
        }
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.region, self.account
        )
    }

    /// An SQS queue's ARN from its URL (`…/{account}/{name}`) or its name.
    fn queue_arn(&self, url_or_name: &str) -> String {
        let mut parts = url_or_name.rsplit('/');
        let name = parts.next().unwrap_or_default();
        let account = parts.next().unwrap_or(&self.account);
        format!("arn:aws:sqs:{}:{account}:{name}", self.region)
    }

    fn ecs_arn(&self, kind: &str, name_or_arn: &str) -> String {
        if name_or_arn.starts_with("arn:") {
            name_or_arn.to_string()
        } else {
            self.arn("ecs", &format!("{kind}/{name_or_arn}"))
        }
    }

    /// `!Ref logical` (the physical id; pseudo parameters too), `None` if it is not deployed.
    fn reference(&self, logical: &str) -> Option<String> {
        match logical {
            "AWS::Partition" => Some("aws".into()),
            "AWS::Region" => Some(self.region.clone()),
            "AWS::AccountId" => Some(self.account.clone()),
            "AWS::StackName" => Some(self.stack.clone()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            _ => self.resources.get(logical).map(|(_, id)| id.clone()),
        }
    }

    /// `!GetAtt logical.Arn`, `None` if it is not deployed.
    fn arn_of(&self, logical: &str) -> Option<String> {
        let (kind, id) = self.resources.get(logical)?;
        Some(match kind.as_str() {
            "AWS::SQS::Queue" => self.queue_arn(id),
            "AWS::Events::EventBus" => self.arn("events", &format!("event-bus/{id}")),
            "AWS::ECS::Cluster" => self.ecs_arn("cluster", id),
            "AWS::IAM::Role" if !id.starts_with("arn:") => {
                format!("arn:aws:iam::{}:role/{id}", self.account)
            }
            _ if id.starts_with("arn:") => id.clone(),
            other => panic!("the ARN of {logical} ({other}, {id}): add its form to Facts::arn_of"),
        })
    }

    /// A template value (a string, `!Sub`, `!Ref`, `!GetAtt X.Arn`, or a list of them); `None`
    /// when it names a resource that is not deployed.
    fn values(&self, value: &Value) -> Option<Vec<String>> {
        match value {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Sequence(list) => {
                let mut out = Vec::new();
                for v in list {
                    out.extend(self.values(v)?);
                }
                Some(out)
            }
            Value::Tagged(t) => match (t.tag.to_string().trim_start_matches('!'), &t.value) {
                ("Ref", Value::String(name)) => Some(vec![self.reference(name)?]),
                ("GetAtt", Value::String(path)) => {
                    let logical = path
                        .strip_suffix(".Arn")
                        .unwrap_or_else(|| panic!("!GetAtt {path}: only .Arn is resolved here"));
                    Some(vec![self.arn_of(logical)?])
                }
                ("Sub", Value::String(text)) => Some(vec![self.sub(text)?]),
                (tag, v) => panic!("a template value this test cannot resolve: !{tag} {v:?}"),
            },
            other => panic!("a template value this test cannot resolve: {other:?}"),
        }
    }

    /// `!Sub text`: `${Name}` and `${Name.Arn}` replaced.
    fn sub(&self, text: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("a closed ${…}") + start;
            let name = &rest[start + 2..end];
            out.push_str(&match name.strip_suffix(".Arn") {
                Some(logical) => self.arn_of(logical)?,
                None => self.reference(name)?,
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// One `Condition` entry: `{operator: {key: values}}`.
#[derive(Debug, Clone)]
struct Condition {
    operator: String,
    key: String,
    values: Vec<String>,
}

/// An `Allow` statement of a function's policies, its references resolved.
#[derive(Debug, Clone)]
struct Statement {
    actions: Vec<String>,
    /// ARN patterns; empty when they name resources that are not deployed.
    resources: Vec<String>,
    conditions: Vec<Condition>,
    /// Under a template condition (`!If`): may go unused.
    conditional: bool,
}

/// What `template.yaml` allows each function (by logical id).
fn granted(facts: &Facts) -> BTreeMap<String, Vec<Statement>> {
    granted_by(&template(), facts)
}

fn template() -> Value {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml");
    yaml_serde::from_str(&text).expect("template.yaml is YAML")
}

fn granted_by(template: &Value, facts: &Facts) -> BTreeMap<String, Vec<Statement>> {
    let mut out = BTreeMap::new();
    let Value::Mapping(resources) = &template["Resources"] else {
        panic!("template.yaml has no Resources");
    };
    for (id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let mut statements = Vec::new();
        for policy in [
            &template["Globals"]["Function"]["Policies"],
            &resource["Properties"]["Policies"],
        ] {
            if let Value::Sequence(policies) = policy {
                for p in policies {
                    policy_statements(p, false, facts, &mut statements);
                }
            }
        }
        out.insert(id.as_str().expect("a logical id").to_string(), statements);
    }
    out
}

/// The statements of one entry of a function's `Policies`.
fn policy_statements(policy: &Value, conditional: bool, facts: &Facts, out: &mut Vec<Statement>) {
    if let Value::Tagged(t) = policy {
        if t.tag == "If" {
            let Value::Sequence(branches) = &t.value else {
                panic!("!If without its list: {policy:?}");
            };
            for branch in branches.iter().skip(1) {
                policy_statements(branch, true, facts, out);
            }
            return;
        }
    }
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
                let actions = facts.values(&s["Action"]).expect("actions are names");
                let resources = facts.values(&s["Resource"]).unwrap_or_default();
                let mut conditions = Vec::new();
                if let Value::Mapping(operators) = &s["Condition"] {
                    for (operator, keys) in operators {
                        let Value::Mapping(keys) = keys else {
                            panic!("a condition without its keys: {keys:?}");
                        };
                        for (key, values) in keys {
                            conditions.push(Condition {
                                operator: operator.as_str().expect("an operator").to_string(),
                                key: key.as_str().expect("a condition key").to_string(),
                                // Not deployed: a value nothing matches.
                                values: facts.values(values).unwrap_or_default(),
                            });
                        }
                    }
                }
                out.push(Statement {
                    actions,
                    resources,
                    conditions,
                    conditional,
                });
            }
        }
        // SAM's policy templates, as SAM expands them.
        Value::Mapping(m) if m.contains_key("EventBridgePutEventsPolicy") => {
            let bus = facts
                .values(&m["EventBridgePutEventsPolicy"]["EventBusName"])
                .expect("the event bus is deployed");
            out.push(Statement {
                actions: vec!["events:PutEvents".into()],
                resources: bus
                    .iter()
                    .map(|b| facts.arn("events", &format!("event-bus/{b}")))
                    .collect(),
                conditions: Vec::new(),
                conditional,
            });
        }
        other => {
            panic!("a policy this test cannot read (add it to policy_statements): {other:?}")
        }
    }
}

/// An AWS call as its `aws call` line reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    service: String,
    operation: String,
    /// The request's resource-naming fields (`Bucket`, `Key`, `QueueUrl`, …), each with its values.
    resources: BTreeMap<String, Vec<String>>,
}

impl Call {
    fn new(service: &str, operation: &str, resources: &[(&str, &str)]) -> Call {
        let mut named = BTreeMap::<String, Vec<String>>::new();
        for (field, value) in resources {
            named
                .entry(field.to_string())
                .or_default()
                .push(value.to_string());
        }
        Call {
            service: service.into(),
            operation: operation.into(),
            resources: named,
        }
    }

    fn one(&self, field: &str) -> Result<&str, String> {
        match self.resources.get(field).map(Vec::as_slice) {
            Some([one]) => Ok(one),
            _ => Err(format!(
                "{}.{} names no single {field}: {:?}",
                self.service, self.operation, self.resources
            )),
        }
    }

    fn all(&self, field: &str) -> Result<&[String], String> {
        match self.resources.get(field) {
            Some(values) if !values.is_empty() => Ok(values),
            _ => Err(format!(
                "{}.{} names no {field}: {:?}",
                self.service, self.operation, self.resources
            )),
        }
    }
}

/// What IAM evaluates for one call: an action on a resource, with the request's context keys.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Need {
    action: String,
    resource: String,
    context: BTreeMap<String, String>,
}

impl Need {
    fn new(action: &str, resource: String) -> Need {
        Need {
            action: action.into(),
            resource,
            context: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, value: String) -> Need {
        self.context.insert(key.into(), value);
        self
    }
}

/// The authorizations a call needs, as the Service Authorization Reference lists them
/// (`S3.HeadObject` → `s3:GetObject` on the object; `S3.ListObjectsV2` → `s3:ListBucket` on the
/// bucket, with `s3:prefix`).
fn needs(call: &Call, facts: &Facts) -> Result<Vec<Need>, String> {
    let op = call.operation.as_str();
    let needs = match call.service.as_str() {
        "S3" => {
            let bucket = call.one("Bucket")?;
            let object = || Ok::<_, String>(format!("arn:aws:s3:::{bucket}/{}", call.one("Key")?));
            match op {
                "GetObject" | "HeadObject" => vec![Need::new("s3:GetObject", object()?)],
                "PutObject"
                | "CreateMultipartUpload"
                | "UploadPart"
                | "CompleteMultipartUpload" => vec![Need::new("s3:PutObject", object()?)],
                "AbortMultipartUpload" => vec![Need::new("s3:AbortMultipartUpload", object()?)],
                "DeleteObject" => vec![Need::new("s3:DeleteObject", object()?)],
                "ListObjectsV2" | "ListObjects" => {
                    let need = Need::new("s3:ListBucket", format!("arn:aws:s3:::{bucket}"));
                    vec![match call.resources.get("Prefix") {
                        Some(p) => need.with("s3:prefix", p.join("")),
                        None => need,
                    }]
                }
                _ => return Err(format!("S3.{op}: add its authorization to needs()")),
            }
        }
        "SQS" => {
            let queue = match call.resources.get("QueueUrl") {
                Some(_) => facts.queue_arn(call.one("QueueUrl")?),
                None => facts.queue_arn(call.one("QueueName")?),
            };
            vec![Need::new(&format!("sqs:{op}"), queue)]
        }
        "EventBridge" => call
            .all("EventBusName")?
            .iter()
            .map(|bus| {
                let arn = if bus.starts_with("arn:") {
                    bus.clone()
                } else {
                    facts.arn("events", &format!("event-bus/{bus}"))
                };
                Need::new(&format!("events:{op}"), arn)
            })
            .collect(),
        "ECS" => {
            let cluster = facts.ecs_arn("cluster", call.one("cluster")?);
            let cluster_name = cluster.rsplit('/').next().unwrap_or_default().to_string();
            let task = |t: &String| {
                if t.starts_with("arn:") {
                    t.clone()
                } else {
                    facts.arn("ecs", &format!("task/{cluster_name}/{t}"))
                }
            };
            let action = format!("ecs:{op}");
            let resources: Vec<String> = match op {
                "RunTask" => vec![facts.ecs_arn("task-definition", call.one("taskDefinition")?)],
                "StopTask" => vec![task(&call.one("task")?.to_string())],
                "DescribeTasks" => call.all("tasks")?.iter().map(task).collect(),
                // The container instances of the cluster, whichever the listing covers.
                "ListTasks" => {
                    vec![facts.arn("ecs", &format!("container-instance/{cluster_name}/*"))]
                }
                _ => return Err(format!("ECS.{op}: add its authorization to needs()")),
            };
            resources
                .into_iter()
                .map(|r| Need::new(&action, r).with("ecs:cluster", cluster.clone()))
                .collect()
        }
        other => {
            return Err(format!(
                "an AWS service this test does not know: {other} ({op})"
            ))
        }
    };
    Ok(needs)
}

/// IAM's wildcards: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Condition {
    /// A key the request does not carry fails the condition, as in IAM.
    fn holds(&self, context: &BTreeMap<String, String>) -> bool {
        let Some(value) = context.get(&self.key) else {
            return false;
        };
        match self.operator.as_str() {
            "StringEquals" | "ArnEquals" => self.values.iter().any(|v| v == value),
            "StringLike" | "ArnLike" => self.values.iter().any(|v| glob(v, value)),
            other => panic!("a condition operator this test does not evaluate: {other}"),
        }
    }
}

impl Statement {
    /// The resource pattern of this statement that allows `need`, if any.
    fn allows(&self, need: &Need) -> Option<&str> {
        if !self.actions.iter().any(|a| glob(a, &need.action)) {
            return None;
        }
        if !self.conditions.iter().all(|c| c.holds(&need.context)) {
            return None;
        }
        self.resources
            .iter()
            .find(|r| glob(r, &need.resource))
            .map(String::as_str)
    }
}

/// What each function (by logical id) called.
type Calls = BTreeMap<String, BTreeSet<Call>>;

/// Each call a function made that its statements do not allow, and each grant (action and
/// resource pattern) that no call used (less [`NOT_CALLED_HERE`]).
fn judge(
    granted: &BTreeMap<String, Vec<Statement>>,
    calls: &Calls,
    facts: &Facts,
) -> (Vec<String>, Vec<String>) {
    let (mut refused, mut unused) = (Vec::new(), Vec::new());
    let none = Vec::new();
    for (function, made) in calls {
        let statements = granted.get(function).unwrap_or(&none);
        for call in made {
            let needs = match needs(call, facts) {
                Ok(needs) => needs,
                Err(e) => {
                    refused.push(format!("{function}: {e}"));
                    continue;
                }
            };
            for need in needs {
                if !statements.iter().any(|s| s.allows(&need).is_some()) {
                    refused.push(format!(
                        "{function} calls {}.{}, which needs {} on {} {:?}: template.yaml does not allow it",
                        call.service, call.operation, need.action, need.resource, need.context
                    ));
                }
            }
        }
    }
    for (function, statements) in granted {
        let needs: Vec<Need> = calls
            .get(function)
            .into_iter()
            .flatten()
            .filter_map(|c| needs(c, facts).ok())
            .flatten()
            .collect();
        for statement in statements.iter().filter(|s| !s.conditional) {
            for action in &statement.actions {
                for pattern in &statement.resources {
                    let used = needs.iter().any(|n| {
                        glob(action, &n.action) && statement.allows(n) == Some(pattern.as_str())
                    });
                    let exempt = NOT_CALLED_HERE.iter().any(|(f, a, end, _)| {
                        f == function && a == action && pattern.ends_with(end)
                    });
                    if !used && !exempt {
                        unused.push(format!(
                            "{function} is granted {action} on {pattern} but made no such call in the end-to-end tests: narrow or remove the grant, or say in NOT_CALLED_HERE why the local stack cannot call it"
                        ));
                    }
                }
            }
        }
    }
    (refused, unused)
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
            let resources = serde_json::from_value(v["aws_resources"].clone()).unwrap_or_else(|_| {
                panic!("{function}: an `{AWS_CALL}` line without the resources its request names (is its client built with telemetry::AwsResources?): {line}")
            });
            calls.entry(function.to_string()).or_default().insert(Call {
                service: s.to_string(),
                operation: o.to_string(),
                resources,
            });
        }
    }
    calls
}

/// The stack as the template would make it on this machine, without deploying it.
fn facts_of(template: &Value, ecs: bool) -> Facts {
    let mut resources = BTreeMap::new();
    let Value::Mapping(all) = &template["Resources"] else {
        panic!("template.yaml has no Resources");
    };
    for (id, r) in all {
        let id = id.as_str().unwrap().to_string();
        let kind = r["Type"].as_str().unwrap().to_string();
        if !ecs && r["Condition"].as_str() == Some("UseEcs") {
            continue;
        }
        let physical = match kind.as_str() {
            "AWS::SQS::Queue" => format!("http://sqs.local/000000000000/s-{id}"),
            "AWS::ECS::TaskDefinition" => {
                "arn:aws:ecs:us-east-1:000000000000:task-definition/s-python:3".to_string()
            }
            _ => format!("s-{id}"),
        };
        resources.insert(id, (kind, physical));
    }
    Facts {
        region: "us-east-1".into(),
        account: "000000000000".into(),
        stack: "s".into(),
        resources,
    }
}

#[test]
fn a_call_the_template_does_not_allow_is_refused() {
    let template = template();
    let facts = facts_of(&template, false);
    let granted = granted_by(&template, &facts);
    let bucket = "s-UploadBucket";
    let user_file = ("Key", "0b7f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b/data.csv");
    let refused = |function: &str, call: Call| {
        judge(
            &granted,
            &Calls::from([(function.into(), [call].into())]),
            &facts,
        )
        .0
    };
    // What `login` did when the HTTP edge drained the outbox after every request.
    let put = Call::new(
        "EventBridge",
        "PutEvents",
        &[("EventBusName", "s-EventBus")],
    );
    let problems = refused("LoginFunction", put.clone());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("LoginFunction calls EventBridge.PutEvents, which needs events:PutEvents on arn:aws:events:us-east-1:000000000000:event-bus/s-EventBus"),
        "{problems:?}"
    );
    assert!(refused("CallbackFunction", put).is_empty());
    // Another bus than the stack's.
    let elsewhere = Call::new("EventBridge", "PutEvents", &[("EventBusName", "default")]);
    assert_eq!(refused("CallbackFunction", elsewhere).len(), 1);
    // The right action on a key outside the pattern: compute-submit writes jobs/, not results/.
    let job = Call::new(
        "S3",
        "PutObject",
        &[("Bucket", bucket), ("Key", "jobs/1/code.py")],
    );
    assert!(refused("ComputeSubmitFunction", job).is_empty());
    let result = Call::new(
        "S3",
        "PutObject",
        &[("Bucket", bucket), ("Key", "results/1/stdout.txt")],
    );
    assert_eq!(refused("ComputeSubmitFunction", result).len(), 1);
    // The user-file pattern: a UUID then a name, nothing else.
    let mine = Call::new("S3", "HeadObject", &[("Bucket", bucket), user_file]);
    assert!(refused("UploadEventsFunction", mine).is_empty());
    let not_a_user = Call::new(
        "S3",
        "GetObject",
        &[
            ("Bucket", bucket),
            ("Key", "jobs/0b7f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b/x"),
        ],
    );
    assert_eq!(refused("UploadEventsFunction", not_a_user).len(), 1);
    let other_bucket = Call::new("S3", "GetObject", &[("Bucket", "theirs"), user_file]);
    assert_eq!(refused("UploadEventsFunction", other_bucket).len(), 1);
    // Another queue than the function's own.
    let retry = |queue: &str| {
        Call::new(
            "SQS",
            "SendMessage",
            &[(
                "QueueUrl",
                &format!("http://sqs.local/000000000000/s-{queue}"),
            )],
        )
    };
    assert!(refused("WebhooksFunction", retry("WebhooksQueue")).is_empty());
    assert_eq!(refused("WebhooksFunction", retry("ComputeQueue")).len(), 1);
    // A call whose line names no resource cannot be judged: refused.
    assert_eq!(
        refused("WebhooksFunction", Call::new("SQS", "SendMessage", &[])).len(),
        1
    );
}

#[test]
fn the_ecs_statements_hold_their_cluster_condition() {
    let template = template();
    let facts = facts_of(&template, true);
    let granted = granted_by(&template, &facts);
    let refused = |call: Call| {
        let calls = Calls::from([("ComputeDispatchFunction".into(), [call].into())]);
        judge(&granted, &calls, &facts).0
    };
    let run = |cluster: &str| {
        Call::new(
            "ECS",
            "RunTask",
            &[
                ("cluster", cluster),
                (
                    "taskDefinition",
                    "arn:aws:ecs:us-east-1:000000000000:task-definition/s-python:3",
                ),
            ],
        )
    };
    assert!(refused(run("s-EcsCluster")).is_empty());
    let problems = refused(run("someone-elses"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    let stop =
        |cluster: &str| Call::new("ECS", "StopTask", &[("cluster", cluster), ("task", "abc")]);
    assert!(refused(stop("s-EcsCluster")).is_empty());
    assert_eq!(refused(stop("someone-elses")).len(), 1);
    // A failed task's partial results are listed and removed, under results/ only.
    let s3 = |operation: &str, field: &str, value: &str| {
        Call::new(
            "S3",
            operation,
            &[("Bucket", "s-UploadBucket"), (field, value)],
        )
    };
    assert!(refused(s3("ListObjectsV2", "Prefix", "results/1/")).is_empty());
    assert_eq!(refused(s3("ListObjectsV2", "Prefix", "")).len(), 1);
    assert!(refused(s3("DeleteObject", "Key", "results/1/stdout.txt")).is_empty());
    assert_eq!(
        refused(s3("DeleteObject", "Key", "jobs/1/code.py")).len(),
        1
    );
    // Without ECS, its statements name nothing deployed and allow nothing.
    let facts = facts_of(&template, false);
    let granted = granted_by(&template, &facts);
    let calls = Calls::from([(
        "ComputeDispatchFunction".into(),
        [run("s-EcsCluster")].into(),
    )]);
    assert_eq!(judge(&granted, &calls, &facts).0.len(), 1);
}

#[test]
fn iam_wildcards() {
    assert!(glob(
        "arn:aws:s3:::b/????-??/*",
        "arn:aws:s3:::b/abcd-ef/x/y.csv"
    ));
    assert!(!glob("arn:aws:s3:::b/????-??/*", "arn:aws:s3:::b/abc-ef/x"));
    assert!(!glob("arn:aws:s3:::b/jobs/*", "arn:aws:s3:::b/results/1"));
    assert!(glob("*", ""));
    assert!(glob("s3:*Object", "s3:GetObject"));
    assert!(!glob("s3:Get", "s3:GetObject"));
}

#[tokio::test]
async fn every_aws_call_of_the_deployed_functions_is_allowed_and_every_grant_is_used() {
    let env = StackEnv::ready().await.unwrap_or_else(|e| panic!("{e}"));
    let calls = recorded(&env).await;
    assert!(
        !calls.is_empty(),
        "no `{AWS_CALL}` line in the functions' logs since the last build: run the end-to-end tests first (`cargo test -p mecapy-e2e --test stack`; `make test` does)"
    );
    println!("recorded calls: {calls:#?}");
    let facts = Facts::deployed(&env);
    let (mut problems, unused) = judge(&granted(&facts), &calls, &facts);
    problems.extend(unused);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
