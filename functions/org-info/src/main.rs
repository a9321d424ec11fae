use org_info::{api::AwsOrgApi, OrgInfo};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = custom_resource::aws::load_config().await;
    custom_resource::run(OrgInfo::new(AwsOrgApi::new(&config))).await
}
