//! template.yaml's ECS task definition of the python tool carries the values that
//! `shared::sandbox::ecs::task_definition` builds for the default limits: one place decides the
//! restrictions, the template only repeats them, and this keeps the two from drifting apart.

use mecapy_sandbox::ecs;
use mecapy_sandbox::{Limits, Restrictions};
use serde_json::Value;

/// The text of the template's `PythonTaskDefinition` resource.
fn python_task_definition() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
    let template = std::fs::read_to_string(path).expect("template.yaml");
    let start = template
        .find("\n  PythonTaskDefinition:\n")
        .expect("a PythonTaskDefinition resource");
    let mut lines = template[start + 1..].lines();
    let mut block = vec![lines.next().unwrap_or_default()];
    // Up to the next resource or comment at the resources' indentation.
    block.extend(lines.take_while(|l| !l.starts_with("  ") || l.starts_with("   ")));
    block.join("\n")
}

/// `Key: value` as the template writes it, for a JSON scalar of the mapping.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if s.contains(':') => format!("\"{s}\""),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn the_template_task_definition_repeats_the_restrictions_of_the_default_limits() {
    let text = python_task_definition();
    let r = Restrictions::of(&Limits::default());
    let built = ecs::task_definition(&r, "f", "img", "stager");
    let has = |line: String| {
        assert!(
            text.contains(&line),
            "template.yaml's PythonTaskDefinition lacks `{line}`:\n{text}"
        )
    };
    has(format!("NetworkMode: {}", scalar(&built["networkMode"])));
    has(format!(
        "o: {}",
        scalar(&built["volumes"][0]["dockerVolumeConfiguration"]["driverOpts"]["o"])
    ));
    has(format!("Cpu: \"{}\"", built["cpu"].as_str().unwrap()));
    let defs = built["containerDefinitions"].as_array().unwrap();
    let names: Vec<&str> = defs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    let positions: Vec<usize> = names
        .iter()
        .map(|name| {
            text.find(&format!("- Name: {name}\n"))
                .unwrap_or_else(|| panic!("no container {name} in the template"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "containers in the order {names:?}"
    );
    for def in defs {
        if def["name"] != ecs::SANDBOX_CONTAINER {
            // Each staging container's memory and CPU share, in its own block.
            let name = def["name"].as_str().unwrap();
            let start = text.find(&format!("- Name: {name}\n")).unwrap();
            let block: String = text[start..]
                .lines()
                .take(10)
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                block.contains(&format!("Memory: {}", def["memory"]))
                    && block.contains(&format!("Cpu: {}", def["cpu"])),
                "{name}: Memory {} and Cpu {} in\n{block}",
                def["memory"],
                def["cpu"]
            );
        }
    }
    let job = defs
        .iter()
        .find(|d| d["name"] == ecs::SANDBOX_CONTAINER)
        .unwrap();
    for (key, field) in [
        ("Memory", "memory"),
        ("Cpu", "cpu"),
        ("User", "user"),
        ("ReadonlyRootFilesystem", "readonlyRootFilesystem"),
        ("Privileged", "privileged"),
        ("DisableNetworking", "disableNetworking"),
        ("WorkingDirectory", "workingDirectory"),
    ] {
        has(format!("{key}: {}", scalar(&job[field])));
    }
    let linux = &job["linuxParameters"];
    has(format!(
        "InitProcessEnabled: {}",
        scalar(&linux["initProcessEnabled"])
    ));
    has(format!("MaxSwap: {}", scalar(&linux["maxSwap"])));
    has(format!("Size: {}", scalar(&linux["tmpfs"][0]["size"])));
    let options: Vec<String> = linux["tmpfs"][0]["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(scalar)
        .collect();
    has(format!("MountOptions: [{}]", options.join(", ")));
    has("Capabilities: {Drop: [ALL]}".into());
    has("DockerSecurityOptions: [no-new-privileges]".into());
    has("Ulimits: [{Name: core, SoftLimit: 0, HardLimit: 0}]".into());
    has("DependsOn: [{ContainerName: hold, Condition: START}]".into());
    has("DependsOn: [{ContainerName: stage-in, Condition: SUCCESS}]".into());
    has("DependsOn: [{ContainerName: sandbox, Condition: COMPLETE}]".into());
}
