//! Each function of `template.yaml` is given exactly the variables its code reads: those of the
//! configuration sections its `main` builds ([`Config`] for a context, [`EdgeConfig`] and
//! [`OidcConfig`] for the API, [`LoginConfig`] for login and callback), every required one of
//! them, and nothing else (no database URL for `login`, no state key for `upload`...). What a
//! section reads is its `VARIABLES` (a unit test in `config.rs` holds each list to its parser);
//! which of them are required is found by leaving each out of `infra/local.env`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mecapy_usecases::config::{Config, ConfigError, EdgeConfig, LoginConfig, OidcConfig};
use yaml_serde::Value;

#[derive(Clone, Copy, Debug)]
enum Section {
    Context,
    Edge,
    Oidc,
    Login,
}

use Section::*;

/// What each function's `main` builds (functions/*/src/main.rs, `app::run_api`,
/// `sqs_batch::run`), and the variables it reads besides (the Docker client's).
const FUNCTIONS: &[(&str, &[Section], &[&str])] = &[
    ("LoginFunction", &[Edge, Oidc, Login], &[]),
    ("ApiDocsFunction", &[Edge], &[]),
    ("CallbackFunction", &[Context, Edge, Oidc, Login], &[]),
    ("UploadFunction", &[Context, Edge, Oidc], &[]),
    ("ComputeSubmitFunction", &[Context, Edge, Oidc], &[]),
    ("RulesFunction", &[Context, Edge, Oidc], &[]),
    ("UploadEventsFunction", &[Context], &[]),
    ("UploadRulesFunction", &[Context], &[]),
    ("WebhooksFunction", &[Context], &[]),
    ("ComputeDispatchFunction", &[Context], &["DOCKER_HOST"]),
];

/// Every function's, from the template's Globals.
const EVERY_FUNCTION: &[&str] = &["RUST_LOG"];

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Section {
    fn variables(self) -> &'static [&'static str] {
        match self {
            Context => Config::VARIABLES,
            Edge => EdgeConfig::VARIABLES,
            Oidc => OidcConfig::VARIABLES,
            Login => LoginConfig::VARIABLES,
        }
    }

    fn load(self, lookup: Lookup) -> Result<(), ConfigError> {
        match self {
            Context => Config::from_lookup(lookup).map(drop),
            Edge => EdgeConfig::from_lookup(lookup).map(drop),
            Oidc => OidcConfig::from_lookup(lookup).map(drop),
            Login => LoginConfig::from_lookup(lookup).map(drop),
        }
    }

    /// The variables the section names as missing when local.env lacks them.
    fn required(self, env: &HashMap<String, String>) -> BTreeSet<&'static str> {
        if let Err(e) = self.load(&|k| env.get(k).cloned()) {
            panic!("infra/local.env does not load {self:?}: {e}");
        }
        self.variables()
            .iter()
            .copied()
            .filter(|name| {
                let without = |k: &str| (k != *name).then(|| env.get(k).cloned()).flatten();
                matches!(self.load(&without), Err(ConfigError::Missing(n)) if n == *name)
            })
            .collect()
    }
}

fn local_env() -> HashMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/local.env");
    std::fs::read_to_string(path)
        .expect("infra/local.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The variables `template.yaml` gives each function (Globals and its own), by logical id.
fn environments() -> BTreeMap<String, BTreeSet<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml");
    let template: Value = yaml_serde::from_str(&text).expect("template.yaml is YAML");
    let names = |vars: &Value| -> BTreeSet<String> {
        match vars {
            Value::Mapping(m) => m
                .keys()
                .map(|k| k.as_str().expect("a variable name").to_string())
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    let globals = names(&template["Globals"]["Function"]["Environment"]["Variables"]);
    let Value::Mapping(resources) = &template["Resources"] else {
        panic!("template.yaml has no Resources");
    };
    resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, r)| {
            let mut vars = globals.clone();
            vars.extend(names(&r["Properties"]["Environment"]["Variables"]));
            (id.as_str().expect("a logical id").to_string(), vars)
        })
        .collect()
}

#[test]
fn each_function_is_given_exactly_what_its_code_reads() {
    let env = local_env();
    // What is required is found, not assumed: the database and the bucket, the login's key...
    assert!(Context.required(&env).contains("DATABASE_URL"));
    assert!(Login.required(&env).contains("STATE_SECRET"));
    let environments = environments();
    let known: BTreeSet<&str> = FUNCTIONS.iter().map(|(id, _, _)| *id).collect();
    for id in environments.keys() {
        assert!(
            known.contains(id.as_str()),
            "{id}: a function this test does not know; say which sections its main builds"
        );
    }
    for (id, sections, extra) in FUNCTIONS {
        let given = environments
            .get(*id)
            .unwrap_or_else(|| panic!("{id} is not in template.yaml"));
        let readable: BTreeSet<&str> = sections
            .iter()
            .flat_map(|s| s.variables().iter().copied())
            .chain(extra.iter().copied())
            .chain(EVERY_FUNCTION.iter().copied())
            .collect();
        let unread: Vec<&String> = given
            .iter()
            .filter(|v| !readable.contains(v.as_str()))
            .collect();
        assert!(
            unread.is_empty(),
            "{id} is given {unread:?}, which its code never reads"
        );
        for section in *sections {
            for name in section.required(&env) {
                assert!(
                    given.contains(name),
                    "{id} needs {name} ({section:?}) but template.yaml does not give it"
                );
            }
        }
    }
}

#[test]
fn login_and_api_docs_are_given_no_database_and_no_secret_but_their_own() {
    let environments = environments();
    for id in ["LoginFunction", "ApiDocsFunction"] {
        for name in [
            "DATABASE_URL",
            "DATABASE_CA_CERT",
            "WEBHOOK_SECRET",
            "EVENT_BUS_NAME",
        ] {
            assert!(!environments[id].contains(name), "{id} is given {name}");
        }
    }
    assert!(!environments["ApiDocsFunction"].contains("STATE_SECRET"));
}
