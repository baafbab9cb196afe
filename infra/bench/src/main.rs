//! `make bench`: measured figures, never asserted. Needs the local services (`make up`) and
//! `cargo build --release -p login -p callback -p upload` (the Makefile does both).

use std::path::Path;
use std::time::{Duration, Instant};

use lambda_http::http::{Method, StatusCode};
use mecapy_shared::testing::{json_request, multipart_request, TestContext};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    println!("| measure | value | target |");
    println!("|---|---|---|");
    for name in ["login", "callback", "upload"] {
        let path = root.join("target/release").join(name);
        let size = std::fs::metadata(&path)
            .map(|m| format!("{:.2} MB", m.len() as f64 / 1e6))
            .unwrap_or_else(|_| format!("missing: build {}", path.display()));
        println!("| release binary `{name}` | {size} | |");
    }

    let ctx = TestContext::with(|c| c.max_upload_bytes = 2 * 1024 * 1024).await;
    let token = ctx.token_for("bench-user").await;
    ctx.state
        .tokens
        .validate(&token)
        .await
        .expect("warm-up validation");
    let mut samples = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let t = Instant::now();
        ctx.state
            .tokens
            .validate(&token)
            .await
            .expect("valid token");
        samples.push(t.elapsed());
    }
    let (p50, p99) = summary(samples);
    println!(
        "| JWT validation, warm JWKS cache, p50 / p99 | {} / {} | p50 ≤ 50 µs |",
        fmt(p50),
        fmt(p99)
    );

    let mut samples = Vec::with_capacity(300);
    for i in 0..301 {
        let req = json_request(Method::POST, "/auth/login", None, &serde_json::json!({}));
        let t = Instant::now();
        let r = login::handle(ctx.state.clone(), req)
            .await
            .expect("infallible");
        let elapsed = t.elapsed();
        assert_eq!(r.status(), StatusCode::OK);
        if i > 0 {
            samples.push(elapsed);
        }
    }
    let (p50, p99) = summary(samples);
    println!(
        "| login in-process, p50 / p99 | {} / {} | |",
        fmt(p50),
        fmt(p99)
    );

    let data = vec![0x5au8; 1024 * 1024];
    let mut samples = Vec::with_capacity(50);
    for i in 0..51 {
        let req = multipart_request(
            "/files",
            Some(&token),
            &format!("bench-{i}.bin"),
            "application/octet-stream",
            &data,
        );
        let t = Instant::now();
        let r = upload::handle(ctx.state.clone(), req)
            .await
            .expect("infallible");
        let elapsed = t.elapsed();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.body());
        if i > 0 {
            samples.push(elapsed);
        }
    }
    let (p50, p99) = summary(samples);
    println!(
        "| 1 MB upload in-process to LocalStack S3 + PostgreSQL, p50 / p99 | {} / {} | |",
        fmt(p50),
        fmt(p99)
    );
}
