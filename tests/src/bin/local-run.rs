//! `scripts/local-run.sh [--accounts N] [--ous N] [--regions N] [--only SCENARIO]`: the whole
//! lifecycle on this machine.

use testkit::local_run::{run, Options};

fn parse_args() -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a whole number"))
        };
        match flag.as_str() {
            "--accounts" => options.member_accounts = value("--accounts")?,
            "--ous" => options.organizational_units = value("--ous")?,
            "--regions" => options.regions = value("--regions")?.clamp(1, 17),
            "--only" => {
                options.only = args
                    .next()
                    .ok_or("--only needs a scenario name (or part of one)")?
            }
            "-h" | "--help" => {
                println!("usage: local-run [--accounts N (member accounts, default 6)] [--ous N (default 2)] [--regions N (default 3)] [--only SCENARIO (e.g. \"delegated\")]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other}; see --help")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() {
    let options = parse_args().unwrap_or_else(|e| {
        eprintln!("local-run: {e}");
        std::process::exit(2);
    });
    // Ctrl-C: exit at once; moto dies with us (PR_SET_PDEATHSIG), loopback servers with the process.
    let ok = tokio::select! {
        report = run(&options) => report.ok(),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nlocal-run: interrupted; every process it started is stopped");
            std::process::exit(130);
        }
    };
    std::process::exit(if ok { 0 } else { 1 });
}
