//! The documentation page (`GET /docs`): the OpenAPI document rendered as one self-contained
//! HTML page (its style inline, no script, nothing fetched from anywhere), in light or dark as
//! the reader's system prefers.

use serde_json::Value;

/// The page's content security policy: only its own inline style.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const STYLE: &str = "
:root { color-scheme: light dark; --bg: #fbfbfd; --fg: #1d2230; --muted: #5b6478; --line: #dde1ea;
  --card: #ffffff; --code: #f1f3f8; --get: #1769aa; --post: #2e7d32; --delete: #b3261e; }
@media (prefers-color-scheme: dark) { :root { --bg: #12151c; --fg: #e6e9f0; --muted: #9aa3b5;
  --line: #2b3140; --card: #1a1e27; --code: #232937; --get: #6cb2f0; --post: #7bc67e; --delete: #f08a80; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.55 system-ui, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 24px; }
h1 { margin: 0 0 4px; } h2 { margin-top: 40px; border-bottom: 1px solid var(--line); }
p, li { color: var(--fg); } .muted { color: var(--muted); }
code { background: var(--code); padding: 1px 5px; border-radius: 4px; font-size: 13px; }
nav a { margin-right: 12px; } a { color: var(--get); }
section.op { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; margin: 14px 0; }
.method { display: inline-block; min-width: 64px; font-weight: 700; text-transform: uppercase; }
.get { color: var(--get); } .post { color: var(--post); } .delete { color: var(--delete); }
.path { font-family: ui-monospace, monospace; font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 14px; }
th, td { text-align: left; border-bottom: 1px solid var(--line); padding: 4px 8px; vertical-align: top; }
.lock { font-size: 12px; color: var(--muted); margin-left: 8px; }
";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `` `code` `` spans of the document's prose as `<code>`, the rest escaped.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for (i, piece) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", escape(piece)));
        } else {
            out.push_str(&escape(piece));
        }
    }
    out.replace("\n\n", "</p><p>")
}

fn ref_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// A schema in a few words: its type, or a link to the component it names.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = ref_name(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(parts) = schema[key].as_array() {
            let sep = if key == "allOf" { " &amp; " } else { " | " };
            return parts.iter().map(type_of).collect::<Vec<_>>().join(sep);
        }
    }
    let base = match &schema["type"] {
        Value::String(t) if t == "array" => format!("array of {}", type_of(&schema["items"])),
        Value::String(t) => escape(t),
        Value::Array(types) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("array") => format!("array of {}", type_of(&schema["items"])),
                Some(t) => escape(t),
                None => String::new(),
            })
            .collect::<Vec<_>>()
            .join(" | "),
        _ if schema["enum"].is_array() => "string".into(),
        _ => "any".into(),
    };
    let mut extra = Vec::new();
    if let Some(f) = schema["format"].as_str() {
        extra.push(escape(f));
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .filter_map(|v| v.as_str())
            .map(|v| format!("<code>{}</code>", escape(v)))
            .collect();
        extra.push(format!("one of {}", values.join(", ")));
    }
    for (key, word) in [("minimum", "≥"), ("maximum", "≤"), ("maxItems", "items ≤")] {
        if let Some(n) = schema[key].as_f64() {
            extra.push(format!("{word} {n}"));
        }
    }
    if extra.is_empty() {
        base
    } else {
        format!("{base} ({})", extra.join(", "))
    }
}

fn schema_table(schema: &Value) -> String {
    let Some(properties) = schema["properties"].as_object() else {
        return format!("<p>{}</p>", type_of(schema));
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut html =
        String::from("<table><tr><th>field</th><th>type</th><th>required</th><th></th></tr>");
    for (name, property) in properties {
        html.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            type_of(property),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                ""
            },
            prose(property["description"].as_str().unwrap_or("")),
        ));
    }
    html.push_str("</table>");
    if schema["additionalProperties"] == Value::Bool(false) {
        html.push_str("<p class=\"muted\">No other field is accepted.</p>");
    }
    html
}

