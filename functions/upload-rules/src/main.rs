#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mecapy_shared::sqs_batch::run("upload-rules", upload_rules::handle).await
}
