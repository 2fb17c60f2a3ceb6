//! The sub-commands besides `serve`.

use std::io::Write;

use adapters::{ApiKeys, MIGRATOR, RelayConfig};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use commands::{Channel, CommandConfig, CommandMeta, RegisterTenantInput, Role};
use domain::values::{Plan, TenantId};
use projections::rebuild::Progress;
use projections::{StaffCalendars, Tenants};
use uuid::Uuid;

use crate::config::{
    ApiKeyCommand, AuditCommand, Cli, Command, DatabaseConfig, DeadLettersCommand, LogFormat,
    NatsConfig, ProjectionsCommand, RelayCommand, SagasCommand, TenantCommand,
};
use crate::startup::{
    Application, build_commands, connect_database, install_crypto_provider, shutdown_signal,
};
use crate::telemetry::{get_subscriber, init_subscriber};

/// Writes a line for the person at the terminal.
pub(crate) fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    install_crypto_provider();
    if let Command::Serve(config) = cli.command {
        let spans = crate::telemetry::span_exporter(&config.tracing)?;
        // rmcp logs every stateless MCP request's set-up and tear-down at info.
        init_subscriber(get_subscriber(
            "info,sqlx=warn,rmcp=warn",
            config.log_format,
            std::io::stdout,
            spans.as_ref(),
        ));
        let app = Application::build(config).await?;
        let served = app.run_until_stopped(shutdown_signal()).await;
        if let Some(spans) = spans {
            // The batch is sent from its own thread; wait for it without holding a worker.
            let _ = tokio::task::spawn_blocking(move || spans.shutdown()).await;
        }
        return served;
    }
    init_subscriber(get_subscriber(
        "warn",
        LogFormat::Pretty,
        std::io::stderr,
        None,
    ));
    match cli.command {
        Command::Serve(_) => Ok(()),
        Command::Migrate(database) => migrate(&database).await,
        Command::Tenant(TenantCommand::Create {
            database,
            name,
            plan,
        }) => create_tenant(&database, name, &plan).await,
        Command::ApiKey(ApiKeyCommand::Create {
            database,
            tenant,
            role,
            name,
        }) => create_api_key(&database, tenant, &role, &name).await,
        Command::Demo(config) => crate::demo::run(config).await,
        Command::Relay(RelayCommand::Republish {
            database,
            nats,
            from,
        }) => republish(&database, &nats, from).await,
        Command::Deadletters(command) => dead_letters(command).await,
        Command::Sagas(command) => sagas(command).await,
        Command::Projections(ProjectionsCommand::Rebuild { database, name }) => {
            rebuild(&database, &name).await
        }
        Command::Audit(AuditCommand::Export {
            database,
            tenant,
            from,
            to,
        }) => export_audit(&database, tenant, from, to).await,
    }
}

