//! `moto_server` on a free 127.0.0.1 port, one per test, killed when dropped.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// With IAM enforcement: the access key and secret of an administrator user, used by the
    /// test kit itself (everything else gets only what its role grants).
    admin: Option<(String, String)>,
}

/// The IAM user the test kit acts as when moto enforces IAM.
pub const ADMIN_USER: &str = "local-deploy-admin";

/// Moto's default account when credentials carry no account of their own.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

impl Moto {
    /// Starts moto and waits until it answers. Panics with the remedy when moto is missing.
    pub async fn start() -> Moto {
        Moto::start_with(false).await
    }

    /// moto with its IAM enforcement on (see tests/moto_enforcing.py): every call after the
    /// first three, which create the test kit's administrator, is checked against the
    /// caller's policies, so a function running as its template role gets AccessDenied for
    /// anything the role does not grant.
    pub async fn start_enforcing() -> Moto {
        let mut moto = Moto::start_with(true).await;
        let bootstrap = moto.sdk_config();
        let iam = aws_sdk_iam::Client::new(&bootstrap);
        iam.create_user()
            .user_name(ADMIN_USER)
            .send()
            .await
            .expect("create the admin user");
        iam.put_user_policy()
            .user_name(ADMIN_USER)
            .policy_name("everything")
            .policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            )
            .send()
            .await
            .expect("grant the admin user");
        let key = iam
            .create_access_key()
            .user_name(ADMIN_USER)
            .send()
            .await
            .expect("the admin user's access key")
            .access_key
            .expect("access key");
        moto.admin = Some((key.access_key_id, key.secret_access_key));
        moto
    }

    async fn start_with(enforcing: bool) -> Moto {
        // A port can be taken between `free_port` and moto's bind: then moto exits, and we try
        // another port rather than talk to whoever holds it.
        for _ in 0..5 {
            if let Some(moto) = Moto::start_on(crate::free_port(), enforcing).await {
                return moto;
            }
        }
        panic!("moto_server could not bind a loopback port in 5 tries");
    }

    async fn start_on(port: u16, enforcing: bool) -> Option<Moto> {
        let program = match enforcing {
            true => crate::venv_tool("python"),
            false => crate::venv_tool("moto_server"),
        };
        let mut command = Command::new(&program);
        if enforcing {
            command
                .arg(crate::workspace_root().join("tests/moto_enforcing.py"))
                // The three calls that create the admin user and its key.
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "3");
        }
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ALLOW_NONEXISTENT_REGION", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // MOTO_STDERR=/path keeps moto's request log (path.PORT), for debugging a denial.
            .stderr(match std::env::var("MOTO_STDERR") {
                Ok(path) => Stdio::from(std::fs::File::create(format!("{path}.{port}")).unwrap()),
                Err(_) => Stdio::null(),
            })
            .kill_on_drop(true);
        // SAFETY: the closure runs in the forked child before exec and calls only prctl, which
        // is async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            command.pre_exec(|| {
                // If the test process dies, take moto with it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): run scripts/bootstrap.sh to create .venv",
                program.display()
            )
        });
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            admin: None,
        };
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if !matches!(moto.child.try_wait(), Ok(None)) {
                return None; // exited: most likely the port was taken
            }
            if let Ok(r) = client
                .get(format!("{}/moto-api/data.json", moto.endpoint))
                .send()
                .await
            {
                // moto's answer is a JSON object of its models; anyone else's is not ours.
                let is_moto = r.status().is_success()
                    && r.json::<serde_json::Map<String, serde_json::Value>>()
                        .await
                        .is_ok();
                if is_moto && matches!(moto.child.try_wait(), Ok(None)) {
                    return Some(moto);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "moto_server did not answer on {} within 20 s",
            moto.endpoint
        );
    }

    /// SDK config pointed at moto with the test kit's credentials for moto's default account
    /// (the administrator's when moto enforces IAM).
    pub fn sdk_config(&self) -> SdkConfig {
        let (key, secret) = self.kit_credentials();
        self.sdk_config_as(key, secret, None)
    }

    fn kit_credentials(&self) -> (&str, &str) {
        match &self.admin {
            Some((key, secret)) => (key, secret),
            None => ("testing-access-key", "testing-secret-key"),
        }
    }

    /// The administrator's access key ID, when moto enforces IAM.
    pub fn admin_key_id(&self) -> Option<&str> {
        self.admin.as_ref().map(|(key, _)| key.as_str())
    }

    /// SDK config with the given credentials (e.g. from an STS AssumeRole into a member).
    pub fn sdk_config_as(&self, key: &str, secret: &str, token: Option<String>) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                    key, secret, token, None, "moto",
                )),
            )
            .retry_config(custom_resource::aws::retry_config())
            .build()
    }

    /// Environment for a child process (a function binary) to use this moto.
    pub fn env(&self) -> Vec<(String, String)> {
        let (key, secret) = self.kit_credentials();
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), key.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
