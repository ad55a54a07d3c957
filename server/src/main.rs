//! `suiji-server` command line: run the server, or check a data directory's
//! audit log, draw records, records and task dossiers offline. Reads configuration and calls into the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
#[cfg(feature = "demo")]
use suiji_server::demo;
use suiji_server::{Config, audit, db};

/// Record documents allocate heavily; mimalloc serves the server's many threads with less
/// CPU than glibc's malloc (a sixth of the server's time in the sync benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "suiji-server",
    version,
    about = "双随机、一公开 spot-check server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Data directory (database and blobs).
        #[arg(long, default_value = "./suiji-data", env = "SUIJI_DATA")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "SUIJI_LISTEN")]
        listen: SocketAddr,
        /// Fill an empty data directory with a demo agency and accept the demo password.
        #[arg(long)]
        demo: bool,
        /// Most connections served at once (lowered to what the open-file limit allows);
        /// more wait to be accepted.
        #[arg(long, default_value_t = suiji_server::transport::Limits::default().max_connections, env = "SUIJI_MAX_CONNECTIONS")]
        max_connections: usize,
        /// Most connections one address may hold (default: a quarter of the connections,
        /// at least 16). Behind a reverse proxy, set it to `--max-connections`.
        #[arg(long, env = "SUIJI_MAX_CONNECTIONS_PER_ADDRESS")]
        max_connections_per_address: Option<usize>,
        /// The address the public reaches this server at (for example
        /// `https://spotcheck.example.gov.cn`), printed on PDF documents and in their QR codes.
        /// Unset, each request's own Host is used, which is right only without a proxy.
        #[arg(long, env = "SUIJI_PUBLIC_URL")]
        public_url: Option<String>,
        /// A PostgreSQL database (`postgres://user@host:port/db`) instead of the SQLite file in
        /// the data directory; several servers may share it (docs/storage.md).
        #[arg(long, env = "SUIJI_DATABASE")]
        database: Option<String>,
        /// An S3-compatible bucket (`s3://bucket/prefix`) for the blobs instead of the data
        /// directory's `blobs`; endpoint, region and keys from `AWS_ENDPOINT_URL`, `AWS_REGION`,
        /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (docs/deploy.md).
        #[arg(long, env = "SUIJI_BLOBS")]
        blobs: Option<String>,
    },
    /// Accounts, for setting up a server without demo data.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Published draw records.
    Draw {
        #[command(subcommand)]
        command: DrawCommand,
    },
    /// Moving an agency's data between databases and blob stores.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// The hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Downloaded inspection records.
    Record {
        #[command(subcommand)]
        command: RecordCommand,
    },
    /// A task's dossier: one ZIP of its draws, records, photos, audit entries and results.
    Dossier {
        #[command(subcommand)]
        command: DossierCommand,
    },
}