async fn export_audit(
    database: &DatabaseConfig,
    tenant: Uuid,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let pool = connect_database(database).await?;
    let mut filter = projections::audit::AuditFilter {
        tenant_id: tenant,
        from,
        to,
        limit: 1000,
        ..Default::default()
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let page = projections::audit::events(&pool, &filter).await?;
        let mut lines = Vec::new();
        for event in &page {
            serde_json::to_writer(&mut lines, event)?;
            lines.push(b'\n');
        }
        match out.write_all(&lines) {
            // The reader has what it wanted (`| head`): not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            written => written?,
        }
        match page.last() {
            Some(last) if page.len() == 1000 => filter.after = last.position,
            _ => break,
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        flushed => Ok(flushed?),
    }
}

async fn rebuild(database: &DatabaseConfig, name: &str) -> anyhow::Result<()> {
    const KNOWN: [&str; 3] = ["bookings", "tenants", "staff"];
    let names: Vec<&str> = match name {
        "all" => KNOWN.to_vec(),
        one if KNOWN.contains(&one) => vec![one],
        other => {
            anyhow::bail!("no projection named {other:?} (known: bookings, tenants, staff, all)")
        }
    };
    let pool = connect_database(database).await?;
    for name in names {
        let bar = |p: Progress| progress_bar(name, p);
        let rebuilt = match name {
            "bookings" => projections::rebuild::bookings(&pool, bar).await?,
            "tenants" => projections::rebuild::replay(&pool, &Tenants, bar).await?,
            _ => projections::rebuild::replay(&pool, &StaffCalendars, bar).await?,
        };
        let _ = writeln!(std::io::stderr());
        say(format_args!(
            "{name} rebuilt: {} events into {} rows in {:.2} s ({:.0} events/s); the swap held its lock {:.0} ms, the worker back {:.0} ms",
            rebuilt.events,
            rebuilt.rows,
            rebuilt.seconds,
            rebuilt.events as f64 / rebuilt.seconds.max(1e-6),
            rebuilt.locked * 1e3,
            rebuilt.paused * 1e3
        ));
    }
    Ok(())
}

/// `name [#####     ] done/total events, rate/s, ETA s`, redrawn in place on stderr.
fn progress_bar(name: &str, p: Progress) {
    let filled = usize::try_from(p.done.saturating_mul(30) / p.total.max(1))
        .unwrap_or(30)
        .min(30);
    let _ = write!(
        std::io::stderr(),
        "\r{name} [{}{}] {}/{} events, {:.0}/s, ETA {:.0} s   ",
        "#".repeat(filled),
        " ".repeat(30 - filled),
        p.done,
        p.total,
        p.rate(),
        p.eta().as_secs_f64()
    );
}

async fn dead_letters(command: DeadLettersCommand) -> anyhow::Result<()> {
    use projections::dead_letters;
    match command {
        DeadLettersCommand::List {
            database,
            projection,
        } => {
            let pool = connect_database(&database).await?;
            let letters = dead_letters::list(&pool, projection.as_deref()).await?;
            for l in &letters {
                say(format_args!(
                    "{} {} position {} {} {}:{} #{} tries {} parked {}: {}",
                    l.projection,
                    l.event_id,
                    l.position,
                    l.event_type,
                    l.aggregate_type,
                    l.aggregate_id,
                    l.sequence,
                    l.attempts,
                    l.parked_at.to_rfc3339(),
                    l.error
                ));
            }
            say(format_args!("{} parked", letters.len()));
        }
        DeadLettersCommand::Retry {
            database,
            projection,
        } => {
            let pool = connect_database(&database).await?;
            let retried = adapters::parked::retry(&pool, &projection).await?;
            say(format_args!(
                "{} applied, {} still parked",
                retried.applied, retried.still_parked
            ));
        }
        DeadLettersCommand::Skip {
            database,
            projection,
            event_id,
        } => {
            let pool = connect_database(&database).await?;
            let skipped = adapters::parked::skip(&pool, &projection, &event_id).await?;
            if !skipped {
                anyhow::bail!("no event {event_id} is parked for {projection}");
            }
            say(format_args!("skipped {event_id} for {projection}"));
        }
    }
    Ok(())
}

async fn sagas(command: SagasCommand) -> anyhow::Result<()> {
    use sagas::runtime;
    match command {
        SagasCommand::List {
            database,
            saga,
            tenant,
            limit,
        } => {
            let pool = connect_database(&database).await?;
            let instances = runtime::list(&pool, saga.as_deref(), tenant, limit).await?;
            for i in &instances {
                say(format_args!(
                    "{} {} tenant {} jobs {} next {} updated {}",
                    i.saga,
                    i.instance_id,
                    i.tenant_id,
                    i.jobs,
                    i.next_due
                        .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()),
                    i.updated_at.to_rfc3339()
                ));
            }
            say(format_args!("{} instances", instances.len()));
        }
        SagasCommand::Show {
            database,
            saga,
            instance,
        } => {
            let pool = connect_database(&database).await?;
            let found = runtime::instance(&pool, &saga, &instance)
                .await?
                .with_context(|| format!("no {saga} instance {instance}"))?;
            say(serde_json::to_string_pretty(&found)?);
        }
        SagasCommand::Retry {
            database,
            saga,
            instance,
        } => {
            let pool = connect_database(&database).await?;
            let found =
                adapters::saga_worker::retry_instance(&pool, &saga, &instance, chrono::Utc::now())
                    .await?
                    .with_context(|| {
                        format!(
                            "no saga named {saga:?} (known: {})",
                            adapters::saga_worker::SAGAS.join(", ")
                        )
                    })?;
            anyhow::ensure!(found, "no {saga} instance {instance}");
            say(format_args!(
                "{saga} {instance}: due now; a running bookingd takes it within a second"
            ));
        }
    }
    Ok(())
}

async fn migrate(database: &DatabaseConfig) -> anyhow::Result<()> {
    let pool = connect_database(database).await?;
    MIGRATOR.run(&pool).await.context("migrations failed")?;
    say("migrations applied");
    Ok(())
}

async fn create_tenant(database: &DatabaseConfig, name: String, plan: &str) -> anyhow::Result<()> {
    let plan: Plan = serde_json::from_value(serde_json::Value::String(plan.to_owned()))
        .context("plan must be basic, professional or enterprise")?;
    let pool = connect_database(database).await?;
    MIGRATOR.run(&pool).await?;
    let tenant_id = TenantId::new();
    let input = RegisterTenantInput {
        name,
        contact_email: None,
        plan,
        settings: Default::default(),
    };
    build_commands(&pool, CommandConfig::default())
        .register_tenant(&cli_meta(tenant_id), input)
        .await?;
    let key = ApiKeys::new(pool)
        .create(tenant_id, "admin", Role::Admin)
        .await?;
    say(format_args!("tenant  {tenant_id}"));
    say(format_args!("api key {} (admin; shown once)", key.secret));
    Ok(())
}

async fn create_api_key(
    database: &DatabaseConfig,
    tenant: Uuid,
    role: &str,
    name: &str,
) -> anyhow::Result<()> {
    let Some(role) = Role::parse(role) else {
        bail!("role must be admin, manager, staff, agent or readonly");
    };
    let pool = connect_database(database).await?;
    build_commands(&pool, CommandConfig::default())
        .tenant(TenantId(tenant))
        .await
        .context("no such tenant")?;
    let key = ApiKeys::new(pool)
        .create(TenantId(tenant), name, role)
        .await?;
    say(format_args!(
        "api key {} ({}; shown once)",
        key.secret,
        role.as_str()
    ));
    Ok(())
}

async fn republish(database: &DatabaseConfig, nats: &NatsConfig, from: i64) -> anyhow::Result<()> {
    let pool = connect_database(database).await?;
    let client = async_nats::connect(nats.nats_url.as_str())
        .await
        .context("cannot connect to NATS")?;
    let js = async_nats::jetstream::new(client);
    let sent = adapters::relay::republish(&pool, &js, &RelayConfig::default(), from).await?;
    say(format_args!(
        "republished {sent} events from position {from}"
    ));
    Ok(())
}

/// Metadata for commands given at the terminal.
pub(crate) fn cli_meta(tenant_id: TenantId) -> CommandMeta {
    CommandMeta {
        tenant_id,
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::now_v7(),
        actor: "cli".to_owned(),
        source: Channel::Cli,
        now: Utc::now(),
    }
}
