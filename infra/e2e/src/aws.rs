//! SigV4-signed JSON requests to one AWS service of LocalStack: the few calls the tests need,
//! without an SDK crate for each service.

use std::time::{Duration, SystemTime};

use reqwest::Method;
use serde_json::Value;

use crate::api::{client, Failure};
use crate::env::StackEnv;

pub struct AwsRest {
    service: &'static str,
    endpoint: String,
    region: String,
    key: String,
    secret: String,
    http: reqwest::Client,
}

impl AwsRest {
    /// `service` is the signing name (`lambda`, `logs`).
    pub fn new(env: &StackEnv, service: &'static str) -> Self {
        AwsRest {
            service,
            endpoint: env.endpoint().to_string(),
            region: env.var("AWS_REGION").to_string(),
            key: env.var("AWS_ACCESS_KEY_ID").to_string(),
            secret: env.var("AWS_SECRET_ACCESS_KEY").to_string(),
            http: client(Duration::from_secs(60)),
        }
    }

    /// `method path` with `headers` and a JSON `body`, signed; the answer's JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4;
        let url = format!("{}{path}", self.endpoint);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let identity = aws_credential_types::Credentials::new(
            &self.key,
            &self.secret,
            None,
            None,
            "mecapy-e2e",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Failure::new(format!("signing parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(&bytes),
        )
        .map_err(|e| Failure::new(format!("{method} {url}: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Failure::new(format!("signing {method} {url}: {e}")))?
            .into_parts();
        let mut req = http::Request::builder().method(method.as_str()).uri(&url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let mut req = req
            .body(bytes)
            .map_err(|e| Failure::new(format!("{method} {url}: {e}")))?;
        instructions.apply_to_request_http1x(&mut req);
        let req = reqwest::Request::try_from(req)
            .map_err(|e| Failure::new(format!("{method} {url}: {e}")))?;
        let r = self.http.execute(req).await.map_err(|e| {
            Failure::new(format!(
                "{method} {url}: LocalStack's {} API does not answer ({e}): `make up`",
                self.service
            ))
        })?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Failure {
                message: format!("{method} {url}"),
                status: Some(status.as_u16()),
                body: Some(text),
            });
        }
        serde_json::from_str(&text).map_err(|e| Failure {
            message: format!("{method} {url}: not JSON ({e})"),
            status: Some(status.as_u16()),
            body: Some(text),
        })
    }
}