#[derive(Subcommand)]
enum DossierCommand {
    /// Write the dossier of a task (the ZIP `GET /api/v1/tasks/{id}/dossier.zip` serves)
    /// from a data directory; safe beside a running server.
    Export {
        /// The task's id.
        task: i64,
        /// Data directory (database and blobs).
        #[arg(long, default_value = "./suiji-data", env = "SUIJI_DATA")]
        data: PathBuf,
        /// The ZIP file to write.
        #[arg(long)]
        out: PathBuf,
        /// The address the public reaches the server at, for the QR codes of the printable
        /// documents (as `serve --public-url`).
        #[arg(
            long,
            env = "SUIJI_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
    },
    /// Check a dossier offline: the manifest, every file's SHA-256 and size, the draw records
    /// (as `draw verify`) and every inspector signature (as `record verify`). Exit non-zero
    /// naming the first file that fails.
    Verify {
        /// The dossier ZIP.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum RecordCommand {
    /// Check a downloaded record (JSON, as `GET /api/v1/records/{id}/signed-copy` serves it)
    /// offline: every inspector signature against the signers' public keys in the file, and
    /// that the record did not change after signing. Exit non-zero naming the first signature
    /// that fails.
    Verify {
        /// The record file (`-` for standard input).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from SUIJI_PASSWORD or, if that
    /// is unset, from the first line of standard input.
    Create {
        /// Data directory (database and blobs).
        #[arg(long, default_value = "./suiji-data", env = "SUIJI_DATA")]
        data: PathBuf,
        /// Login name.
        #[arg(long)]
        username: String,
        /// Name shown to people.
        #[arg(long)]
        display_name: String,
        /// Role (admin, planner, supervisor, inspector); repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DrawCommand {
    /// Recompute a draw record (JSON, as `GET /api/v1/public/draws/{id}` serves
    /// it) and say whether it matches; exit non-zero naming the first difference.
    /// Also checks that the commitment preceded the draw, that a beacon was due
    /// before it and that the observers' entries count.
    Verify {
        /// The draw record file (`-` for standard input).
        file: PathBuf,
        /// For a redraw: the task's initial draw record, to check that the
        /// redraw's pools come from the committed pools.
        #[arg(long)]
        initial: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the chain; exit non-zero naming the first bad entry.
    Verify {
        /// Data directory (database and blobs).
        #[arg(long, default_value = "./suiji-data", env = "SUIJI_DATA")]
        data: PathBuf,
        /// A PostgreSQL database (`postgres://…`) to check instead of the data directory's
        /// SQLite file.
        #[arg(long, env = "SUIJI_DATABASE")]
        database: Option<String>,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy a SQLite data directory, whose server is stopped, into an empty PostgreSQL
    /// database (and its blobs into an S3 bucket or another directory), then verify the copy: the audit chain
    /// and every draw record (docs/deploy.md). All or nothing; exit non-zero saying why.
    Copy {
        /// The data directory to copy from.
        #[arg(long)]
        from: PathBuf,
        /// The empty PostgreSQL database to copy into (`postgres://user@host:port/db`).
        #[arg(long)]
        to: String,
        /// Where to copy the blobs: an S3-compatible bucket (`s3://bucket/prefix`, endpoint and
        /// keys from the `AWS_*` variables) or a directory; without it they stay in
        /// `FROM/blobs`.
        #[arg(long)]
        blobs: Option<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            data,
            listen,
            demo,
            max_connections,
            max_connections_per_address,
            public_url,
            database,
            blobs,
        } => serve(
            Storage { database, blobs },
            data,
            listen,
            demo,
            max_connections,
            max_connections_per_address,
            public_url,
        ),
        Command::Audit {
            command: AuditCommand::Verify { data, database },
        } => verify_audit(data, database),
        Command::Store {
            command: StoreCommand::Copy { from, to, blobs },
        } => store_copy(&from, &to, blobs.as_deref()),
        Command::Draw {
            command: DrawCommand::Verify { file, initial },
        } => verify_draw(&file, initial.as_deref()),
        Command::Record {
            command: RecordCommand::Verify { file },
        } => verify_record(&file),
        Command::Dossier {
            command:
                DossierCommand::Export {
                    task,
                    data,
                    out,
                    public_url,
                },
        } => export_dossier(task, &data, &out, &public_url),
        Command::Dossier {
            command: DossierCommand::Verify { file },
        } => verify_dossier(&file),
        Command::User {
            command:
                UserCommand::Create {
                    data,
                    username,
                    display_name,
                    roles,
                },
        } => create_user(data, &username, &display_name, &roles),
    }
}

fn create_user(
    data: PathBuf,
    username: &str,
    display_name: &str,
    roles: &[String],
) -> anyhow::Result<ExitCode> {
    let roles = roles
        .iter()
        .map(|r| r.parse::<suiji_server::auth::Role>())
        .collect::<Result<Vec<_>, _>>()?;
    let password = match std::env::var("SUIJI_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if let Some(why) = suiji_server::auth::password_weakness(username, &password) {
        anyhow::bail!("password {why}");
    }
    let state = suiji_server::open(Config {
        database: None,
        blobs: None,
        data_dir: data,
        demo: false,
        transport: Default::default(),
        public_url: None,
    })?;
    let hash = suiji_server::auth::hash_password(&password)?;
    let user = state.db.write_blocking(|tx| {
        suiji_server::accounts::insert_user(tx, "cli", username, display_name, &hash, &roles)
    })?;
    println!("created user {} (id {})", user.username, user.id);
    Ok(ExitCode::SUCCESS)
}

/// The database and blob store a server uses instead of the ones in its data directory.
struct Storage {
    database: Option<String>,
    blobs: Option<String>,
}

fn serve(
    Storage { database, blobs }: Storage,
    data: PathBuf,
    listen: SocketAddr,
    demo_mode: bool,
    max_connections: usize,
    max_connections_per_address: Option<usize>,
    public_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    #[cfg(not(feature = "demo"))]
    if demo_mode {
        anyhow::bail!("this build has no demo agency (built without the `demo` feature)");
    }
    let started = Instant::now();
    let open_files = suiji_server::transport::raise_open_file_limit();
    let transport = suiji_server::transport::Limits {
        max_connections,
        max_connections_per_address,
        ..Default::default()
    };
    let connections = suiji_server::transport::connection_cap(max_connections, open_files);
    let per_address =
        suiji_server::transport::address_share(connections, max_connections_per_address);
    // Servers sharing a PostgreSQL database coordinate through it; the SQLite default has one.
    let _claim = match database {
        None => Some(suiji_server::lock_for_serving(&data)?),
        Some(_) => None,
    };
    let config = Config {
        database,
        blobs,
        data_dir: data.clone(),
        demo: demo_mode,
        transport,
        public_url,
    };
    let state = suiji_server::open(config)
        .with_context(|| format!("opening data directory {}", data.display()))?;
    let abandoned = state
        .blobs
        .remove_abandoned_staging()
        .context("removing blob uploads a crash cut short")?;
    if abandoned > 0 {
        tracing::info!(files = abandoned, "removed blob uploads a crash cut short");
    }
    #[cfg(feature = "demo")]
    if demo_mode {
        let summary =
            demo::seed(&state.db, &state.calendar(), &state.seal).context("seeding demo data")?;
        if summary.seeded {
            tracing::info!(
                departments = summary.departments,
                items = summary.items,
                targets = summary.targets,
                inspectors = summary.inspectors,
                published_draws = summary.published_draws,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "demo agency created"
            );
        }
        println!("Demo accounts (password `{}`):", demo::DEMO_PASSWORD);
        println!("  admin       (admin)");
        println!("  planner     (planner)");
        println!("  supervisor  (supervisor)");
        println!(
            "  inspector1 … inspector{} (inspector)",
            demo::DEMO_INSPECTORS
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let shutdown = shutdown_signal()?;
        tracing::info!(
            %addr,
            data = %data.display(),
            demo = demo_mode,
            startup_ms = started.elapsed().as_millis() as u64,
            max_connections = connections,
            per_address,
            "suiji server listening"
        );
        println!("suiji is listening on http://{addr}");
        suiji_server::serve(listener, state, shutdown).await?;
        tracing::info!("shut down cleanly");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Listens for Ctrl-C and SIGTERM from the moment it is called, so that a signal sent as soon
/// as "listening" is printed still stops the server cleanly; the future resolves at the first.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let signalled = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        }
    };
    #[cfg(not(unix))]
    let signalled = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    Ok(async move {
        signalled.await;
        tracing::info!("shutdown requested; finishing requests in flight");
    })
}

fn read_input(file: &std::path::Path) -> anyhow::Result<String> {
    Ok(if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    })
}

fn verify_record(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = read_input(file)?;
    let record: suiji_server::signing::SignedRecordFile = match serde_json::from_str(&text) {
        Ok(record) => record,
        Err(e) => {
            println!("not a signed record file: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    match record.verify() {
        Ok(checks) => {
            let signers: Vec<&str> = checks
                .iter()
                .map(|c| c.signature.inspector_id.as_str())
                .collect();
            println!(
                "verified: record {} signed by inspectors {}",
                record.record_id,
                signers.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            println!("NOT verified: record {}: {failure}", record.record_id);
            Ok(ExitCode::from(1))
        }
    }
}

fn read_record(file: &std::path::Path) -> anyhow::Result<Option<suiji_server::draw::DrawRecord>> {
    let text = read_input(file)?;
    match serde_json::from_str(&text) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            println!("{}: not a draw record: {e}", file.display());
            Ok(None)
        }
    }
}

fn verify_draw(
    file: &std::path::Path,
    initial: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let Some(record) = read_record(file)? else {
        return Ok(ExitCode::from(2));
    };
    let checked = match (&record.redraw, initial) {
        (Some(_), Some(initial)) => {
            let Some(initial) = read_record(initial)? else {
                return Ok(ExitCode::from(2));
            };
            suiji_server::draw::verify(&initial)
                .map_err(|e| format!("the initial draw record: {e}"))
                .and_then(|()| suiji_server::draw::verify_redraw_pools(&record, &initial))
                .and_then(|()| suiji_server::draw::verify(&record))
        }
        (None, Some(_)) => Err("--initial is for redraws, and this is an initial draw".into()),
        (Some(_), None) => {
            println!(
                "note: a redraw: pass --initial with the task's initial draw record to check its pools against the commitment"
            );
            suiji_server::draw::verify(&record)
        }
        (None, None) => suiji_server::draw::verify(&record),
    };
    match checked {
        Ok(()) => {
            println!(
                "verified: draw {} of task {} ({} targets, seed {})",
                record.draw_id,
                record.task.number,
                record.result.targets.len(),
                record.seed
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(difference) => {
            println!("NOT verified: {difference}");
            Ok(ExitCode::from(1))
        }
    }
}

fn export_dossier(
    task: i64,
    data: &std::path::Path,
    out: &std::path::Path,
    public_url: &str,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let path = data.join("suiji.db");
    if !path.exists() {
        anyhow::bail!("no database at {}", path.display());
    }
    let db = db::Db::open(&path)?;
    let blobs = suiji_server::blobs::FsBlobStore::open(
        &data.join("blobs"),
        suiji_server::blobs::DEFAULT_MAX_BLOB,
    )?;
    let calendar = db.read_blocking(suiji_server::review::calendar_admin::build_calendar)?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let written = db.read_blocking(|conn| {
        let today = suiji_server::review::china_today();
        let mut writer = suiji_server::dossier::write(
            conn,
            &blobs,
            &calendar,
            today,
            task,
            public_url,
            std::io::BufWriter::new(file),
        )?;
        writer.flush()?;
        Ok(())
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(out);
        return Err(e).with_context(|| format!("exporting the dossier of task {task}"));
    }
    println!("wrote the dossier of task {task} to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn verify_dossier(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match suiji_server::dossier::verify::verify_file(file) {
        Ok(v) => {
            println!(
                "verified: dossier of task {} ({} files, {} draws, {} records, {} signatures, {} unsigned records, {} photos, {} blobs missing)",
                v.manifest.task_number,
                v.manifest.files.len() + 1,
                v.draws,
                v.records,
                v.signatures,
                v.unsigned_records,
                v.photos,
                v.manifest.missing_blobs.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            println!("NOT verified: {failure}");
            Ok(ExitCode::from(1))
        }
    }
}

fn store_copy(from: &std::path::Path, to: &str, blobs: Option<&str>) -> anyhow::Result<ExitCode> {
    use suiji_server::blobs::{BlobStore, DEFAULT_MAX_BLOB, FsBlobStore, S3BlobStore, s3};
    let path = from.join("suiji.db");
    if !path.exists() {
        anyhow::bail!("no database at {}", path.display());
    }
    // A server still running on the directory would change it under the copy.
    let _lock = suiji_server::lock_for_serving(from)?;
    let source = db::Db::open(&path)?;
    let source_blobs = FsBlobStore::open(&from.join("blobs"), DEFAULT_MAX_BLOB)?;
    let target = db::Db::open_postgres(to)?;
    // An S3 store stages chunked uploads in the database its servers share: the target.
    let target_blobs: Option<Box<dyn BlobStore>> = match blobs {
        Some(url) if s3::is_s3_url(url) => Some(Box::new(S3BlobStore::open(
            url,
            target.clone(),
            DEFAULT_MAX_BLOB,
        )?)),
        Some(dir) => Some(Box::new(FsBlobStore::open(
            std::path::Path::new(dir),
            DEFAULT_MAX_BLOB,
        )?)),
        None => None,
    };
    let copied = suiji_server::store::copy::copy(
        &source,
        &source_blobs,
        &target,
        target_blobs.as_deref(),
        |step| eprintln!("{step}"),
    )?;
    let rows: u64 = copied.rows.iter().map(|(_, n)| n).sum();
    println!("copied {rows} rows of {} tables", copied.rows.len());
    for (table, n) in &copied.rows {
        println!("  {table}: {n}");
    }
    match blobs {
        Some(place) => println!("copied {} blobs into {place}", copied.blobs),
        None => println!("the blobs stay in {}", from.join("blobs").display()),
    }
    println!(
        "audit log intact: {} entries verified",
        copied.audit_entries
    );
    println!("{} draw records verified", copied.draws);
    println!(
        "servers on the copy need {} in their data directories (docs/deploy.md)",
        from.join(suiji_server::draw::seal::KEY_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify_audit(data: PathBuf, database: Option<String>) -> anyhow::Result<ExitCode> {
    let db = match database {
        Some(url) => db::Db::open_postgres(&url)?,
        None => {
            let path = data.join("suiji.db");
            if !path.exists() {
                anyhow::bail!("no database at {}", path.display());
            }
            db::Db::open(&path)?
        }
    };
    match db.read_blocking(audit::verify)? {
        audit::Verification::Intact { entries } => {
            println!("audit log intact: {entries} entries verified");
            Ok(ExitCode::SUCCESS)
        }
        audit::Verification::Broken { seq, reason } => {
            println!("audit log BROKEN at entry {seq}: {reason}");
            Ok(ExitCode::from(2))
        }
    }
}
