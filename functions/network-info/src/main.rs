use network_info::NetworkInfo;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = custom_resource::aws::load_config().await;
    custom_resource::run(NetworkInfo::new(aws_sdk_ec2::Client::new(&config))).await
}
