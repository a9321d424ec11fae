use apono_integration::{token::AwsTokens, AponoIntegration};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = custom_resource::aws::load_config().await;
    let resource = AponoIntegration::new(AwsTokens::new(&config))
        .also_allowing(AponoIntegration::<AwsTokens>::allowed_hosts_from_env());
    custom_resource::run(resource).await
}
