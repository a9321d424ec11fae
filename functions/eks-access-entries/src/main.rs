use eks_access_entries::{continuation::SelfInvoke, fleet::AwsFleet, EksAccessEntries};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = custom_resource::aws::load_config().await;
    let resource = EksAccessEntries::from_env(AwsFleet::new(config.clone(), None).await?);
    let lambda = aws_sdk_lambda::Client::new(&config);
    let config = custom_resource::RuntimeConfig::from_env();
    custom_resource::run_with(resource, SelfInvoke { lambda }, config).await
}