fn operation(doc: &Value, path: &str, method: &str, op: &Value) -> String {
    let id = op["operationId"].as_str().unwrap_or("");
    let mut html = format!(
        "<section class=\"op\" id=\"op-{id}\"><div><span class=\"method {method}\">{method}</span> \
         <span class=\"path\">{path}</span>{lock}</div><p><strong>{summary}</strong></p><p>{description}</p>",
        id = escape(id),
        method = escape(method),
        path = escape(path),
        lock = if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            "<span class=\"lock\">bearer token</span>"
        } else {
            "<span class=\"lock\">no token</span>"
        },
        summary = escape(op["summary"].as_str().unwrap_or("")),
        description = prose(op["description"].as_str().unwrap_or("")),
    );
    if let Some(params) = op["parameters"].as_array() {
        html.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>");
        for p in params {
            html.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(p["name"].as_str().unwrap_or("")),
                escape(p["in"].as_str().unwrap_or("")),
                type_of(&p["schema"]),
                prose(p["description"].as_str().unwrap_or("")),
            ));
        }
        html.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (media, body) in content {
            html.push_str(&format!(
                "<p>Body{}: <code>{}</code> {}</p>",
                if op["requestBody"]["required"] == Value::Bool(true) {
                    ""
                } else {
                    " (optional)"
                },
                escape(media),
                type_of(&body["schema"]),
            ));
        }
    }
    html.push_str("<table><tr><th>status</th><th>answer</th><th>media type</th></tr>");
    if let Some(responses) = op["responses"].as_object() {
        for (status, response) in responses {
            let response = match response["$ref"].as_str() {
                Some(r) => &doc["components"]["responses"][ref_name(r)],
                None => response,
            };
            let media: Vec<String> = response["content"]
                .as_object()
                .map(|c| {
                    c.iter()
                        .map(|(m, v)| {
                            format!("<code>{}</code> {}", escape(m), type_of(&v["schema"]))
                        })
                        .collect()
                })
                .unwrap_or_default();
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(status),
                prose(response["description"].as_str().unwrap_or("")),
                media.join("<br>"),
            ));
        }
    }
    html.push_str("</table></section>");
    html
}

/// The page for `doc` (the OpenAPI document as JSON).
pub fn page(doc: &Value) -> String {
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>\
         <h1>{title}</h1><p class=\"muted\">OpenAPI {openapi}, version {version} · \
         <a href=\"openapi.json\">openapi.json</a></p><p>{description}</p><nav>",
        title = escape(title),
        openapi = escape(doc["openapi"].as_str().unwrap_or("")),
        version = escape(doc["info"]["version"].as_str().unwrap_or("")),
        description = prose(doc["info"]["description"].as_str().unwrap_or("")),
    );
    let tags: Vec<(&str, &str)> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or(""),
                        t["description"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for (tag, _) in &tags {
        html.push_str(&format!("<a href=\"#tag-{0}\">{0}</a>", escape(tag)));
    }
    html.push_str("<a href=\"#schemas\">schemas</a></nav>");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (tag, description) in &tags {
        html.push_str(&format!(
            "<h2 id=\"tag-{0}\">{0}</h2><p class=\"muted\">{1}</p>",
            escape(tag),
            prose(description)
        ));
        for (path, item) in &paths {
            for method in ["get", "post", "delete"] {
                let op = &item[method];
                if op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == tag))
                {
                    html.push_str(&operation(doc, path, method, op));
                }
            }
        }
    }
    html.push_str("<h2 id=\"schemas\">schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            html.push_str(&format!(
                "<section class=\"op\" id=\"schema-{0}\"><div class=\"path\">{0}</div><p>{1}</p>{2}</section>",
                escape(name),
                prose(schema["description"].as_str().unwrap_or("")),
                schema_table(schema),
            ));
        }
    }
    html.push_str("</main></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_escapes_what_it_shows() {
        let doc = serde_json::json!({
            "openapi": "3.1.0",
            "info": {"title": "<script>x</script>", "version": "1", "description": "a `<b>`"},
            "tags": [{"name": "t", "description": ""}],
            "paths": {"/x": {"get": {"operationId": "x", "tags": ["t"], "summary": "\"q\"",
                "responses": {"200": {"description": "ok"}}}}},
        });
        let html = page(&doc);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<code>&lt;b&gt;</code>"));
        assert!(html.contains("&quot;q&quot;"));
    }

    #[test]
    fn the_api_page_names_every_operation_and_loads_nothing() {
        let doc = serde_json::to_value(super::super::openapi::document()).unwrap();
        let html = page(&doc);
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                assert!(html.contains(&format!("id=\"op-{id}\"")), "{id}");
            }
        }
        for remote in ["<script", "src=", "<link", "@import", "url("] {
            assert!(!html.contains(remote), "{remote}");
        }
    }
}
