//! Prints the API's OpenAPI document as YAML (`make openapi` writes it to `openapi.yaml`).

fn main() {
    print!("{}", mecapy_shared::api::openapi::yaml());
}
