//! The server library in a process of its own, for tests of several servers on one database
//! and one bucket (`suiji_tests::ServerProcess`): `suiji-test-server DIR` serves the data
//! directory `DIR` with the database and blob store named in it (as `test_database` and
//! `test_blobs` keep them) on 127.0.0.1, prints `listening on http://ADDRESS`, and runs until
//! it is killed, as a test kills it.

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: suiji-test-server DIR"))?,
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = suiji_tests::test_config(&dir);
    let state = tokio::task::spawn_blocking(move || suiji_server::open(config)).await??;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    suiji_server::serve(listener, state, std::future::pending()).await?;
    Ok(())
}
