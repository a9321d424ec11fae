use apono_integration::{token::SsmTokens, AponoIntegration};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = custom_resource::aws::load_config().await;
    let tokens = SsmTokens {
        ssm: aws_sdk_ssm::Client::new(&config),
    };
    let resource = AponoIntegration::new(tokens)
        .also_allowing(AponoIntegration::<SsmTokens>::allowed_hosts_from_env());
    custom_resource::run(resource).await
}
